// Shared by the interop scripts: Sentry's Node SDK with its envelopes kept in memory and written to a
// JSON file as the spans it would have sent, so the Python tests assert on what Node would send.
// Sentry's Node SDK 11 streams spans (envelope items of type "span", version 2); each span is written
// with its attributes flattened to plain values and its op (`sentry.op`) as `op`.
// Run with `node --import @sentry/node/import`, which lets Sentry instrument kafkajs and amqplib.
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

export async function dumpCaptured(path, extra = {}) {
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
  writeFileSync(path, JSON.stringify({ spans, ...extra }));
}
