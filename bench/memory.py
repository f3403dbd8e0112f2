"""Memory: many messages through each adapter leave nothing behind.

Every message busprop handles opens an isolation scope, continues a trace and, for a sampled head,
builds a transaction and spans. A reference kept by mistake (a scope in a context variable that is
never reset, a span on a shared scope, a context in a per-connection dict) would grow without bound
in a long-lived consumer. This script runs, in a fresh process per adapter, a warm-up and then N
messages (heads in thirds: sampled, unsampled, untraced; producer and consumer both in the
process), and reports the growth of resident memory and of what ``tracemalloc`` sees still
allocated, after a ``gc.collect()``, between the end of the warm-up and the end of the run (two
passes, each in a fresh process: RSS with ``tracemalloc`` off, since its bookkeeping is itself
resident memory, then the same run with it on). Goal: under 2 MiB each.

Run: ``python bench/memory.py`` (200,000 messages per adapter after 5,000 of warm-up);
``--messages N``, ``--warmup N``, ``--adapters core,kafka,...``, ``--rss-only`` (no tracemalloc pass);
``--json`` prints one JSON line. ``./dev.sh proof`` runs it at the sizes docs/proof.md claims.
``--kafka-with recipe`` runs the Kafka flow with Sentry's hand-written "Instrument Queues" recipe
(an isolation scope per record) instead of busprop, the same loop otherwise: what sentry-sdk and
the allocator keep without busprop. ``--series N`` (a multiple of 500, the chunk) also records,
every N messages, RSS by kind of mapping, glibc's own account of its heaps (``mallinfo2``: bytes in
use, bytes freed but kept, mapped) and Python's small-object allocator (arenas, bytes in blocks).
Kafka uses ``KAFKA_BOOTSTRAP_SERVERS`` or an embedded Tansu; AMQP and Celery the local RabbitMQ
and Redis (``AMQP_URL``, ``REDIS_URL``); Celery's worker runs in a thread of the measured process.
Exits 1 when a growth is over the limit or a message was not processed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sentry_sdk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import recipe_process, recipe_publish
from load import ROOT, brokers, head, init_sentry, kind_of, wait_until

import busprop

ADAPTERS = ("core", "kafka", "amqp", "celery", "websockets")
LIMIT = 2 * 1024 * 1024
CHUNK = 500
#: Context managers that must outlive the flow that entered them.
RUNNING: list[Any] = []
#: A flow processes ``count`` messages end to end and returns how many its consumer processed.
Flow = Callable[[int], int]


def resident() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def allocator() -> dict[str, int]:
    """glibc's account of its heap (``mallinfo2``), in bytes; empty where there is none.

    ``in_use`` is what C code and Python's allocator (for blocks over 512 bytes, and pymalloc's
    arenas) hold; ``free_kept`` is freed memory glibc keeps in its heaps (counted in RSS once
    touched); ``mmapped`` the large blocks it maps on their own."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"in_use": info.uordblks, "free_kept": info.fordblks, "mmapped": info.hblkhd}


def resident_by_mapping() -> dict[str, int]:
    """RSS in bytes by kind of mapping (``/proc/self/smaps``): glibc's main heap, anonymous maps
    (Python's small-object arenas, glibc's thread arenas, thread stacks, large blocks), files."""
    kinds = {"rss_heap": 0, "rss_anonymous": 0, "rss_files": 0}
    kind = "rss_anonymous"
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
        for line in smaps:
            first, _, rest = line.partition(" ")
            if "-" in first and not first.endswith(":"):
                fields = rest.split()
                name = fields[4] if len(fields) >= 5 else ""
                kind = (
                    "rss_heap"
                    if name == "[heap]"
                    else "rss_files"
                    if name.startswith("/")
                    else "rss_anonymous"
                )
            elif first == "Rss:":
                kinds[kind] += int(rest.split()[0]) * 1024
    return kinds


def python_allocator() -> dict[str, int]:
    """Python's small-object allocator (``sys._debugmallocstats``): its arenas (1 MiB maps) in
    use, and the bytes of blocks allocated and free in them."""
    import re
    import tempfile

    wanted = {
        "python_arenas": r"# arenas allocated current\s*=\s*([\d,]+)",
        "python_blocks": r"# bytes in allocated blocks\s*=\s*([\d,]+)",
        "python_free_blocks": r"# bytes in available blocks\s*=\s*([\d,]+)",
    }
    with tempfile.TemporaryFile(mode="w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    found = {key: re.search(pattern, text) for key, pattern in wanted.items()}
    return {key: int(match.group(1).replace(",", "")) for key, match in found.items() if match}


#: Every ``SERIES[0]`` messages (0: never) a reading of RSS and the allocator goes to ``SERIES[1]``.
SERIES: tuple[int, list[dict[str, int]]] = (0, [])


def record_reading(done: int) -> None:
    every, readings = SERIES
    if every and done % every == 0:
        gc.collect()
        readings.append(
            {
                "messages": done,
                "rss": resident(),
                **resident_by_mapping(),
                **allocator(),
                **python_allocator(),
            }
        )


def chunks(count: int) -> list[range]:
    return [range(start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]


def core_flow() -> Flow:
    """``busprop.publish`` into a dict, then ``busprop.continue_trace`` of it."""

    def run(count: int) -> int:
        processed = 0
        for index in range(count):
            headers: dict[str, str] = {}
            with head(kind_of(index)), busprop.publish(headers, system="custom", destination="memory"):
                pass
            with busprop.continue_trace(
                headers, system="custom", destination="memory", message_id=str(index)
            ):
                processed += sentry_sdk.get_traceparent() is not None
        return processed

    return run


def kafka_sender(
    recipe: bool = False, hold: bool = False, only: str | None = None
) -> tuple[Callable[[int], None], Any, str]:
    """A new topic, and a send of record ``index`` into it with the head ``kind_of(index)`` gives
    (or ``only`` this kind), traced by busprop (``traced_producer``) or by Sentry's recipe; also the
    bare producer, to flush. ``hold``: the producer sends nothing until flushed (every record stays
    in flight until then)."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    import busprop.kafka

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"memory-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    lingering = {"linger_ms": 600_000, "delivery_timeout_ms": 900_000, "batch_size": 1 << 24} if hold else {}
    raw = KafkaProducer(bootstrap_servers=bootstrap, **{"linger_ms": 5, **lingering})
    producer = busprop.kafka.traced_producer(raw)

    def send(index: int) -> None:
        kind = only or kind_of(index)
        with head(kind):
            if kind == "untraced":
                raw.send(topic, b"%d" % index)
            elif recipe:
                with recipe_publish(topic, b"%d" % index) as headers:
                    raw.send(topic, b"%d" % index, headers=[(k, v.encode()) for k, v in headers.items()])
            else:
                producer.send(topic, b"%d" % index)

    return send, raw, topic


def kafka_flow(recipe: bool = False) -> Flow:
    from kafka import KafkaConsumer, TopicPartition

    import busprop.kafka

    send, raw, topic = kafka_sender(recipe)
    consumer = KafkaConsumer(
        bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        consumer_timeout_ms=2000,
        auto_offset_reset="earliest",
    )
    consumer.assign([TopicPartition(topic, 0)])

    def consume_recipe(target: int, processed: int) -> int:
        for record in consumer:
            headers = {key: value.decode() for key, value in record.headers}
            with sentry_sdk.isolation_scope():
                sent_at = record.timestamp / 1000
                with recipe_process(headers, topic, record.value, str(record.offset), sent_at):
                    processed += 1
            if processed == target:
                break
        return processed

    def consume(target: int, processed: int) -> int:
        with busprop.kafka.traced_consumer(consumer) as records:
            for _ in records:
                processed += 1
                if processed == target:
                    break
        return processed

    def run(count: int) -> int:
        processed = 0
        for part in chunks(count):
            for index in part:
                send(index)
            raw.flush()
            # The consumer gives up after two quiet seconds; a loaded machine may need more than
            # one try, and records left for later would count in memory as a backlog.
            deadline = time.monotonic() + 60
            while processed < part.stop and time.monotonic() < deadline:
                processed = (consume_recipe if recipe else consume)(part.stop, processed)
            record_reading(processed)
        return processed

    return run


def amqp_flow() -> Flow:
    import aio_pika

    import busprop.amqp
    from busprop.demo import brokers

    loop = asyncio.new_event_loop()
    state = {"processed": 0}
    arrived = asyncio.Event()

    @busprop.amqp.consumer
    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        state["processed"] += 1
        arrived.set()

    async def connect() -> tuple[Any, Any, str]:
        connection = await aio_pika.connect(brokers.amqp_url())
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=CHUNK)
        queue = await channel.declare_queue(f"memory-{uuid.uuid4().hex[:10]}", auto_delete=True)
        await queue.consume(handle, no_ack=True)
        return connection, channel.default_exchange, queue.name

    _, exchange, queue_name = loop.run_until_complete(connect())
    traced = busprop.amqp.traced_exchange(exchange)

    async def flow(count: int) -> int:
        start = state["processed"]
        for part in chunks(count):
            for index in part:
                kind = kind_of(index)
                with head(kind):
                    message = aio_pika.Message(b"%d" % index)
                    await (exchange if kind == "untraced" else traced).publish(
                        message, routing_key=queue_name
                    )
            while state["processed"] - start < part.stop:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 30)
        return state["processed"] - start

    return lambda count: loop.run_until_complete(flow(count))


def celery_flow() -> Flow:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    import busprop.celery
    from busprop.demo import brokers

    queue = f"memory-{uuid.uuid4().hex[:10]}"
    app = Celery("memory", broker=brokers.redis_url(), set_as_current=True)
    app.conf.update(
        task_default_queue=queue, task_ignore_result=True, broker_connection_retry_on_startup=True
    )
    busprop.celery.install(app)
    done = {"count": 0}
    lock = threading.Lock()

    @app.task(name="memory.work")  # type: ignore[untyped-decorator]
    def work(index: int) -> None:
        with lock:
            done["count"] += 1

    worker = start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING")
    worker.__enter__()
    RUNNING.append(worker)  # collected, the context manager would stop the worker
    untraced = {"sentry-propagate-traces": False}

    def run(count: int) -> int:
        start = done["count"]
        for part in chunks(count):
            for index in part:
                kind = kind_of(index)
                with head(kind):
                    work.apply_async((index,), headers=untraced if kind == "untraced" else None)
            wait_until(lambda stop=part.stop: done["count"] - start >= stop, 60)  # type: ignore[misc]
        return done["count"] - start

    return run


def websockets_flow() -> Flow:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from busprop import websockets as traced_websockets

    loop = asyncio.new_event_loop()
    state = {"processed": 0}
    arrived = asyncio.Event()

    async def handler(ws: Any) -> None:
        async for _ in ws:
            state["processed"] += 1
            arrived.set()

    async def open_connection() -> tuple[Any, Any, Any]:
        server = await serve(traced_websockets.traced_handler(handler), "127.0.0.1", 0, ping_interval=None)
        raw = await connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/memory", ping_interval=None)
        return server, raw, traced_websockets.traced(raw)

    _, raw, traced = loop.run_until_complete(open_connection())

    async def flow(count: int) -> int:
        start = state["processed"]
        for part in chunks(count):
            for index in part:
                kind = kind_of(index)
                with head(kind):
                    await (raw if kind == "untraced" else traced).send(f'{{"message": {index}}}')
            while state["processed"] - start < part.stop:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 30)
        return state["processed"] - start

    return lambda count: loop.run_until_complete(flow(count))


FLOWS: dict[str, Callable[[], Flow]] = {
    "core": core_flow,
    "kafka": kafka_flow,
    "amqp": amqp_flow,
    "celery": celery_flow,
    "websockets": websockets_flow,
}


def measure(
    adapter: str, messages: int, warmup: int, traced: bool, options: argparse.Namespace
) -> dict[str, Any]:
    """Warm up, then ``messages`` through the adapter; the growth of RSS, or of tracemalloc's total.

    Two passes, each in a fresh process: ``tracemalloc`` keeps a trace for every live block and
    interns every traceback it sees, so resident memory measured with it on counts its own
    bookkeeping (megabytes over a long run). RSS is measured with it off, then the same run again
    with it on for what Python still holds.
    """
    init_sentry()
    flow = (
        kafka_flow(recipe=True) if adapter == "kafka" and options.kafka_with == "recipe" else FLOWS[adapter]()
    )
    flow(warmup)
    gc.collect()
    global SERIES
    SERIES = (options.series, [])
    record_reading(0)
    if traced:
        tracemalloc.start()
    rss_before, traced_before = resident(), tracemalloc.get_traced_memory()[0]
    started = time.monotonic()
    processed = flow(messages)
    seconds = time.monotonic() - started
    gc.collect()
    rss_growth, traced_growth = resident() - rss_before, tracemalloc.get_traced_memory()[0] - traced_before
    top = tracemalloc.take_snapshot().statistics("lineno")[:3] if traced else []
    tracemalloc.stop()
    result: dict[str, Any] = {"adapter": adapter, "messages": messages, "processed": processed}
    if options.series:
        result["series"] = SERIES[1]
    if traced:
        return {
            **result,
            "tracemalloc_growth": traced_growth,
            "seconds": round(seconds, 1),
            "top": [str(t) for t in top],
        }
    return {**result, "rss_growth": rss_growth, "rss_seconds": round(seconds, 1)}


def run_pass(
    adapter: str, messages: int, warmup: int, env: dict[str, str], traced: bool, extra: list[str]
) -> dict[str, Any]:
    """One pass over one adapter in a fresh process; its result."""
    command = [
        sys.executable,
        __file__,
        "--adapter",
        adapter,
        "--messages",
        str(messages),
        "--warmup",
        str(warmup),
        *extra,
    ]
    if traced:
        command.append("--traced")
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"adapter": adapter, "error": f"exited {done.returncode}: {done.stderr[-2000:]}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def run_adapter(
    adapter: str,
    messages: int,
    warmup: int,
    env: dict[str, str],
    rss_only: bool = False,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """The RSS pass, then (unless ``rss_only``: long runs where only the plateau matters) the
    tracemalloc pass, which takes several times as long; one row."""
    rss = run_pass(adapter, messages, warmup, env, False, extra or [])
    if "error" in rss:
        return rss
    if rss_only:
        return {**rss, "tracemalloc_growth": None, "seconds": None}
    traced = run_pass(adapter, messages, warmup, env, True, extra or [])
    if "error" in traced:
        return traced
    return {**traced, **rss, "processed": min(rss["processed"], traced["processed"])}


def failed(row: dict[str, Any]) -> bool:
    return bool(
        row.get("error")
        or row["processed"] != row["messages"]
        or row["rss_growth"] >= LIMIT
        or (row["tracemalloc_growth"] or 0) >= LIMIT
    )


def report(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"{row['adapter']:<11} {row['error']}")
        return
    traced = "-" if row["tracemalloc_growth"] is None else f"{row['tracemalloc_growth'] / 1024:.0f}"
    print(
        f"{row['adapter']:<11}{row['messages']:>9}{row['processed']:>10}{row['rss_growth'] / 1024:>12.0f}"
        f"{traced:>12}{row['rss_seconds']:>8}{row['seconds'] or '-':>9}"
        f"  {'FAIL' if failed(row) else 'ok'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=200_000, help="messages per adapter, after the warm-up"
    )
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--adapters", default=",".join(ADAPTERS))
    parser.add_argument("--rss-only", action="store_true", help="skip the (slower) tracemalloc pass")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line")
    parser.add_argument(
        "--kafka-with",
        choices=("busprop", "recipe"),
        default="busprop",
        help="the Kafka flow's tracing: busprop, or Sentry's hand-written recipe around the bare client",
    )
    parser.add_argument(
        "--series", type=int, default=0, help="also read RSS and glibc's heap every N messages"
    )
    parser.add_argument("--adapter", choices=ADAPTERS, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.adapter:
        print(json.dumps(measure(args.adapter, args.messages, args.warmup, args.traced, args)))
        os._exit(0)  # the Celery worker thread and open connections need no orderly shutdown
    results = []
    print(
        f"{'adapter':<11}{'messages':>9}{'processed':>10}{'RSS KiB':>12}{'traced KiB':>12}{'s':>8}{'s traced':>9}"
    )
    with brokers.kafka_bootstrap_servers() as bootstrap:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        for adapter in args.adapters.split(","):
            extra = ["--kafka-with", args.kafka_with, "--series", str(args.series)]
            results.append(run_adapter(adapter, args.messages, args.warmup, env, args.rss_only, extra))
            report(results[-1])
    if args.json:
        print(json.dumps(results))
    return 1 if any(failed(row) for row in results) else 0


if __name__ == "__main__":
    sys.exit(main())
