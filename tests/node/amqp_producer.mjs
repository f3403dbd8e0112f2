// Publish one message with amqplib inside a Sentry span (Sentry's amqplib integration writes the
// trace headers). Usage: node --import @sentry/node/import amqp_producer.mjs AMQP_URL QUEUE CAPTURE
import { dumpCaptured, initSentry } from "./sentry_capture.mjs";

const [url, queue, capture] = process.argv.slice(2);
const Sentry = initSentry();
const amqp = await import("amqplib");

const connection = await amqp.connect(url);
const channel = await connection.createConfirmChannel();
await Sentry.startSpan({ name: "node-head", op: "function" }, async () => {
  channel.sendToQueue(queue, Buffer.from("from-node"), { headers: { "x-other": "kept", baggage: "vendor=node" } });
  await channel.waitForConfirms();
});
await channel.close();
await connection.close();
await dumpCaptured(capture);
