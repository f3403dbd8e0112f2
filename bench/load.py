"""Load: many messages through the four adapters at once, and zero trace mix-ups.

busprop's promise under load is that concurrency never swaps traces: a message processed while
hundreds of others are in flight, on threads or asyncio tasks, runs in the trace its producer sent
and nowhere else. This script proves it end to end on the real brokers. Each adapter runs in a
process of its own, all four at the same time (Kafka on ``KAFKA_BOOTSTRAP_SERVERS`` or an embedded
Tansu, AMQP on RabbitMQ, Celery on Redis with a real ``celery worker`` process on the threads pool,
WebSockets with an in-process server), each with several concurrent producers and a concurrent
consumer. Every message gets its own head, in thirds: a sampled transaction, an unsampled one, or
no trace at all (sent with the bare client).

Producers record, per message id, the head they sent from and the exact ``sentry-trace`` busprop
wrote on the wire (a recording wrapper under busprop's, or Celery's ``after_task_publish``).
Consumers record, from inside the user's handler, the trace they run in (the transaction's, or the
propagation context's on busprop's cheap unsampled path). A mix-up is a processed message whose
trace id, parent span id or sampling flag differ from what its producer sent, a wire trace that is
not its producer's head, or an untraced message processed in some producer's trace.

Run: ``python bench/load.py`` (100,000 messages, a quarter per adapter); ``--messages N`` scales
it (split over the adapters run), ``--adapters kafka,amqp`` runs a subset, ``--json`` prints the result
as one JSON line. Exits 1 on any mix-up or lost message. ``./dev.sh proof`` runs it at the claimed size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sentry_sdk  # noqa: E402
from sentry_sdk.transport import Transport  # noqa: E402

from busprop.demo import brokers  # noqa: E402

ADAPTERS = ("kafka", "amqp", "celery", "websockets")
KINDS = ("sampled", "unsampled", "untraced")
PRODUCERS = 4
#: A processed trace: (trace id, parent span id, sampled).
Processed = tuple[str, "str | None", "bool | None"]


class DroppingTransport(Transport):
    """Stands in for the network: the SDK builds and serialises every envelope, then drops it."""

    def capture_envelope(self, envelope: Any) -> None:
        pass


def init_sentry() -> None:
    """Sentry as a busprop user has it: every head decides, busprop leads the Celery tracing."""
    from sentry_sdk.integrations.celery import CeleryIntegration

    sentry_sdk.init(
        dsn="http://public@127.0.0.1/1",
        transport=DroppingTransport,
        traces_sample_rate=1.0,
        auto_enabling_integrations=False,
        disabled_integrations=[CeleryIntegration],
    )


def kind_of(index: int) -> str:
    return KINDS[index % len(KINDS)]


@contextlib.contextmanager
def head(kind: str) -> Iterator[str | None]:
    """A fresh isolation scope and, unless untraced, a head transaction; yields its trace id."""
    with sentry_sdk.isolation_scope():
        if kind == "untraced":
            yield None
            return
        with sentry_sdk.start_transaction(op="load", name="head", sampled=kind == "sampled") as transaction:
            yield transaction.trace_id


def processed_trace() -> Processed:
    """The trace the calling code runs in: its transaction's, or the propagation context's."""
    scope = sentry_sdk.get_current_scope()
    transaction = scope.transaction
    if transaction is not None:
        return transaction.trace_id, transaction.parent_span_id, transaction.sampled
    context = scope.get_active_propagation_context()
    return context.trace_id, context.parent_span_id, context.parent_sampled


@dataclass
class Ledger:
    """What producers sent and consumers processed, per message id (thread-safe)."""

    heads: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    wire: dict[str, str] = field(default_factory=dict)
    seen: dict[str, list[Processed]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    processed: int = 0

    def sent(self, message_id: str, kind: str, trace_id: str | None) -> None:
        with self.lock:
            self.heads[message_id] = (kind, trace_id)

    def on_wire(self, message_id: str, sentry_trace: Any) -> None:
        if isinstance(sentry_trace, bytes):
            sentry_trace = sentry_trace.decode()
        if isinstance(sentry_trace, str):
            with self.lock:
                self.wire[message_id] = sentry_trace

    def saw(self, message_id: str, trace: Processed) -> None:
        with self.lock:
            self.seen.setdefault(message_id, []).append(trace)
            self.processed += 1


def check(adapter: str, ledger: Ledger) -> dict[str, Any]:
    """Count, per adapter, the messages checked and every mix-up, missing or duplicate."""
    head_traces = {trace for _, trace in ledger.heads.values() if trace}
    counts: dict[str, Any] = {"adapter": adapter, "sent": len(ledger.heads), "processed": ledger.processed}
    counts.update({kind: 0 for kind in KINDS})
    counts.update(missing=0, duplicates=0, mixups=0, examples=[])
    fresh: dict[str, int] = {}
    for message_id, (kind, trace_id) in ledger.heads.items():
        counts[kind] += 1
        seen = ledger.seen.get(message_id, [])
        counts["missing"] += not seen
        counts["duplicates"] += max(0, len(seen) - 1)
        wire = ledger.wire.get(message_id)
        for trace in seen:
            problem = _mixup(kind, trace_id, wire, trace, head_traces)
            if kind == "untraced":
                fresh[trace[0]] = fresh.get(trace[0], 0) + 1
            if problem:
                counts["mixups"] += 1
                if len(counts["examples"]) < 5:
                    counts["examples"].append(f"{message_id}: {problem}")
    counts["untraced_traces"] = len(fresh)
    return counts


def _mixup(kind: str, trace_id: str | None, wire: str | None, trace: Processed, heads: set[str]) -> str:
    if kind == "untraced":
        if wire is not None:
            return f"untraced message carried {wire}"
        return f"processed in producer trace {trace[0]}" if trace[0] in heads else ""
    if wire is None:
        return "no sentry-trace on the wire"
    wire_trace, wire_span, flag = [*wire.split("-"), "", ""][:3]
    expected = (wire_trace, wire_span, kind == "sampled")
    if wire_trace != trace_id or flag != ("1" if kind == "sampled" else "0"):
        return f"head {trace_id}/{kind} but wire {wire}"
    return "" if trace == expected else f"wire {wire} but processed {trace}"


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def split(count: int, prefix: str) -> list[list[tuple[str, str]]]:
    """``(message id, kind)`` for ``count`` messages, dealt to the concurrent producers."""
    messages = [(f"{prefix}{index}", kind_of(index)) for index in range(count)]
    return [messages[start::PRODUCERS] for start in range(PRODUCERS)]


def run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# Kafka ----------------------------------------------------------------------------------------


class RecordingProducer:
    """Under busprop's ``TracedProducer``: records the headers busprop wrote, then sends."""

    def __init__(self, producer: Any, ledger: Ledger) -> None:
        self.producer, self.ledger = producer, ledger

    def send(
        self, topic: str, value: Any = None, key: Any = None, headers: Any = None, **options: Any
    ) -> Any:
        self.ledger.on_wire(value.decode(), dict(headers or []).get("sentry-trace"))
        return self.producer.send(topic, value, key, headers, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


def leg_kafka(count: int, timeout: float) -> Ledger:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    import busprop.kafka

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"load-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    ledger = Ledger()
    raw = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    traced = busprop.kafka.traced_producer(RecordingProducer(raw, ledger))

    def produce(messages: list[tuple[str, str]]) -> None:
        for message_id, kind in messages:
            with head(kind) as trace_id:
                ledger.sent(message_id, kind, trace_id)
                (raw if kind == "untraced" else traced).send(topic, message_id.encode())

    def consume() -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, consumer_timeout_ms=1000, auto_offset_reset="earliest"
        )
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        deadline = time.monotonic() + timeout
        while ledger.processed < count and time.monotonic() < deadline:
            with busprop.kafka.traced_consumer(consumer) as records:
                for record in records:
                    ledger.saw(record.value.decode(), processed_trace())
                    if ledger.processed >= count:
                        break
        consumer.close()

    consumer = threading.Thread(target=consume)
    consumer.start()
    run_threads([lambda part=part: produce(part) for part in split(count, "k")])  # type: ignore[misc]
    raw.flush()
    consumer.join()
    raw.close()
    return ledger


# AMQP -----------------------------------------------------------------------------------------


class RecordingExchange:
    """Under busprop's ``TracedExchange``: records the headers busprop wrote, then publishes."""

    def __init__(self, exchange: Any, ledger: Ledger) -> None:
        self.exchange, self.ledger, self.name = exchange, ledger, exchange.name

    async def publish(self, message: Any, routing_key: str, **options: Any) -> Any:
        self.ledger.on_wire(message.message_id, (message.headers or {}).get("sentry-trace"))
        return await self.exchange.publish(message, routing_key, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.exchange, name)


async def amqp_flow(count: int, timeout: float) -> Ledger:
    import aio_pika

    import busprop.amqp

    ledger = Ledger()
    done = asyncio.Event()
    connection = await aio_pika.connect(brokers.amqp_url())
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=64)
        queue = await channel.declare_queue(f"load-{uuid.uuid4().hex[:10]}", auto_delete=True)

        @busprop.amqp.consumer
        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                ledger.saw(message.message_id or "", processed_trace())
            if ledger.processed >= count:
                done.set()

        await queue.consume(handle)
        publishing = await connection.channel()
        raw = publishing.default_exchange
        traced = busprop.amqp.traced_exchange(RecordingExchange(raw, ledger))  # type: ignore[arg-type]

        async def produce(messages: list[tuple[str, str]]) -> None:
            for message_id, kind in messages:
                with head(kind) as trace_id:
                    ledger.sent(message_id, kind, trace_id)
                    message = aio_pika.Message(message_id.encode(), message_id=message_id)
                    await (raw if kind == "untraced" else traced).publish(message, routing_key=queue.name)

        await asyncio.gather(*(produce(part) for part in split(count, "a")))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    return ledger


def leg_amqp(count: int, timeout: float) -> Ledger:
    return asyncio.run(amqp_flow(count, timeout))


# Celery ---------------------------------------------------------------------------------------


def celery_app(queue: str) -> Any:
    """The app both sides use: one task that records the trace it runs in, in a Redis list."""
    import redis
    from celery import Celery

    app = Celery("load", broker=brokers.redis_url(), set_as_current=True)
    app.conf.update(
        task_default_queue=queue, task_ignore_result=True, broker_connection_retry_on_startup=True
    )
    store = redis.Redis.from_url(brokers.redis_url())

    @app.task(name="load.record", bind=True)  # type: ignore[untyped-decorator]
    def record(self: Any) -> None:
        trace_id, parent, sampled = processed_trace()
        store.rpush(f"{queue}:seen", f"{self.request.id} {trace_id} {parent} {sampled}")

    app.store = store
    return app


def celery_worker(queue: str) -> None:
    """``bench/load.py --celery-worker QUEUE``: a real worker, threads pool, busprop leading."""
    import busprop.celery

    init_sentry()
    app = celery_app(queue)
    busprop.celery.install(app)
    argv = ["worker", "-P", "threads", "-c", "8", "-Q", queue, "-l", "WARNING", "-n", f"{queue}@%h"]
    app.worker_main(argv=[*argv, "--without-gossip", "--without-mingle", "--without-heartbeat"])


def leg_celery(count: int, timeout: float) -> Ledger:
    from celery.signals import after_task_publish

    import busprop.celery

    queue = f"load-{uuid.uuid4().hex[:10]}"
    app = celery_app(queue)
    busprop.celery.install(app)
    ledger = Ledger()

    def recorded(headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers:
            ledger.on_wire(headers["id"], headers.get("sentry-trace"))

    after_task_publish.connect(recorded, weak=False)
    worker = subprocess.Popen(
        [sys.executable, __file__, "--celery-worker", queue], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    try:
        _celery_produce(app, ledger, count)
        wait_until(lambda: app.store.llen(f"{queue}:seen") >= count or worker.poll() is not None, timeout)
    finally:
        worker.terminate()
        worker.wait(30)
    for entry in app.store.lrange(f"{queue}:seen", 0, -1):
        message_id, trace_id, parent, sampled = entry.decode().split(" ")
        ledger.saw(message_id, (trace_id, None if parent == "None" else parent, _flag(sampled)))
    app.store.delete(f"{queue}:seen", queue)
    return ledger


def _flag(text: str) -> bool | None:
    return {"True": True, "False": False}.get(text)


def _celery_produce(app: Any, ledger: Ledger, count: int) -> None:
    task = app.tasks["load.record"]
    untraced = {"sentry-propagate-traces": False}

    def produce(messages: list[tuple[str, str]]) -> None:
        for message_id, kind in messages:
            with head(kind) as trace_id:
                ledger.sent(message_id, kind, trace_id)
                task.apply_async(task_id=message_id, headers=untraced if kind == "untraced" else None)

    run = uuid.uuid4().hex[:6]
    run_threads([lambda part=part: produce(part) for part in split(count, f"c{run}-")])  # type: ignore[misc]


# WebSockets -----------------------------------------------------------------------------------


class RecordingConnection:
    """Under busprop's ``TracedConnection``: records the metadata busprop wrote, then sends."""

    def __init__(self, connection: Any, ledger: Ledger) -> None:
        self.connection, self.ledger = connection, ledger

    async def send(self, message: Any, text: bool | None = None) -> None:
        document = json.loads(message)
        self.ledger.on_wire(document["message"], document.get("metadata", {}).get("sentryTrace"))
        await self.connection.send(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


async def websockets_flow(count: int, timeout: float) -> Ledger:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from busprop import websockets as traced_websockets

    ledger = Ledger()
    done = asyncio.Event()

    async def handler(ws: Any) -> None:
        async for message in ws:
            ledger.saw(json.loads(message)["message"], processed_trace())
            if ledger.processed >= count:
                done.set()

    async def produce(uri: str, messages: list[tuple[str, str]]) -> None:
        async with connect(uri) as raw:  # no handshake trace: untraced messages start fresh ones
            traced = traced_websockets.traced(RecordingConnection(raw, ledger))  # type: ignore[arg-type]
            for message_id, kind in messages:
                with head(kind) as trace_id:
                    ledger.sent(message_id, kind, trace_id)
                    body = json.dumps({"message": message_id})
                    await (raw if kind == "untraced" else traced).send(body)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)

    async with serve(traced_websockets.traced_handler(handler), "127.0.0.1", 0) as server:
        uri = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/load"
        await asyncio.gather(*(produce(uri, part) for part in split(count, "w")))
    return ledger


def leg_websockets(count: int, timeout: float) -> Ledger:
    return asyncio.run(websockets_flow(count, timeout))


LEGS: dict[str, Callable[[int, float], Ledger]] = {
    "kafka": leg_kafka,
    "amqp": leg_amqp,
    "celery": leg_celery,
    "websockets": leg_websockets,
}


# Orchestration --------------------------------------------------------------------------------


def run_leg(adapter: str, count: int, timeout: float, out: str) -> None:
    """``--leg ADAPTER``: one adapter's producers and consumer, the counts written to ``out``."""
    init_sentry()
    started = time.monotonic()
    counts = check(adapter, LEGS[adapter](count, timeout))
    counts["seconds"] = round(time.monotonic() - started, 1)
    Path(out).write_text(json.dumps(counts), encoding="utf-8")


def run_all(messages: int, timeout: float, adapters: tuple[str, ...] = ADAPTERS) -> list[dict[str, Any]]:
    """The legs at once (all four by default), one process each; their counts, in that order."""
    per_adapter = messages // len(adapters)
    with brokers.kafka_bootstrap_servers() as bootstrap, tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        processes = {
            adapter: subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--leg",
                    adapter,
                    "--messages",
                    str(per_adapter),
                    "--timeout",
                    str(timeout),
                    "--out",
                    f"{directory}/{adapter}.json",
                ],
                env=env,
                cwd=ROOT,
            )
            for adapter in adapters
        }
        results = []
        for adapter, process in processes.items():
            code = process.wait()
            path = Path(directory, f"{adapter}.json")
            if code != 0 or not path.exists():
                results.append(
                    {"adapter": adapter, "error": f"leg exited {code}", "mixups": 0, "missing": per_adapter}
                )
                continue
            results.append(json.loads(path.read_text(encoding="utf-8")))
    return results


def report(results: list[dict[str, Any]]) -> None:
    header = f"{'adapter':<11}{'sent':>8}{'sampled':>9}{'unsampled':>10}{'untraced':>9}{'processed':>10}"
    print(header + f"{'missing':>8}{'dup':>5}{'mix-ups':>8}{'s':>7}")
    for row in results:
        if "error" in row:
            print(f"{row['adapter']:<11}{row['error']}")
            continue
        print(
            f"{row['adapter']:<11}{row['sent']:>8}{row['sampled']:>9}{row['unsampled']:>10}{row['untraced']:>9}"
            f"{row['processed']:>10}{row['missing']:>8}{row['duplicates']:>5}{row['mixups']:>8}{row['seconds']:>7}"
        )
        for example in row["examples"]:
            print(f"  mix-up {example}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="total, split over the four adapters")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a leg waits for its consumer")
    parser.add_argument("--adapters", default=",".join(ADAPTERS), help="a subset, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON line")
    parser.add_argument("--leg", choices=ADAPTERS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--celery-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.celery_worker:
        celery_worker(args.celery_worker)
        return 0
    if args.leg:
        run_leg(args.leg, args.messages, args.timeout, args.out)
        return 0
    started = time.monotonic()
    results = run_all(args.messages, args.timeout, tuple(args.adapters.split(",")))
    report(results)
    failed = any(row.get("error") or row["mixups"] or row["missing"] for row in results)
    print(
        f"{sum(row.get('processed', 0) for row in results)} messages checked in {time.monotonic() - started:.0f} s:"
        f" {'FAILED' if failed else 'zero mix-ups, none lost'}"
    )
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
