// Shared by the kafka_*.mjs interop scripts: a Sentry Node SDK whose envelopes are kept in memory
// and written to a JSON file as the spans it would have sent (Node SDK 11 streams spans, no
// transaction events), so the Python test asserts on what Node would have sent.
// Run with `node --import @sentry/node/import`, which lets Sentry instrument kafkajs.
import { writeFileSync } from "node:fs";
import * as Sentry from "@sentry/node";

const envelopes = [];

export function initSentry() {
  Sentry.init({
    dsn: "http://public@127.0.0.1/1",
    tracesSampleRate: 1.0,
    transport: () => ({
      send: async (envelope) => {
        envelopes.push(envelope);
        return {};
      },
      flush: async () => true,
    }),
  });
  return Sentry;
}

export async function dumpCaptured(path) {
  await Sentry.flush(2000);
  const spans = [];
  for (const [, items] of envelopes) {
    for (const [header, payload] of items) {
      if (header.type !== "span") continue;
      for (const span of payload.items) {
        const attributes = Object.fromEntries(
          Object.entries(span.attributes ?? {}).map(([key, attribute]) => [key, attribute.value]),
        );
        spans.push({ ...span, op: attributes["sentry.op"], attributes });
      }
    }
  }
  writeFileSync(path, JSON.stringify({ spans }));
}

export function kafkaClient(Kafka, bootstrap) {
  return new Kafka({ clientId: "busprop-node", brokers: [bootstrap], logLevel: 1, retry: { retries: 3 } });
}
