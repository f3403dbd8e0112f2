// Consume COUNT records with kafkajs `eachMessage` under Sentry's Node SDK and print, as JSON,
// the trace the handler ran in for each record.
// Usage: node --import @sentry/node/import kafka_consumer.mjs BOOTSTRAP TOPIC GROUP COUNT CAPTURE
import { kafkaClient } from "./kafka_common.mjs";
import { dumpCaptured, initSentry } from "./sentry_capture.mjs";

const [bootstrap, topic, group, count, capture] = process.argv.slice(2);
const Sentry = initSentry();
const { Kafka } = await import("kafkajs");

const consumer = kafkaClient(Kafka, bootstrap).consumer({ groupId: group, sessionTimeout: 6000 });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const seen = [];
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`only ${seen.length} records in 30 s`)), 30000);
  consumer
    .run({
      eachMessage: async ({ message }) => {
        const span = Sentry.getActiveSpan();
        const json = span ? Sentry.spanToJSON(span) : {};
        seen.push({ value: message.value.toString(), trace_id: json.trace_id, parent_span_id: json.parent_span_id });
        if (seen.length === Number(count)) {
          clearTimeout(timer);
          resolve();
        }
      },
    })
    .catch(reject);
});
await consumer.disconnect();
await dumpCaptured(capture);
console.log(JSON.stringify(seen));
