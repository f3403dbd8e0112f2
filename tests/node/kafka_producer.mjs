// Produce one record with kafkajs under Sentry's Node SDK (its kafkajs integration writes the
// trace headers). Usage: node --import @sentry/node/import kafka_producer.mjs BOOTSTRAP TOPIC CAPTURE
import { kafkaClient } from "./kafka_common.mjs";
import { dumpCaptured, initSentry } from "./sentry_capture.mjs";

const [bootstrap, topic, capture] = process.argv.slice(2);
const Sentry = initSentry();
const { Kafka } = await import("kafkajs");

const producer = kafkaClient(Kafka, bootstrap).producer();
await producer.connect();
await Sentry.startSpan({ name: "node-head", op: "function" }, async () => {
  await producer.send({
    topic,
    messages: [{ value: "from-node", headers: { "x-other": "kept", baggage: "vendor=node" } }],
  });
});
await producer.disconnect();
await dumpCaptured(capture);
