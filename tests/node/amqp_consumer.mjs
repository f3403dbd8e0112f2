// Consume COUNT messages with amqplib under Sentry's amqplib integration, acking each, and record
// the headers each carried. Usage: node --import @sentry/node/import amqp_consumer.mjs AMQP_URL QUEUE COUNT CAPTURE
// Prints "ready" once consuming.
import { dumpCaptured, initSentry } from "./sentry_capture.mjs";

const [url, queue, count, capture] = process.argv.slice(2);
const Sentry = initSentry();
const amqp = await import("amqplib");

const connection = await amqp.connect(url);
const channel = await connection.createChannel();
const received = [];
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("timed out waiting for messages")), 30000);
  channel
    .consume(queue, (message) => {
      const active = Sentry.getActiveSpan();
      received.push({
        body: message.content.toString(),
        headers: message.properties.headers,
        activeTraceId: active ? active.spanContext().traceId : null,
      });
      channel.ack(message);
      if (received.length >= Number(count)) {
        clearTimeout(timer);
        resolve();
      }
    })
    .then(() => console.log("ready"), reject);
});
await channel.close();
await connection.close();
await dumpCaptured(capture, { received });
