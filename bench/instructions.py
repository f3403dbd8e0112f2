"""Instructions per message on busprop's hottest paths, counted by valgrind's callgrind.

Wall-clock ratios on a shared 2-core machine swing by a third from run to run; an instruction
count does not (the same binary, inputs and environment give the same total, whatever else the
machine is doing). Each path runs in its own process under ``valgrind --tool=callgrind`` twice,
with ``--small`` and ``--large`` messages; the difference divided by the difference in messages
is the cost of one message, with the interpreter's start-up and the imports cancelled out.

Paths, with no broker but for ``aiokafka-produce``, ``aiokafka-flush``, ``pika-publish`` and ``pika`` (what is counted is
the Python around the client's call):

- ``produce``: confluent-kafka's ``Producer.produce()`` into librdkafka's local queue (the broker
  address is unreachable, the queue purged at the end): bare with the two trace headers as static
  bytes (the floor), KafkaIntegration with tracing off and in an unsampled transaction, and
  OpenTelemetry's confluent-kafka instrumentation in an unsampled root span.
- ``send``: kafka-python's ``traced_producer`` around a stub producer whose ``send`` returns an
  unresolved kafka-python future and sends nothing (busprop's send path alone, without KafkaIntegration),
  tracing off and in an unsampled transaction; the floor is the stub called with static trace headers.
- ``asend``: the same for aiokafka: ``traced_producer`` around a stub ``AIOKafkaProducer`` whose
  coroutine ``send`` returns an unresolved asyncio future and sends nothing, awaited in one event
  loop.
- ``aiokafka-produce``: a real ``AIOKafkaProducer``'s ``await send()``, connected to a broker (the
  one of ``KAFKA_BOOTSTRAP_SERVERS``, else an embedded one for the run) with a linger of a minute
  and batches of 64 MiB, so that every record stays in its accumulator and no batch is sent
  while the sends are counted: bare with the two trace headers as static bytes (the floor),
  sentry-sdk alone asking the SDK for the two values per send (``sdk-off``, ``sdk-unsampled``:
  ``bench/sdk_alone.py``), KafkaIntegration with tracing off and in an unsampled transaction, and
  OpenTelemetry's aiokafka
  instrumentation in an unsampled root span (the goal's comparison, counted).
- ``aiokafka-flush``: the goals' aiokafka produce counted whole, sends in requests of 100 to a
  real broker with aiokafka's default batching, then a flush: the sender task's encoding and
  sending and each record's delivery (busprop's watch of it included) are counted too. Beside the
  static floor, a floor whose static headers are as long as sentry-sdk's baggage makes them here,
  and busprop unsampled with its watch of each send's outcome switched off.
- ``pika-publish``: publishes of 100-byte messages through a real pika ``BlockingChannel`` (the
  RabbitMQ of ``AMQP_URL``, publisher confirms on, each publish waiting for its confirm, as the
  goals' pika measurement), in request transactions (root spans) of 100: with static trace
  headers (the floor), sentry-sdk alone asking the SDK for the two values per publish (tracing
  off, unsampled), AMQPIntegration with tracing off, unsampled and sampled, OpenTelemetry's
  pika instrumentation unsampled, Sentry's recipe sampled, and the recipe given what busprop's
  sampled publish asks of sentry-sdk (its data keys, origin and status; ``sdk-sampled``).
- ``pika``: messages of distinct unsampled traces, with the headers busprop's publish writes,
  published by a separate process that is not counted, then consumed by a ``basic_consume``
  callback that acks each: reading the two headers (the floor), AMQPIntegration with tracing off
  and unsampled, sentry-sdk alone doing what busprop asks of it, and OpenTelemetry.
- ``consume``: confluent-kafka ``Message`` objects, each of a distinct unsampled trace, iterated
  bare and through ``busprop.kafka.traced_records`` (tracing off, and unsampled: an isolation
  scope, the SDK's parse of the headers and a never-sampled transaction per message), the body
  asking ``sentry_sdk.get_traceparent()``; and, as the floor busprop's own code sits on, the
  sentry-sdk calls busprop makes per message written out by hand (``sdk-off``, ``sdk-unsampled``):
  an isolation scope, the SDK's parse of the headers made its propagation context, for an unsampled
  head a never-sampled transaction made current and counted as dropped, and the same body.
- ``sampled``: the same messages of distinct sampled traces, with a timestamp: bare iteration;
  Sentry's "Instrument Queues" recipe around each (``continue_trace``, a transaction, a
  ``queue.process`` span with the five data keys its docs list), then with an isolation scope per
  message, then also status ``ok`` on both (what each adds); sentry-sdk alone doing what
  busprop asks of it (an isolation scope, the transaction and its ``queue.process`` span with the
  eight data keys busprop gives a record and status ``ok`` on both, ``sdk-sampled``); and
  ``traced_records``. Each sampled message is a transaction sent to a transport that drops it, a
  hundred times a consumed unsampled one: this path runs a fifth of ``--small`` and ``--large``.
- ``amqp``, ``amqp-sampled``: the same two for aio-pika: ``IncomingMessage`` objects of distinct
  traces, with the headers busprop's publish writes, handed to a callback in one event loop, bare
  and decorated with ``@busprop.amqp.consumer`` (AMQPIntegration on), beside sentry-sdk alone doing
  what busprop asks of it (AMQP's data keys) and, sampled, the recipe rows.
- ``amqp-publish``: aio-pika publishes through ``traced_exchange`` around a stub exchange that
  sends nothing (it reads the body and properties as aio-pika's ``publish`` does and gives a message
  without an id a random UUID's hex, as aiormq does), in request transactions of 100: the stub
  given static trace headers (the floor), tracing off, unsampled and sampled, and Sentry's recipe
  (its ``queue.publish`` span and the two headers read from the SDK) unsampled and sampled.
- ``websocket``: echo round trips of ``bench/bench_websockets.py`` (the goals' WebSocket
  measurement, one connection over loopback, so this path does use a socket): bare, and both
  ends traced with tracing off and unsampled, beside sentry-sdk alone doing what busprop asks
  of it with the same JSON work written by hand. A round trip is two sends and two receives;
  this path runs a tenth of ``--small`` and ``--large`` round trips.
- ``websocket-sampled``: the same echo with every message sampled, against Sentry's recipe at both
  ends written by hand (a ``queue.publish`` span around each send, a transaction with its
  ``queue.process`` span around each message, the same JSON work), a fiftieth of the round trips.

Usage: python bench/instructions.py [--small 1000] [--large 6000] [--paths produce,send,asend,aiokafka-produce,aiokafka-flush,pika-publish,pika,consume,sampled,amqp,amqp-publish,amqp-sampled,websocket,websocket-sampled]. Needs valgrind
(Debian's package). The table gives instructions per message, the excess over the floor and, for busprop's
consume rows, busprop's own part: the excess over sentry-sdk alone doing the same work.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sdk_alone  # noqa: E402

STATIC_HEADERS = [
    ("sentry-trace", b"771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"),
    (
        "baggage",
        b"sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sample_rand=0.5,sentry-sampled=true",
    ),
]
#: path: [(scenario, label)], the first the floor the others are compared with.
PATHS: dict[str, list[tuple[str, str]]] = {
    "produce": [
        ("floor", "bare produce(), static trace headers (the floor)"),
        ("off", "KafkaIntegration, tracing off"),
        ("unsampled", "KafkaIntegration, unsampled transaction"),
        ("otel", "OpenTelemetry, ParentBased(ALWAYS_OFF) root span"),
    ],
    "send": [
        ("floor", "a stub's send(), static trace headers (the floor)"),
        ("off", "traced_producer's send(), tracing off"),
        ("unsampled", "traced_producer's send(), unsampled transaction"),
    ],
    "asend": [
        ("floor", "a stub's await send(), static trace headers (the floor)"),
        ("off", "traced_producer's await send(), tracing off"),
        ("unsampled", "traced_producer's await send(), unsampled transaction"),
    ],
    "aiokafka-produce": [
        ("floor", "AIOKafkaProducer's await send(), static trace headers (the floor)"),
        ("sdk-off", "sentry-sdk alone: the two values asked of the SDK per send, tracing off"),
        ("off", "KafkaIntegration, tracing off"),
        ("sdk-unsampled", "sentry-sdk alone, the same, unsampled transaction"),
        ("unsampled", "KafkaIntegration, unsampled transaction"),
        ("otel", "OpenTelemetry, ParentBased(ALWAYS_OFF) root span"),
    ],
    "aiokafka-flush": [
        ("floor", "AIOKafkaProducer's send() and its delivery, static trace headers (the floor)"),
        ("floor-sentry", "the same, static headers of the size sentry-sdk's baggage has here"),
        ("off", "KafkaIntegration, tracing off"),
        ("unsampled", "KafkaIntegration, unsampled transactions"),
        ("unsampled-unwatched", "the same, the delivery's outcome not watched"),
        ("unsampled-idle-watch", "the same, each send's future given a done-callback doing nothing"),
        ("otel", "OpenTelemetry, ParentBased(ALWAYS_OFF) root spans"),
    ],
    "pika-publish": [
        ("floor", "BlockingChannel.basic_publish(), confirms on, static trace headers (the floor)"),
        ("sdk-off", "sentry-sdk alone: the two values asked of the SDK per publish, tracing off"),
        ("off", "AMQPIntegration, tracing off"),
        ("sdk-unsampled", "sentry-sdk alone, the same, unsampled transaction"),
        ("unsampled", "AMQPIntegration, unsampled transaction"),
        ("otel", "OpenTelemetry, ParentBased(ALWAYS_OFF) root span"),
        ("recipe", "Sentry's recipe around basic_publish(), sampled transaction"),
        ("sdk-sampled", "the recipe with what busprop asks of sentry-sdk: its data keys, origin, status ok"),
        ("sampled", "AMQPIntegration, sampled transaction"),
    ],
    "pika": [
        ("floor", "a basic_consume callback reading the two trace headers (the floor)"),
        ("sdk-off", "sentry-sdk alone, what busprop asks of it, tracing off"),
        ("off", "AMQPIntegration, tracing off"),
        ("sdk-unsampled", "sentry-sdk alone, what busprop asks of it, unsampled heads"),
        ("unsampled", "AMQPIntegration, unsampled heads"),
        ("otel", "OpenTelemetry, unsampled heads"),
    ],
    "consume": [
        ("bare", "bare iteration (the floor)"),
        ("sdk-off", "sentry-sdk alone, what busprop asks of it, tracing off"),
        ("off", "traced_records, tracing off"),
        ("sdk-unsampled", "sentry-sdk alone, what busprop asks of it, unsampled heads"),
        ("unsampled", "traced_records, unsampled heads"),
    ],
    "sampled": [
        ("bare", "bare iteration (the floor)"),
        ("recipe", "Sentry's recipe, its five data keys"),
        ("recipe-scope", "the recipe in an isolation scope per message"),
        ("recipe-statuses", "the recipe in an isolation scope, status ok on both"),
        ("sdk-sampled", "sentry-sdk alone, what busprop asks of it (its eight keys, statuses)"),
        ("sampled", "traced_records, sampled heads"),
    ],
    "amqp": [
        ("bare", "the bare callback (the floor)"),
        ("sdk-off", "sentry-sdk alone, what busprop asks of it, tracing off"),
        ("off", "@busprop.amqp.consumer, tracing off"),
        ("sdk-unsampled", "sentry-sdk alone, what busprop asks of it, unsampled heads"),
        ("unsampled", "@busprop.amqp.consumer, unsampled heads"),
    ],
    "amqp-publish": [
        ("floor", "a stub exchange's publish(), static trace headers (the floor)"),
        ("off", "traced_exchange's publish(), tracing off"),
        ("unsampled", "traced_exchange's publish(), unsampled transaction"),
        ("recipe-unsampled", "Sentry's recipe around the stub's publish(), unsampled transaction"),
        ("recipe", "Sentry's recipe around the stub's publish(), sampled transaction"),
        ("sampled", "traced_exchange's publish(), sampled transaction"),
    ],
    "websocket": [
        ("bare", "bare websockets echo round trip, one connection (the floor)"),
        ("sdk-off", "sentry-sdk alone, what busprop asks of it, both ends, tracing off"),
        ("off", "both ends traced, tracing off"),
        ("sdk-unsampled", "sentry-sdk alone, what busprop asks of it, both ends, unsampled"),
        ("unsampled", "both ends traced, unsampled"),
    ],
    "websocket-sampled": [
        ("bare", "bare websockets echo round trip, one connection (the floor)"),
        ("recipe", "Sentry's recipe at both ends (queue.publish spans, transactions with queue.process)"),
        ("sampled", "both ends traced, sampled"),
    ],
    "amqp-sampled": [
        ("bare", "the bare callback (the floor)"),
        ("recipe", "Sentry's recipe, its five data keys"),
        ("recipe-scope", "the recipe in an isolation scope per message"),
        ("recipe-statuses", "the recipe in an isolation scope, status ok on both"),
        ("sdk-sampled", "sentry-sdk alone, what busprop asks of it (its nine keys, statuses)"),
        ("sampled", "@busprop.amqp.consumer, sampled heads"),
    ],
}


def _init(scenario: str, bus: str = "kafka") -> None:
    import sentry_sdk

    from busprop.amqp import AMQPIntegration
    from busprop.kafka import KafkaIntegration
    from busprop.testing import LOCAL_DSN

    class Dropping(sentry_sdk.transport.Transport):
        def capture_envelope(self, envelope: Any) -> None:
            pass

    if scenario == "otel":
        from bench_peers import init_otel

        provider = init_otel(False)
        if bus == "aiokafka":
            from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor

            AIOKafkaInstrumentor().instrument(tracer_provider=provider)
        elif bus == "pika":
            from opentelemetry.instrumentation.pika import PikaInstrumentor

            PikaInstrumentor().instrument(tracer_provider=provider)
        else:
            from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

            ConfluentKafkaInstrumentor().instrument(tracer_provider=provider)
        return
    if scenario in ("floor", "bare"):
        return
    options: dict[str, Any] = {"dsn": LOCAL_DSN, "transport": Dropping, "default_integrations": False}
    if not scenario.startswith("sdk-"):
        options["integrations"] = [AMQPIntegration() if bus in ("amqp", "pika") else KafkaIntegration()]
    if scenario.endswith("unsampled"):
        options["traces_sample_rate"] = 0.0
    if scenario in ("recipe", "recipe-scope", "recipe-statuses", "sdk-sampled", "sampled"):
        options["traces_sample_rate"] = 1.0
    if scenario.startswith("recipe"):
        options.pop("integrations", None)
    sentry_sdk.init(**options)


def _produce(scenario: str, count: int) -> None:
    import confluent_kafka
    import sentry_sdk

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": "127.0.0.1:9", "queue.buffering.max.messages": 1_000_000, "log_level": 0}
    )
    if scenario == "otel":
        from opentelemetry import trace

        root = trace.get_tracer("bench").start_as_current_span("request")
        root.__enter__()
    elif scenario == "unsampled":
        sentry_sdk.start_transaction(name="request").__enter__()
    value = b"x" * 100
    for _ in range(200):  # warm-up: caches and lazy imports out of the count
        producer.produce("topic", value)
    if scenario == "floor":
        for _ in range(count):
            producer.produce("topic", value, headers=STATIC_HEADERS)
    else:
        for _ in range(count):
            producer.produce("topic", value)
    producer.purge()


class _StubProducer:
    """A kafka-python producer that sends nothing: its ``send`` returns an unresolved future, as
    kafka-python's does (busprop watches it for a failure), so busprop's send path alone is counted."""

    def send(self, topic: str, value: bytes, headers: Any = None) -> Any:
        from kafka.future import Future

        return Future()


def _sender(stub: Any, scenario: str) -> Any:
    """``stub`` for the floor, else ``traced_producer(stub)``, inside a transaction if unsampled."""
    import sentry_sdk

    import busprop.kafka

    if scenario == "unsampled":
        sentry_sdk.start_transaction(name="request").__enter__()
    return stub if scenario == "floor" else busprop.kafka.traced_producer(stub)


def _send(scenario: str, count: int) -> None:
    producer = _sender(_StubProducer(), scenario)
    value = b"x" * 100
    for _ in range(200):  # warm-up
        producer.send("topic", value)
    if scenario == "floor":
        for _ in range(count):
            producer.send("topic", value, headers=list(STATIC_HEADERS))
    else:
        for _ in range(count):
            producer.send("topic", value)


def _asend(scenario: str, count: int) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    class StubProducer(AIOKafkaProducer):  # type: ignore[misc]
        """An aiokafka producer that neither connects nor sends: its ``send`` returns an
        unresolved future, as aiokafka's does once the record is queued."""

        def __init__(self) -> None:
            pass

        async def send(
            self,
            topic: str,
            value: Any = None,
            key: Any = None,
            partition: Any = None,
            timestamp_ms: Any = None,
            headers: Any = None,
        ) -> Any:
            return asyncio.get_running_loop().create_future()

    asyncio.run(_send_async(_sender(StubProducer(), scenario), "topic", scenario, count))


async def _send_async(producer: Any, topic: str, scenario: str, count: int) -> None:
    """200 sends to warm up, then ``count`` sends (the floor's with the static trace headers)."""
    value = b"x" * 100
    for _ in range(200):
        await producer.send(topic, value)
    if scenario == "floor":
        for _ in range(count):
            await producer.send(topic, value, headers=list(STATIC_HEADERS))
    elif scenario.startswith("sdk-"):
        for _ in range(count):
            with sdk_alone.publishing(topic, len(value), "kafka") as headers:
                await producer.send(topic, value, headers=[(k, v.encode()) for k, v in headers.items()])
    else:
        for _ in range(count):
            await producer.send(topic, value)


def _aiokafka_produce(scenario: str, count: int) -> None:
    """A real ``AIOKafkaProducer``, connected to the broker of ``KAFKA_BOOTSTRAP_SERVERS``, whose
    records stay in its accumulator: a linger of a minute and batches of 64 MiB, so no batch is
    sent while the sends are counted (the sender task's work would vary with timing)."""
    import asyncio

    import sentry_sdk
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            linger_ms=60_000,
            max_batch_size=64 * 1024 * 1024,
            max_request_size=64 * 1024 * 1024,
        )
        await producer.start()
        await producer.partitions_for("instructions")  # connection and metadata before the count
        if scenario == "otel":
            from opentelemetry import trace

            trace.get_tracer("bench").start_as_current_span("request").__enter__()
        elif scenario.endswith("unsampled"):
            sentry_sdk.start_transaction(name="request").__enter__()
        await _send_async(producer, "instructions", scenario, count)

    asyncio.run(run())


#: Trace headers as long as busprop's are in these runs: sentry-sdk's baggage with an environment,
#: a release, a public key, a transaction name, a sample rand and rate (what the static floor's
#: shorter baggage leaves out, the client still encodes and sends).
SENTRY_SIZED_HEADERS = [
    ("sentry-trace", b"771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-0"),
    (
        "baggage",
        b"sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sample_rand=0.940504,"
        b"sentry-environment=production,sentry-release=a5cfc99b07088c9474df70065859dc3c1c765750,"
        b"sentry-public_key=public,sentry-transaction=request,sentry-sample_rate=0.0,sentry-sampled=false",
    ),
]


def _aiokafka_flush(scenario: str, count: int) -> None:
    """The goals' aiokafka produce, counted whole: sends in requests of 100 (a transaction or root
    span each) to a real broker with aiokafka's default batching (a linger of 5 ms), then a flush,
    so the sender task's encoding and sending and each record's delivery are counted too.
    ``unsampled-unwatched`` switches off busprop's watch of each send's future (what reporting a
    failed delivery costs); ``unsampled-idle-watch`` replaces it by a done-callback doing nothing
    (what asyncio's scheduling of a callback costs, the only public way to learn the outcome)."""
    import asyncio

    import sentry_sdk
    from aiokafka import AIOKafkaProducer

    if scenario == "unsampled-unwatched":
        from busprop.kafka import _aiokafka

        object.__setattr__(_aiokafka.CLIENT, "watches_result", False)  # a frozen dataclass's cache
    elif scenario == "unsampled-idle-watch":
        from busprop.kafka import _aiokafka

        def idle(_future: Any) -> None:
            pass

        def watch(future: Any, _delivery: Any) -> None:
            future.add_done_callback(idle)

        object.__setattr__(_aiokafka.CLIENT, "watch_result", watch)

    def request() -> AbstractContextManager[Any]:
        if scenario == "otel":
            from opentelemetry import trace

            return trace.get_tracer("bench").start_as_current_span("request")
        if scenario.startswith("unsampled"):
            return sentry_sdk.start_transaction(name="request")
        return nullcontext()

    headers = {"floor": STATIC_HEADERS, "floor-sentry": SENTRY_SIZED_HEADERS}.get(scenario)

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"], linger_ms=5)
        await producer.start()
        topic = f"instructions-{uuid.uuid4().hex[:8]}"
        await producer.partitions_for(topic)
        value = b"x" * 100
        for number in (200, count):  # a warm-up, then the count
            for first in range(0, number, 100):
                with request():
                    for _ in range(min(100, number - first)):
                        if headers is None:
                            await producer.send(topic, value)
                        else:
                            await producer.send(topic, value, headers=list(headers))
            await producer.flush()
        await producer.stop()

    asyncio.run(run())


def _pika_channel() -> tuple[Any, Any, str]:
    """A ``BlockingConnection`` to the broker of ``AMQP_URL`` (the local default), its channel with
    publisher confirms on and a prefetch of 100, as ``bench/bench_pika.py`` uses, and a new
    exclusive queue."""
    import pika

    from busprop.demo import brokers

    connection = pika.BlockingConnection(pika.URLParameters(brokers.amqp_url()))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_qos(prefetch_count=100)
    queue = str(channel.queue_declare(f"instructions-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue)
    return connection, channel, queue


def _pika_publish(scenario: str, count: int) -> None:
    """Publishes of 100-byte messages through a real ``BlockingChannel`` (confirms on, each
    publish waiting for its confirm), in request transactions (root spans) of 100. ``sdk-sampled``
    is the recipe given what busprop's sampled publish asks of sentry-sdk: its five data keys (no
    message id: none is given), its origin, its publish-time header and status ``ok``."""
    import time

    import pika
    import sentry_sdk
    from bench_peers import recipe_publish

    connection, channel, queue = _pika_channel()
    body = b"x" * 100

    def publish() -> None:
        if scenario == "floor":
            channel.basic_publish("", queue, body, pika.BasicProperties(headers=dict(_STATIC_TEXT)))
        elif scenario == "recipe":
            with recipe_publish(queue, body) as headers:
                channel.basic_publish("", queue, body, pika.BasicProperties(headers=dict(headers)))
        elif scenario in ("sdk-off", "sdk-unsampled"):
            with sdk_alone.publishing(
                f"/{queue}", len(body), "rabbitmq", extra={sdk_alone.ROUTING_KEY: queue}
            ) as headers:
                channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers))
        elif scenario == "sdk-sampled":
            with sentry_sdk.start_span(
                op="queue.publish", name=f"/{queue}", origin="auto.queue.busprop.pika"
            ) as span:
                span.update_data(
                    {
                        "messaging.system": "rabbitmq",
                        "messaging.destination.name": f"/{queue}",
                        "messaging.operation.type": "publish",
                        "messaging.message.body.size": len(body),
                        "messaging.rabbitmq.destination.routing_key": queue,
                    }
                )
                headers = {
                    "sentry-trace": sentry_sdk.get_traceparent() or "",
                    "baggage": sentry_sdk.get_baggage(),
                }
                headers["busprop-published-at"] = f"{time.time():.6f}"
                channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers))
                span.set_status("ok")
        else:
            channel.basic_publish("", queue, body)

    def request() -> AbstractContextManager[Any]:
        if scenario == "otel":
            from opentelemetry import trace

            return trace.get_tracer("bench").start_as_current_span("request")
        if scenario in ("unsampled", "sdk-unsampled", "recipe", "sdk-sampled", "sampled"):
            return sentry_sdk.start_transaction(name="request")
        return nullcontext()

    for number in (200, count):  # a warm-up, then the count
        for first in range(0, number, 100):
            with request():
                for _ in range(min(100, number - first)):
                    publish()
        channel.queue_purge(queue)
    connection.close()


#: The two trace headers as text, as a pika message's headers table carries them.
_STATIC_TEXT = [(key, value.decode()) for key, value in STATIC_HEADERS]


def _pika_consume(scenario: str, count: int) -> None:
    """Messages of distinct unsampled traces, with the headers busprop's publish writes, published
    by a separate process (not counted) and consumed here by a ``basic_consume`` callback that
    acks each one: the callback reading the two headers (the floor), through AMQPIntegration, as
    sentry-sdk alone doing what busprop asks of it, and through OpenTelemetry's instrumentation."""
    import sentry_sdk

    connection, channel, queue = _pika_channel()
    total = 200 + count  # a warm-up, then the count
    subprocess.run([sys.executable, __file__, "--fill", queue, str(total)], check=True)
    consumed = [0]

    def handle(ch: Any, method: Any, properties: Any, body: bytes) -> None:  # the user's callback
        sentry_sdk.get_traceparent()
        ch.basic_ack(method.delivery_tag)
        consumed[0] += 1
        if consumed[0] == total:
            ch.stop_consuming()

    def floor(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = properties.headers or {}
        headers.get("sentry-trace"), headers.get("baggage")
        handle(ch, method, properties, body)

    callback: Any = handle
    if scenario == "floor":
        callback = floor
    elif scenario.startswith("sdk-"):
        from bench_pika import sdk_alone_callback

        callback = sdk_alone_callback(handle, scenario.removeprefix("sdk-"), 0.0)  # never sampled
    channel.basic_consume(queue, callback)
    channel.start_consuming()
    connection.close()


def _fill(queue: str, count: int) -> None:
    """Publish ``count`` messages of distinct unsampled traces into ``queue`` (for ``_pika_consume``)."""
    import pika

    from busprop.demo import brokers

    connection = pika.BlockingConnection(pika.URLParameters(brokers.amqp_url()))
    channel = connection.channel()
    for _ in range(count):
        trace_id = uuid.uuid4().hex
        headers = {
            "sentry-trace": f"{trace_id}-b2bd6e9b3e4c5a1f-0",
            "baggage": f"sentry-trace_id={trace_id},sentry-sample_rand=0.5,sentry-sampled=false",
        }
        channel.basic_publish("", queue, b"x" * 100, pika.BasicProperties(headers=headers))
    connection.close()


def _consume(scenario: str, count: int, sampled: bool = False) -> None:
    import time

    import confluent_kafka
    import sentry_sdk

    import busprop.kafka

    def headers() -> list[tuple[str, bytes]]:
        if not sampled:
            return [
                ("sentry-trace", f"{uuid.uuid4().hex}-b2bd6e9b3e4c5a1f-0".encode()),
                ("baggage", f"sentry-trace_id={uuid.uuid4().hex},sentry-sampled=false".encode()),
            ]
        trace_id = uuid.uuid4().hex
        baggage = (
            f"sentry-trace_id={trace_id},sentry-sample_rand=0.5,sentry-sample_rate=1.0,sentry-sampled=true"
        )
        return [("sentry-trace", f"{trace_id}-b2bd6e9b3e4c5a1f-1".encode()), ("baggage", baggage.encode())]

    # A sampled record's timestamp gives its receive latency.
    extra = {"timestamp": (confluent_kafka.TIMESTAMP_CREATE_TIME, int(time.time() * 1000))} if sampled else {}

    def messages(number: int) -> list[Any]:
        return [
            confluent_kafka.Message(
                topic="orders", partition=0, offset=offset, value=b"x" * 100, headers=headers(), **extra
            )
            for offset in range(number)
        ]

    def run(batch: list[Any]) -> None:
        if scenario == "bare":
            for message in batch:
                message.headers()
            return
        if scenario.startswith("recipe"):
            for message in batch:
                headers = {key: value.decode() for key, value in message.headers()}
                offset, sent_at = message.offset(), message.timestamp()[1] / 1000
                with recipe(scenario, headers, message.topic(), message.value(), str(offset), sent_at):
                    sentry_sdk.get_traceparent()
            return
        if scenario.startswith("sdk-"):
            for message in batch:
                headers = {key: value.decode() for key, value in message.headers()}
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                data = (
                    sdk_alone.kafka_data(
                        topic, partition, offset, len(message.value()), message.timestamp()[1]
                    )
                    if sampled
                    else None
                )
                with sdk_alone.processing(headers, topic, scenario.removeprefix("sdk-"), data):
                    sentry_sdk.get_traceparent()
            return
        for _message in busprop.kafka.traced_records(batch):
            sentry_sdk.get_traceparent()

    run(messages(200))
    run(messages(count))


@contextmanager
def recipe(
    scenario: str,
    headers: dict[str, str],
    destination: str,
    body: bytes,
    message_id: str,
    sent_at: float | None,
) -> Iterator[None]:
    """Sentry's recipe around one message: as its docs write it (``recipe``), in an isolation scope
    (``recipe-scope``), and also with status ``ok`` on its span and transaction (``recipe-statuses``)."""
    import sentry_sdk
    from bench_peers import recipe_process

    scope: AbstractContextManager[Any] = (
        nullcontext() if scenario == "recipe" else sentry_sdk.isolation_scope()
    )
    with scope, recipe_process(headers, destination, body, message_id, sent_at):
        yield
        span = sentry_sdk.get_current_span()
        if scenario == "recipe-statuses" and span is not None:
            span.set_status("ok")
            span.containing_transaction.set_status("ok")  # type: ignore[union-attr]


def _amqp_consume(scenario: str, count: int, sampled: bool) -> None:
    """aio-pika ``IncomingMessage`` objects, each of a distinct trace, as busprop's publish sends
    them, handed to a callback in one event loop: bare, through ``@busprop.amqp.consumer``, through
    the recipe, and as sentry-sdk alone doing what busprop asks of it."""
    import asyncio
    import time
    from datetime import datetime, timezone

    import aio_pika
    import aiormq
    import sentry_sdk
    from pamqp.commands import Basic
    from pamqp.header import ContentHeader

    import busprop.amqp

    def message(tag: int) -> Any:
        trace_id, decision = uuid.uuid4().hex, "true" if sampled else "false"
        headers: dict[str, Any] = {
            "sentry-trace": f"{trace_id}-b2bd6e9b3e4c5a1f-{int(sampled)}",
            "baggage": f"sentry-trace_id={trace_id},sentry-sample_rand=0.5,sentry-sampled={decision}",
        }
        if sampled:  # busprop's publish writes its precise publish time into a sampled message
            headers["busprop-published-at"] = f"{time.time():.6f}"
        properties = Basic.Properties(
            headers=headers, message_id=uuid.uuid4().hex, timestamp=datetime.now(timezone.utc)
        )
        delivered = aiormq.abc.DeliveredMessage(
            delivery=Basic.Deliver(consumer_tag="bench", delivery_tag=tag, exchange="", routing_key="orders"),
            header=ContentHeader(0, 100, properties),
            body=b"x" * 100,
            channel=None,  # type: ignore[arg-type]
        )
        return aio_pika.IncomingMessage(delivered, no_ack=True)

    async def bare(message: Any) -> int:
        return len(message.body)

    async def handle(message: Any) -> int:  # the user's callback
        sentry_sdk.get_traceparent()
        return len(message.body)

    async def recipe_handle(message: Any) -> None:
        headers = {key: str(value) for key, value in message.headers.items()}
        with recipe(scenario, headers, "orders", message.body, str(message.delivery_tag), None):
            await handle(message)

    async def sdk_handle(message: Any) -> None:
        headers = {key: str(value) for key, value in message.headers.items()}
        data = (
            sdk_alone.amqp_data(
                "/orders",
                message.message_id,
                len(message.body),
                False,
                float(headers["busprop-published-at"]),
                message.routing_key,
                message.delivery_tag,
            )
            if sampled
            else None
        )
        with sdk_alone.processing(
            headers, "/orders", scenario.removeprefix("sdk-"), data, "auto.queue.busprop.aio_pika"
        ):
            sentry_sdk.get_traceparent()

    callback: Any = bare
    if scenario.startswith("recipe"):
        callback = recipe_handle
    elif scenario.startswith("sdk-"):
        callback = sdk_handle
    elif scenario != "bare":
        callback = busprop.amqp.consumer(handle)

    async def run(number: int) -> None:
        for tag in range(1, number + 1):
            await callback(message(tag))

    asyncio.run(run(200))
    asyncio.run(run(count))


def _amqp_publish(scenario: str, count: int) -> None:
    """aio-pika publishes of 100-byte messages through ``traced_exchange`` around a stub exchange
    whose ``publish`` sends nothing, in one event loop, inside a request transaction (none with
    tracing off) of 100 publishes; the floor is the stub given static trace headers, the recipe
    its publish span."""
    import asyncio
    from random import getrandbits
    from uuid import UUID

    import aio_pika
    import sentry_sdk
    from bench_peers import recipe_publish

    import busprop.amqp

    class StubExchange(aio_pika.Exchange):  # type: ignore[misc]
        """The default exchange of no channel, whose ``publish`` sends nothing: it reads the body
        and the properties as aio-pika's does, and gives a message without an id a random UUID's
        hex, as aiormq does before sending."""

        def __init__(self) -> None:
            self.name = ""

        async def publish(self, message: Any, routing_key: str, **options: Any) -> Any:
            body, properties = message.body, message.properties
            if not properties.message_id:
                properties.message_id = UUID(int=getrandbits(128), version=4).hex
            return body, properties

    static = {key: value.decode() for key, value in STATIC_HEADERS}
    stub = StubExchange()
    exchange: Any = stub if scenario.startswith(("floor", "recipe")) else busprop.amqp.traced_exchange(stub)
    body = b"x" * 100

    async def publish() -> None:
        if scenario == "floor":
            await exchange.publish(aio_pika.Message(body, headers=dict(static)), routing_key="orders")
        elif scenario.startswith("recipe"):
            with recipe_publish("orders", body) as headers:
                await exchange.publish(aio_pika.Message(body, headers=dict(headers)), routing_key="orders")
        else:
            await exchange.publish(aio_pika.Message(body), routing_key="orders")

    async def run(number: int) -> None:
        for first in range(0, number, 100):  # a request transaction per 100 publishes, as in bench_peers
            request = sentry_sdk.start_transaction(name="request") if scenario != "off" else nullcontext()
            with request:
                for _ in range(min(100, number - first)):
                    await publish()

    asyncio.run(run(200))  # warm-up
    asyncio.run(run(count))


def _websocket(scenario: str, count: int) -> None:
    import asyncio

    import bench_websockets

    sampled = scenario in ("recipe", "sampled")
    bench_websockets.init(1.0 if sampled else 0.0 if scenario.endswith("unsampled") else None)
    if scenario.startswith("sdk-") or scenario == "recipe":
        asyncio.run(_handwritten_echo(count, scenario))
    else:
        asyncio.run(bench_websockets.measure(scenario != "bare", 1, count))


async def _handwritten_echo(count: int, scenario: str) -> None:
    """``bench_websockets.measure`` for one connection, the tracing written by hand around bare
    connections: ``bench_websockets.measure_handwritten``, the one copy of these ends, which
    ``bench/goals.py`` also times as sentry-sdk alone (``measure(..., sdk_alone=True)``), so that
    what is counted here is what is timed there. ``sdk-off``, ``sdk-unsampled``: what busprop asks
    of sentry-sdk per message (``sdk_alone.processing`` in modes ``off`` and ``unsampled``), the
    send asking the SDK for the two values; ``recipe``: Sentry's "Instrument Queues" recipe, a
    ``queue.publish`` span around each send and a transaction with its ``queue.process`` span
    around each message."""
    import bench_websockets

    await bench_websockets.measure_handwritten(scenario.removeprefix("sdk-"), 1, count)


def _child(path: str, scenario: str, count: int) -> None:
    if path.startswith("websocket"):
        _websocket(scenario, count)
    elif path in ("send", "asend"):
        _init(scenario if scenario == "floor" else f"sdk-{scenario}")  # traced_producer, no Integration
        (_send if path == "send" else _asend)(scenario, count)
    elif path == "pika-publish":
        _init(scenario, bus="pika")
        _pika_publish(scenario, count)
    elif path == "pika":
        _init(scenario, bus="pika")
        _pika_consume(scenario, count)
    elif path == "aiokafka-produce":
        _init(scenario, bus="aiokafka")
        _aiokafka_produce(scenario, count)
    elif path == "aiokafka-flush":
        _init(
            "floor" if scenario.startswith("floor") else scenario.removesuffix("-unwatched"), bus="aiokafka"
        )
        _aiokafka_flush(scenario, count)
    elif path == "amqp-publish":
        _init(scenario, bus="amqp")
        _amqp_publish(scenario, count)
    elif path.startswith("amqp"):
        _init(scenario, bus="amqp")
        _amqp_consume(scenario, count, sampled=path == "amqp-sampled")
    else:
        _init(scenario)
        if path == "produce":
            _produce(scenario, count)
        else:
            _consume(scenario, count, sampled=path == "sampled")
    os._exit(0)  # librdkafka's threads and the SDK's worker are not waited for


def _instructions(path: str, scenario: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
        result = subprocess.run(
            [*command, __file__, "--child", path, scenario, str(count)],
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {result.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=6000)
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--fill", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.fill:
        _fill(options.fill[0], int(options.fill[1]))
        return
    if options.child:
        path, scenario, count = options.child
        _child(path, scenario, int(count))
    paths = options.paths.split(",")
    with ExitStack() as stack:
        if "aiokafka-produce" in paths or "aiokafka-flush" in paths:  # the paths with a Kafka broker
            from busprop.demo.brokers import kafka_bootstrap_servers

            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = stack.enter_context(kafka_bootstrap_servers())
        _count_paths(paths, options.small, options.large)


def _count_paths(paths: list[str], small_size: int, large_size: int) -> None:
    for path in paths:
        scenarios = PATHS[path]
        # A sampled message costs a hundred times an unsampled one: a fifth of the messages; an
        # echo round trip over a socket is four traced ends and the event loop: a tenth (sampled,
        # a fiftieth).
        divisor = {"websocket": 10, "websocket-sampled": 50}.get(path, 5 if path.endswith("sampled") else 1)
        small, large = small_size // divisor, large_size // divisor
        print(f"\n{path}: instructions per message ({small:,} and {large:,} messages)\n")
        print("| scenario | instructions | over the floor | busprop's own (over sentry-sdk alone) |")
        print("| --- | ---: | ---: | ---: |")
        floor = None
        sdk_alone_figure: dict[str, int] = {}
        excesses: dict[str, int] = {}
        for scenario, label in scenarios:
            per_message = (_instructions(path, scenario, large) - _instructions(path, scenario, small)) // (
                large - small
            )
            floor = per_message if floor is None else floor
            excess = "" if per_message == floor else f"{per_message - floor:+,}"
            own = ""
            if scenario.startswith("sdk-"):
                sdk_alone_figure[scenario[len("sdk-") :]] = per_message
            elif scenario in sdk_alone_figure:
                own = f"{per_message - sdk_alone_figure[scenario]:+,}"
            print(f"| {label} | {per_message:,} | {excess} | {own} |", flush=True)
            excesses[scenario] = per_message - floor
        if excesses.get("otel"):
            ratios = ", ".join(
                f"{scenario} {excesses[scenario] / excesses['otel']:.2f}"
                for scenario in ("sdk-off", "off", "sdk-unsampled", "unsampled")
                if scenario in excesses
            )
            print(f"\nbusprop's overhead over the floor / OpenTelemetry's: {ratios}")


if __name__ == "__main__":
    main()
