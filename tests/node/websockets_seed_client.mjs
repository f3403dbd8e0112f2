// A Node client that follows Sentry's docs for WebSockets, with the real @sentry/node: it sends
// {"message", "metadata": {sentryTrace, baggage}} from Sentry.getTraceData() inside a span, and
// continues the trace of the reply with Sentry.continueTrace. What Node would send to Sentry is
// written to a JSON file for the Python test.
// Usage: node --experimental-websocket websockets_seed_client.mjs <ws url> <output.json>
// (Node 22 and later have WebSocket without the flag.)
import { writeFileSync } from "node:fs";
import * as Sentry from "@sentry/node";

const [url, outputPath] = process.argv.slice(2);
const envelopes = [];
Sentry.init({
  dsn: "http://public@127.0.0.1/1",
  release: "node-client@1.0",
  tracesSampleRate: 1.0,
  transport: () => ({
    send: async (envelope) => {
      envelopes.push(envelope);
      return {};
    },
    flush: async () => true,
  }),
});

const socket = new WebSocket(url);
const replies = [];
let wake = null;
socket.addEventListener("message", (event) => {
  replies.push(event.data);
  if (wake) wake();
});
await new Promise((resolve, reject) => {
  socket.addEventListener("open", resolve);
  socket.addEventListener("error", reject);
});

const sent = await Sentry.startSpan({ name: "node chat send", op: "chat.send" }, async () => {
  const traceData = Sentry.getTraceData();
  socket.send(
    JSON.stringify({
      message: "hello from node",
      metadata: { sentryTrace: traceData["sentry-trace"], baggage: traceData["baggage"] },
    }),
  );
  return traceData;
});

if (replies.length === 0) await new Promise((resolve) => (wake = resolve));
const reply = JSON.parse(replies[0]);
const continued = Sentry.continueTrace(
  { sentryTrace: reply.metadata.sentryTrace, baggage: reply.metadata.baggage },
  () =>
    Sentry.startSpan({ name: "node chat receive", op: "queue.process", forceTransaction: true }, (span) => {
      const context = span.spanContext();
      return { traceId: context.traceId, spanId: context.spanId };
    }),
);
socket.close();

await Sentry.flush(2000);
const spans = [];
for (const [, items] of envelopes) {
  for (const [header, payload] of items) {
    if (header.type === "span") spans.push(...payload.items);
    if (header.type === "transaction") {
      spans.push({ ...payload.contexts.trace, name: payload.transaction, is_segment: true });
      spans.push(...(payload.spans ?? []));
    }
  }
}
writeFileSync(outputPath, JSON.stringify({ sent, reply, continued, spans }));
