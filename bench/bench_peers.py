"""busprop against its peers: the same produce-and-consume workloads, bare, with busprop, with
OpenTelemetry's instrumentation of the same client, with Sentry's own way (Celery: sentry-sdk's
CeleryIntegration; kafka-python and aio-pika, which sentry-sdk does not instrument: the "Instrument
Queues" recipe of Sentry's Python docs, written by hand around the bare client).

The issue's claim is comparative (at equal sampling, busprop costs less than OpenTelemetry and its
consumer traces cover the user's code), so every peer runs the same workload in the same run, each
scenario in a fresh process (instrumentations patch classes process-wide, sentry-sdk sets its
integrations up once per process). Sampling is equal: busprop/sentry-sdk at ``traces_sample_rate``
1.0 against OpenTelemetry's ``ParentBased(ALWAYS_ON)``, and 0.0 against ``ParentBased(ALWAYS_OFF)``.
Producers send in requests of 100 messages, each request a Sentry transaction or an OpenTelemetry
root span (none for the bare client). sentry-sdk gets a transport that drops envelopes, OpenTelemetry
an SDK ``TracerProvider`` with a ``SimpleSpanProcessor`` whose exporter drops spans and the W3C
propagators (tracecontext and baggage), so both pay for building and ending their spans but no
network.

Each message carries, in its payload, the trace id the producer was in. In the consumer's loop body
(kafka-python), callback (aio-pika) or task (Celery), the benchmark reads the active trace with
OpenTelemetry's ``trace.get_current_span()`` or ``sentry_sdk.get_current_span()`` (falling back to
the propagation context, which is all an unsampled message has) and counts the messages whose code
ran inside their producer's trace: the last column. For aio-pika it also counts, untimed, 20
messages consumed by an ``async for`` loop over ``queue.iterator()`` (aio-pika's other consumer style).

Clients: kafka-python on an embedded Tansu broker (or ``KAFKA_BOOTSTRAP_SERVERS``), aio-pika on
RabbitMQ (``AMQP_URL``; publisher confirms, callback consumer, prefetch 100), Celery on Redis
(``REDIS_URL``; a solo worker process, the clock from the first enqueue to the last completion, CPU
of the producer while it enqueues and of the worker until the last task is done). CPU time per message is the steadier figure on a shared machine.

Each scenario runs once per round in a fresh process, the rounds interleaved so that other load on
the machine weighs on every scenario alike; each figure is the best of the rounds.

Usage: python bench/bench_peers.py [--messages N] [--tasks T] [--rounds R] [--only kafka|amqp|celery]
(default 3,000 messages for Kafka and AMQP, 600 Celery tasks, 2 rounds: about four minutes in all;
``--messages 20000 --tasks 3000 --rounds 3`` for a larger run).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from busprop.demo import brokers  # noqa: E402

PER_REQUEST = 100
PAD = 60  # payload: '{"trace": "<32 hex>", "pad": "xxx..."}', about 100 bytes
#: (client, variant, sampled) in the order of the table; bare runs once per client.
SCENARIOS: list[tuple[str, str, bool]] = [
    (client, variant, sampled)
    for client, variants in (
        ("kafka", ("busprop", "otel", "recipe")),
        ("amqp", ("busprop", "otel", "recipe")),
        ("celery", ("busprop", "otel", "sentry-sdk")),
    )
    for variant, sampled in [("bare", False)] + [(v, s) for s in (True, False) for v in variants]
]
Timing = tuple[float, float]  # (wall seconds, CPU seconds)


# --- instrumentation of one scenario process -----------------------------------------------------


def init_sentry(sampled: bool, celery: bool = False) -> None:
    from sentry_sdk.integrations.celery import CeleryIntegration

    init_dropping(1.0 if sampled else 0.0, [CeleryIntegration()] if celery else [])


def init_dropping(rate: float | None, integrations: list[Any] | None = None) -> None:
    """sentry-sdk at ``traces_sample_rate=rate`` with a transport that drops envelopes: the SDK
    builds and serialises them, nothing goes to the network."""
    import sentry_sdk
    from sentry_sdk.transport import Transport

    class DroppingTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            pass

    sentry_sdk.init(
        dsn="http://public@127.0.0.1/1",
        transport=DroppingTransport,
        traces_sample_rate=rate,
        auto_enabling_integrations=False,
        integrations=integrations or [],
    )


def init_otel(sampled: bool) -> Any:
    """A global SDK TracerProvider whose exporter drops spans; W3C propagators."""
    from opentelemetry import propagate, trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    class DroppingExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON if sampled else ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(DroppingExporter()))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    return provider


def current_trace_id(variant: str) -> str:
    """The trace the calling code runs in, as the user's code would see it."""
    if variant == "otel":
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else "-"
    if variant in SENTRY_VARIANTS:
        import sentry_sdk

        # What the SDK propagates from here: the current span's trace with tracing enabled, the
        # propagation context's without (a transaction started then is not the trace sent on).
        return (sentry_sdk.get_traceparent() or "-").split("-")[0]
    return "-"


@contextmanager
def request(variant: str) -> Iterator[None]:
    """The request a producer sends from: a Sentry transaction or an OpenTelemetry root span."""
    if variant == "otel":
        from opentelemetry import trace

        with trace.get_tracer("bench").start_as_current_span("request"):
            yield
    elif variant in SENTRY_VARIANTS:
        import sentry_sdk

        with sentry_sdk.start_transaction(op="http.server", name="request"):
            yield
    else:
        yield


def payload(variant: str) -> bytes:
    return json.dumps({"trace": current_trace_id(variant), "pad": "x" * PAD}).encode()


def covered(variant: str, body: bytes) -> bool:
    expected = json.loads(body)["trace"]
    return bool(expected != "-" and current_trace_id(variant) == expected)


class Clock:
    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Timing:
        return time.perf_counter() - self._wall, time.process_time() - self._cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(variant: str, sampled: bool) -> None:
    if variant in ("busprop", "recipe"):
        init_sentry(sampled)
    elif variant == "otel":
        init_otel(sampled)


SENTRY_VARIANTS = ("busprop", "sentry-sdk", "recipe")


@contextmanager
def recipe_publish(destination: str, body: bytes) -> Iterator[dict[str, str]]:
    """Producer side of Sentry's "Instrument Queues" recipe for Python, as its docs write it: a
    ``queue.publish`` span with the Queues data, and the two headers read from the SDK."""
    import sentry_sdk

    with sentry_sdk.start_span(op="queue.publish", name=destination) as span:
        span.set_data("messaging.message.id", uuid.uuid4().hex)
        span.set_data("messaging.destination.name", destination)
        span.set_data("messaging.message.body.size", len(body))
        headers = {"sentry-trace": sentry_sdk.get_traceparent() or ""}
        baggage = sentry_sdk.get_baggage()
        if baggage:
            headers["baggage"] = baggage
        yield headers


@contextmanager
def recipe_process(
    headers: dict[str, str], destination: str, body: bytes, message_id: str, sent_at: float | None
) -> Iterator[None]:
    """Consumer side of the same recipe: ``continue_trace``, a transaction, a ``queue.process``
    span with the Queues data the docs list (the recipe opens no isolation scope)."""
    import sentry_sdk

    transaction = sentry_sdk.continue_trace(headers, op="function", name="queue_consumer_transaction")
    with (
        sentry_sdk.start_transaction(transaction),
        sentry_sdk.start_span(op="queue.process", name=destination) as span,
    ):
        span.set_data("messaging.message.id", message_id)
        span.set_data("messaging.destination.name", destination)
        span.set_data("messaging.message.body.size", len(body))
        span.set_data("messaging.message.retry.count", 0)
        if sent_at is not None:
            span.set_data("messaging.message.receive.latency", (time.time() - sent_at) * 1000)
        yield


# --- kafka-python --------------------------------------------------------------------------------


def run_kafka(variant: str, sampled: bool, count: int) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    import busprop.kafka

    setup(variant, sampled)
    if variant == "otel":
        from opentelemetry.instrumentation.kafka import KafkaInstrumentor

        KafkaInstrumentor().instrument()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"peers-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    plain = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    producer: Any = busprop.kafka.traced_producer(plain) if variant == "busprop" else plain
    plain.partitions_for(topic)  # connection and the topic's metadata off the clock
    clock = Clock()
    for first in range(0, count, PER_REQUEST):
        with request(variant):
            for _ in range(min(PER_REQUEST, count - first)):
                if variant == "recipe":
                    body = payload(variant)
                    with recipe_publish(topic, body) as headers:
                        producer.send(topic, body, headers=[(k, v.encode()) for k, v in headers.items()])
                else:
                    producer.send(topic, payload(variant))
    producer.flush()
    produced = clock.stop()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10_000, max_poll_records=500)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.poll(timeout_ms=1000, max_records=1)  # connection off the clock
    consumer.seek_to_beginning()
    clock = Clock()
    records: Any = busprop.kafka.traced_consumer(consumer) if variant == "busprop" else consumer
    hits = seen = 0
    for record in records:  # the user's loop body
        if variant == "recipe":
            headers = {key: value.decode() for key, value in record.headers}
            with recipe_process(headers, topic, record.value, str(record.offset), record.timestamp / 1000):
                hits += covered(variant, record.value)
        else:
            hits += covered(variant, record.value)
        seen += 1
        if seen == count:
            break
    consumed = clock.stop()
    consumer.close()
    return {"produce": produced, "consume": consumed, "covered": hits, "checked": seen}


# --- aio-pika ------------------------------------------------------------------------------------


def run_amqp(variant: str, sampled: bool, count: int) -> dict[str, Any]:
    setup(variant, sampled)
    if variant == "otel":
        from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor

        AioPikaInstrumentor().instrument()
    return asyncio.run(amqp_workload(variant, count))


async def amqp_workload(variant: str, count: int) -> dict[str, Any]:
    import aio_pika

    import busprop.amqp

    async with await aio_pika.connect(brokers.amqp_url()) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await channel.declare_queue(f"peers-{uuid.uuid4().hex[:8]}", exclusive=True)
        exchange: Any = channel.default_exchange
        if variant == "busprop":
            exchange = busprop.amqp.traced_exchange(exchange)
        clock = Clock()
        for first in range(0, count, PER_REQUEST):
            with request(variant):
                for _ in range(min(PER_REQUEST, count - first)):
                    await publish(exchange, variant, queue.name)
        produced = clock.stop()
        done, tally = asyncio.Event(), [0, 0]

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:  # the user's callback
            tally[0] += covered(variant, message.body)
            tally[1] += 1
            await message.ack()
            if tally[1] == count:
                done.set()

        async def recipe_handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            headers = {key: str(value) for key, value in message.headers.items()}
            with recipe_process(headers, queue.name, message.body, str(message.delivery_tag), None):
                await handle(message)

        callbacks = {"busprop": busprop.amqp.consumer(handle), "recipe": recipe_handle}
        callback: Any = callbacks.get(variant, handle)
        clock = Clock()
        tag = await queue.consume(callback)
        await asyncio.wait_for(done.wait(), timeout=600)
        consumed = clock.stop()
        await queue.cancel(tag)
        in_loop = await iterator_coverage(channel, exchange, variant)
    return {
        "produce": produced,
        "consume": consumed,
        "covered": tally[0],
        "checked": tally[1],
        "loop_covered": in_loop,
        "loop_checked": LOOP_PROBES,
    }


async def publish(exchange: Any, variant: str, routing_key: str) -> None:
    import aio_pika

    body = payload(variant)
    if variant == "recipe":
        with recipe_publish(routing_key, body) as headers:
            fields: dict[str, Any] = dict(headers)
            await exchange.publish(aio_pika.Message(body, headers=fields), routing_key=routing_key)
    else:
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)


LOOP_PROBES = 20


async def iterator_coverage(channel: Any, exchange: Any, variant: str) -> int:
    """Not timed: how many of ``LOOP_PROBES`` messages an ``async for`` loop over ``queue.iterator()``
    processes inside their producer's trace (the other consumer style aio-pika offers)."""

    import busprop.amqp

    queue = await channel.declare_queue(f"peers-loop-{uuid.uuid4().hex[:8]}", exclusive=True)
    with request(variant):
        for _ in range(LOOP_PROBES):
            await publish(exchange, variant, queue.name)
    hits = seen = 0
    iterator = queue.iterator()
    loop: Any = busprop.amqp.traced_iterator(iterator) if variant == "busprop" else iterator
    async with loop as messages:
        async for message in messages:  # the user's loop body
            async with message.process():
                if variant == "recipe":
                    headers = {key: str(value) for key, value in message.headers.items()}
                    with recipe_process(headers, queue.name, message.body, str(message.delivery_tag), None):
                        hits += covered(variant, message.body)
                else:
                    hits += covered(variant, message.body)
            seen += 1
            if seen == LOOP_PROBES:
                break
    return hits


# --- Celery --------------------------------------------------------------------------------------


def celery_app(variant: str, sampled: bool, queue: str) -> Any:
    import redis
    from celery import Celery

    if variant == "sentry-sdk":
        init_sentry(sampled, celery=True)
    else:
        setup(variant, sampled)
    app = Celery("peers", broker=brokers.redis_url(), set_as_current=True)
    app.conf.update(
        task_default_queue=queue, task_ignore_result=True, broker_connection_retry_on_startup=True
    )
    if variant == "busprop":
        import busprop.celery

        busprop.celery.install(app)
    if variant == "otel":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
    store = redis.Redis.from_url(brokers.redis_url())

    @app.task(name="peers.work")  # type: ignore[untyped-decorator]
    def work(body: str) -> None:  # the user's task
        if covered(variant, body.encode()):
            store.incr(f"{queue}:covered")
        store.incr(f"{queue}:done")

    app.store = store
    return app


def run_celery_worker(variant: str, sampled: bool, queue: str) -> None:
    app = celery_app(variant, sampled, queue)
    argv = ["worker", "-P", "solo", "-Q", queue, "-l", "ERROR", "-n", f"{queue}@%h", "--without-gossip"]
    app.worker_main([*argv, "--without-mingle", "--without-heartbeat", "--prefetch-multiplier", "16"])


def run_celery(variant: str, sampled: bool, count: int) -> dict[str, Any]:
    queue = f"peers-celery-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, __file__, "--celery-worker", variant, str(sampled), queue]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        app = celery_app(variant, sampled, queue)
        work = app.tasks["peers.work"]
        work.delay(payload("bare").decode())  # warm-up: connections, and a worker that answers
        wait_for(app.store, f"{queue}:done", 1)
        app.store.delete(f"{queue}:done", f"{queue}:covered")
        wall, producer_cpu, worker_cpu = time.perf_counter(), time.process_time(), cpu_seconds(worker.pid)
        for first in range(0, count, PER_REQUEST):
            with request(variant):
                for _ in range(min(PER_REQUEST, count - first)):
                    work.delay(payload(variant).decode())
        producer_cpu = time.process_time() - producer_cpu  # not the polling below
        wait_for(app.store, f"{queue}:done", count)
        total = (time.perf_counter() - wall, producer_cpu + cpu_seconds(worker.pid) - worker_cpu)
        hits = int(app.store.get(f"{queue}:covered") or 0)
        app.store.delete(f"{queue}:done", f"{queue}:covered", queue)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return {"total": total, "covered": hits, "checked": count}


def wait_for(store: Any, key: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while int(store.get(key) or 0) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the Celery worker did not finish in time")
        time.sleep(0.002)


# --- the run -------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[str, bool, int], dict[str, Any]]] = {
    "kafka": run_kafka,
    "amqp": run_amqp,
    "celery": run_celery,
}


def run_scenario(client: str, variant: str, sampled: bool, count: int, env: dict[str, str]) -> dict[str, Any]:
    """One scenario in a fresh process; its last stdout line is the JSON result."""
    command = [sys.executable, __file__, "--scenario", client, variant, str(sampled), str(count)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"{client}/{variant} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    packages = [
        "sentry-sdk",
        "kafka-python",
        "aio-pika",
        "celery",
        "redis",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-kafka-python",
        "opentelemetry-instrumentation-aio-pika",
        "opentelemetry-instrumentation-celery",
    ]
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in packages)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs (nproc), {model}; load average at start {load}\n"
        f"Python {platform.python_version()}; busprop {importlib.metadata.version('busprop')}; {versions}"
    )


LABELS = {
    "bare": "bare client",
    "busprop": "busprop",
    "otel": "OpenTelemetry",
    "sentry-sdk": "sentry-sdk CeleryIntegration",
    "recipe": "sentry-sdk by hand (Sentry's queues recipe)",
}


def row(
    client: str, variant: str, sampled: bool, result: dict[str, Any], bare: dict[str, Any], count: int
) -> str:
    """One table row: throughput and CPU per message, each with its ratio to the bare client."""
    sampling = "-" if variant == "bare" else ("1.0 / ALWAYS_ON" if sampled else "0.0 / ALWAYS_OFF")
    cells = []
    phases = ("total",) if client == "celery" else ("produce", "consume")
    for phase in phases:
        wall = result[phase][0]
        cells.append(f"{count / wall:,.0f} ({bare[phase][0] / wall:.2f}x)")
    if client == "celery":
        cells.append("-")  # enqueue to completion: one figure, in the first column
    cpu = sum(result[phase][1] for phase in phases) / count * 1e6
    bare_cpu = sum(bare[phase][1] for phase in phases) / count * 1e6
    coverage = "-" if variant == "bare" else f"{result['covered']:,} / {result['checked']:,}"
    if variant != "bare" and "loop_checked" in result:
        coverage += f"; `async for`: {result['loop_covered']} / {result['loop_checked']}"
    return (
        f"| {client} | {LABELS[variant]} | {sampling} | {' | '.join(cells[:2])} | {cpu:,.0f} "
        f"| {bare_cpu / cpu:.2f}x | {cpu - bare_cpu:+,.0f} | {coverage} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=3000, help="Kafka records and AMQP messages per scenario"
    )
    parser.add_argument("--tasks", type=int, default=600, help="Celery tasks per scenario")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is kept")
    parser.add_argument("--only", choices=sorted(RUNNERS), action="append", help="run only this client")
    parser.add_argument("--scenario", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--celery-worker", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.scenario:
        client, variant, sampled, count = options.scenario
        print(json.dumps(RUNNERS[client](variant, sampled == "True", int(count))))
        return
    if options.celery_worker:
        variant, sampled, queue = options.celery_worker
        run_celery_worker(variant, sampled == "True", queue)
        return
    compare(options.messages, options.tasks, options.rounds, options.only or list(RUNNERS))


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase the best wall and the best CPU time over the rounds; coverage summed."""
    counts = ("covered", "checked", "loop_covered", "loop_checked")
    merged: dict[str, Any] = {key: sum(run[key] for run in runs) for key in counts if key in runs[0]}
    for phase in ("produce", "consume", "total"):
        if phase in runs[0]:
            merged[phase] = (min(run[phase][0] for run in runs), min(run[phase][1] for run in runs))
    return merged


def overhead(result: dict[str, Any], bare: dict[str, Any], count: int) -> float:
    """CPU microseconds per message over the bare client."""
    phases = [phase for phase in ("produce", "consume", "total") if phase in result]
    return float(sum(result[phase][1] - bare[phase][1] for phase in phases) / count * 1e6)


def compare(messages: int, tasks: int, rounds: int, clients: list[str]) -> None:
    print(machine())
    print(
        f"{messages:,} messages per Kafka/AMQP scenario, {tasks:,} Celery tasks; one process per scenario "
        f"and round, best of {rounds} interleaved round(s)\n"
    )
    scenarios = [scenario for scenario in SCENARIOS if scenario[0] in clients]
    runs: dict[tuple[str, str, bool], list[dict[str, Any]]] = {scenario: [] for scenario in scenarios}
    with brokers.kafka_bootstrap_servers() if "kafka" in clients else nullcontext("") as bootstrap:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        for round_number in range(rounds):
            for client, variant, sampled in scenarios:
                count = tasks if client == "celery" else messages
                print(
                    f"round {round_number + 1}: {client} {variant} sampled={sampled}",
                    file=sys.stderr,
                    flush=True,
                )
                runs[(client, variant, sampled)].append(run_scenario(client, variant, sampled, count, env))
    results = {scenario: best(found) for scenario, found in runs.items()}
    print(
        "| client | instrumentation | sampling | produce msg/s (vs bare) | consume msg/s (vs bare) "
        "| CPU µs/msg | CPU vs bare | overhead µs/msg | consumer code in producer's trace |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (client, variant, sampled), result in results.items():
        count = tasks if client == "celery" else messages
        print(row(client, variant, sampled, result, results[(client, "bare", False)], count))
    if "celery" in clients:
        print("\nCelery: enqueue to completion in the first throughput column; CPU is producer + worker.")
    print("\nbusprop's CPU overhead per message against OpenTelemetry's and Sentry's own, at equal sampling:")
    for client, variant, sampled in scenarios:
        if variant != "busprop":
            continue
        count = tasks if client == "celery" else messages
        bare = results[(client, "bare", False)]
        ours = overhead(results[(client, variant, sampled)], bare, count)
        theirs = overhead(results[(client, "otel", sampled)], bare, count)
        verdict = "below" if ours < theirs else "NOT below"
        sentry = "recipe" if client != "celery" else "sentry-sdk"
        native = overhead(results[(client, sentry, sampled)], bare, count)
        print(
            f"  {client}, {'sampled' if sampled else 'unsampled'}: {ours:,.0f} µs vs {theirs:,.0f} µs "
            f"({verdict}); {LABELS[sentry]}: {native:,.0f} µs"
        )


if __name__ == "__main__":
    main()
