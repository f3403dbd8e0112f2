"""What busprop sends and what it trusts, proven adapter by adapter on the real brokers.

Three promises of "What busprop sends and trusts" (docs/sampling.md), each a property a user relies on without
looking: no trace header leaves for a destination outside ``propagation_targets`` (every header
container of every adapter, read back from the wire); a trace from another Sentry organization is
not continued under ``strict_trace_continuation``; the baggage on the wire stays within 8192
characters and 180 members; and payloads, Kafka keys, URLs' query strings and header values other
than the trace headers never reach Sentry unless ``send_default_pii`` is on (unique marker strings
searched for in every serialized envelope). Each negative check has a positive control in the same
test, so a test cannot pass because nothing was sent at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aio_pika
import pytest
import redis
import sentry_sdk
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from celery import Celery
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from websockets.asyncio.client import connect as bare_connect
from websockets.asyncio.server import ServerConnection, serve

import busprop
import busprop.amqp
import busprop.celery
import busprop.kafka
import busprop.sdk
from busprop import websockets as traced_ws
from busprop.testing import CapturingTransport
from tests.conftest import Captured
from tests.test_celery import Worker, start_worker, stop_worker
from tests.test_kafka import read_all

pytestmark = pytest.mark.broker

Init = Callable[..., Captured]
TRACE_KEYS = ("sentry-trace", "baggage", "traceparent")
ORG_DSN = "http://public@o42.ingest.localhost/1"  # sentry-sdk reads org id 42 from the host


def marker(what: str) -> str:
    """A string that can only appear in Sentry's data if busprop (or the SDK) copied it there."""
    return f"MARK{what.upper()}{secrets.token_hex(8)}"


def sent_to_sentry() -> str:
    """Every envelope this process would have sent, serialized as on the wire."""
    sentry_sdk.flush()
    return b"".join(envelope.serialize() for envelope in CapturingTransport.envelopes).decode(
        "utf-8", errors="replace"
    )


def foreign_trace(org_id: str) -> tuple[str, str, str, str]:
    """(trace_id, span_id, sentry-trace, baggage) of a sampled head in organization ``org_id``."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    baggage = f"sentry-trace_id={trace_id},sentry-org_id={org_id},sentry-sampled=true,sentry-sample_rand=0.25"
    return trace_id, span_id, f"{trace_id}-{span_id}-1", baggage


def assert_continued_only_from_own_org(
    events: list[dict[str, Any]], trace_id: str, span_id: str, org: str
) -> None:
    """The one message's transaction continues the head iff the head is in org 42.

    Either way it holds the message's one ``queue.process`` span, which ended ``ok``.
    """
    [processed] = [event for event in events if event["contexts"]["trace"]["op"] == busprop.sdk.OP_TASK]
    trace = processed["contexts"]["trace"]
    [span] = [span for span in processed["spans"] if span["op"] == busprop.sdk.OP_PROCESS]
    assert (span["trace_id"], span["parent_span_id"]) == (trace["trace_id"], trace["span_id"])
    assert (span["status"], trace["status"]) == ("ok", "ok")
    if org == "42":
        assert (trace["trace_id"], trace["parent_span_id"]) == (trace_id, span_id)
    else:
        assert trace["trace_id"] != trace_id
        assert trace.get("parent_span_id") is None


def third_party_baggage(prefix: str, members: int = 150) -> str:
    """``members`` third-party members of about 45 characters each (well within 8192 on its own)."""
    return ",".join(f"{prefix}{index:03d}=" + "v" * 36 for index in range(members))


def assert_capped(baggage: str, trace_id: str, own: str = "own") -> None:
    """The wire value within W3C's limits, Sentry's own members never the ones dropped, and as
    many third-party members as fit kept whole, in order: the message's own (prefix ``own``)
    first, then the continued trace's (``up``), before Sentry's."""
    members = baggage.split(",")
    assert len(baggage) <= 8192 and len(members) <= 180
    sentry = [member for member in members if member.startswith("sentry-")]
    assert f"sentry-trace_id={trace_id}" in sentry
    assert any(member.startswith("sentry-sampled=") for member in sentry)
    offered = third_party_baggage(own).split(",") + third_party_baggage("up").split(",")
    kept = members[: len(members) - len(sentry)]
    assert kept == offered[: len(kept)] and members[len(kept) :] == sentry
    assert [member for member in kept if member.startswith(own)] == offered[:150]  # all of the message's
    following = offered[len(kept)]  # the first one dropped: it would have broken a limit
    assert len(members) == 180 or len(baggage) + 1 + len(following) > 8192


@contextlib.contextmanager
def inside_big_baggage_trace() -> Iterator[str]:
    """A transaction continuing a head whose baggage holds 150 third-party members; yields its trace id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    incoming = {
        "sentry-trace": f"{trace_id}-{span_id}-1",
        "baggage": f"sentry-trace_id={trace_id},sentry-sampled=true," + third_party_baggage("up"),
    }
    assert len(incoming["baggage"]) < 8192
    with busprop.continue_trace(incoming, system="custom", destination="inbox") as transaction:
        assert transaction is not None and transaction.trace_id == trace_id
        yield trace_id


# --- Kafka -----------------------------------------------------------------------------------------


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Callable[[str], str]]:
    """``topics(prefix)`` creates a uniquely named one-partition topic."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)

    def create(prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, 1, 1)])
        return name

    yield create
    admin.close()


@pytest.mark.parametrize("path", ["traced_producer", "KafkaIntegration"])
def test_kafka_no_trace_header_outside_targets(
    sentry_init: Init, kafka_bootstrap: str, topics: Callable[[str], str], path: str
) -> None:
    integrations = [busprop.kafka.KafkaIntegration()] if path == "KafkaIntegration" else []
    sentry_init(traces_sample_rate=1.0, integrations=integrations)
    busprop.configure(propagation_targets=[r"^inside-"], write_traceparent=True)
    inside, outside = topics("inside"), topics("outside")
    user_headers = [("tenant", b"acme"), ("baggage", b"vendor=kept")]
    producer: Any = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    if path == "traced_producer":
        producer = busprop.kafka.traced_producer(producer)
    try:
        with sentry_sdk.start_transaction(name="head") as head:
            for topic in (inside, outside):
                producer.send(topic, b"v", headers=list(user_headers)).get(timeout=10)
    finally:
        producer.close()
        busprop.kafka.KafkaIntegration.uninstall()
    [sent_out] = read_all(kafka_bootstrap, outside, 1)
    assert sent_out.headers == user_headers  # exactly what the user passed: no trace, no merge
    [sent_in] = read_all(kafka_bootstrap, inside, 1)
    names = [name for name, _ in sent_in.headers]
    assert names == ["tenant", "baggage", "sentry-trace", "traceparent"]  # the control
    assert dict(sent_in.headers)["sentry-trace"].decode().startswith(head.trace_id)


@pytest.mark.parametrize("org", ["7", "42"])
def test_kafka_strict_trace_continuation(
    sentry_init: Init, kafka_bootstrap: str, topics: Callable[[str], str], org: str
) -> None:
    captured = sentry_init(dsn=ORG_DSN, strict_trace_continuation=True, traces_sample_rate=1.0)
    trace_id, span_id, sentry_trace, baggage = foreign_trace(org)
    topic = topics("strict")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    headers = [("sentry-trace", sentry_trace.encode()), ("baggage", baggage.encode())]
    producer.send(topic, b"v", headers=headers).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    with busprop.kafka.traced_consumer(consumer) as records:
        for _record in records:
            break
    consumer.close()
    assert_continued_only_from_own_org(captured.transactions(), trace_id, span_id, org)


def test_kafka_baggage_capped_on_the_wire(
    sentry_init: Init, kafka_bootstrap: str, topics: Callable[[str], str]
) -> None:
    sentry_init(traces_sample_rate=1.0)
    topic = topics("capped")
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with inside_big_baggage_trace() as trace_id:
        own = [("baggage", third_party_baggage("own").encode())]
        producer.send(topic, b"v", headers=own).get(timeout=10)
    producer.close()
    [record] = read_all(kafka_bootstrap, topic, 1)
    [baggage] = [value.decode() for name, value in record.headers if name == "baggage"]
    assert_capped(baggage, trace_id)


@pytest.mark.filterwarnings("ignore:.*send_default_pii.* deprecated")
@pytest.mark.parametrize("pii", [False, True])
def test_kafka_payload_key_and_headers_never_reach_sentry(
    sentry_init: Init, kafka_bootstrap: str, topics: Callable[[str], str], pii: bool
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, send_default_pii=pii)
    value, key, header = marker("value"), marker("key"), marker("header")
    topic = topics("pii")
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with sentry_sdk.start_transaction(name="head"):
        producer.send(topic, value.encode(), key=key.encode(), headers=[("note", header.encode())]).get(
            timeout=10
        )
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    with busprop.kafka.traced_consumer(consumer) as records:
        for record in records:
            assert record.value == value.encode()
            break
    consumer.close()
    names = sorted(event["transaction"] for event in captured.transactions())
    assert names == sorted(["head", topic])  # the publishing request and the record's processing
    sent = sent_to_sentry()
    assert topic in sent  # the control: the transactions are in what was searched
    assert value not in sent and header not in sent
    assert (key in sent) is pii  # the key is span data only with send_default_pii


# --- AMQP ------------------------------------------------------------------------------------------


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    yield await connection.channel()
    await connection.close()


async def declare(channel: AbstractChannel) -> aio_pika.abc.AbstractQueue:
    return await channel.declare_queue(f"busprop-security-{uuid.uuid4().hex[:10]}", exclusive=True)


async def receive(queue: aio_pika.abc.AbstractQueue) -> AbstractIncomingMessage:
    for _ in range(250):
        message = await queue.get(timeout=5, fail=False)
        if message is not None:
            await message.ack()
            return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing arrived on {queue.name}")


@pytest.mark.parametrize("path", ["traced_exchange", "AioPikaIntegration"])
async def test_amqp_no_trace_header_outside_targets(
    sentry_init: Init, channel: AbstractChannel, path: str
) -> None:
    integrations = [busprop.amqp.AioPikaIntegration()] if path == "AioPikaIntegration" else []
    sentry_init(traces_sample_rate=1.0, integrations=integrations)
    inside, outside = await declare(channel), await declare(channel)
    busprop.configure(propagation_targets=[rf"^/{inside.name}$"], write_traceparent=True)
    exchange: Any = channel.default_exchange
    if path == "traced_exchange":
        exchange = busprop.amqp.traced_exchange(exchange)
    try:
        with sentry_sdk.start_transaction(name="head") as head:
            for queue in (inside, outside):
                message = aio_pika.Message(b"v", headers={"tenant": "acme", "baggage": "vendor=kept"})
                await exchange.publish(message, routing_key=queue.name)
    finally:
        busprop.amqp.AioPikaIntegration.uninstall()
    sent_out = await receive(outside)
    assert sent_out.headers == {"tenant": "acme", "baggage": "vendor=kept"}  # as given: nothing added
    sent_in = await receive(inside)
    assert set(TRACE_KEYS) <= set(sent_in.headers)  # the control
    assert str(sent_in.headers["sentry-trace"]).startswith(head.trace_id)


@pytest.mark.parametrize("org", ["7", "42"])
async def test_amqp_strict_trace_continuation(sentry_init: Init, channel: AbstractChannel, org: str) -> None:
    captured = sentry_init(dsn=ORG_DSN, strict_trace_continuation=True, traces_sample_rate=1.0)
    trace_id, span_id, sentry_trace, baggage = foreign_trace(org)
    queue = await declare(channel)
    message = aio_pika.Message(b"v", headers={"sentry-trace": sentry_trace, "baggage": baggage})
    await channel.default_exchange.publish(message, routing_key=queue.name)  # an untraced publisher
    incoming = await receive(queue)
    async with busprop.amqp.message_processing(incoming):
        pass
    assert_continued_only_from_own_org(captured.transactions(), trace_id, span_id, org)


async def test_amqp_baggage_capped_on_the_wire(sentry_init: Init, channel: AbstractChannel) -> None:
    sentry_init(traces_sample_rate=1.0)
    queue = await declare(channel)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    with inside_big_baggage_trace() as trace_id:
        message = aio_pika.Message(b"v", headers={"baggage": third_party_baggage("own")})
        await exchange.publish(message, routing_key=queue.name)
    incoming = await receive(queue)
    baggage = incoming.headers["baggage"]
    assert_capped(baggage.decode() if isinstance(baggage, bytes) else str(baggage), trace_id)


async def test_amqp_payload_and_headers_never_reach_sentry(
    sentry_init: Init, channel: AbstractChannel
) -> None:
    sentry_init(traces_sample_rate=1.0)
    body, header = marker("body"), marker("header")
    queue = await declare(channel)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    with sentry_sdk.start_transaction(name="head"):
        await exchange.publish(
            aio_pika.Message(body.encode(), headers={"note": header}), routing_key=queue.name
        )
    incoming = await receive(queue)
    async with busprop.amqp.message_processing(incoming):
        assert incoming.body == body.encode()
    sent = sent_to_sentry()
    assert queue.name in sent and "queue.process" in sent  # the control
    assert body not in sent and header not in sent


# --- Celery ----------------------------------------------------------------------------------------


@pytest.fixture
def publisher(sentry_init: Init, redis_url: str) -> Iterator[tuple[Celery, str]]:
    """A Celery app publishing through busprop to a Redis queue nobody consumes; yields (app, queue)."""
    sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)
    queue = f"busprop-security-{uuid.uuid4().hex[:8]}"
    app = Celery("security", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    busprop.celery.install(app)
    yield app, queue
    busprop.celery.uninstall()
    redis.Redis.from_url(redis_url).delete(queue)
    app.close()


def raw_messages(redis_url: str, queue: str) -> dict[str, dict[str, Any]]:
    """The task messages on the wire (kombu's Redis transport), by task name."""
    raw = redis.Redis.from_url(redis_url).lrange(queue, 0, -1)
    messages = [json.loads(item) for item in raw]
    return {message["headers"]["task"]: message for message in messages}


def test_celery_no_trace_header_outside_targets(publisher: tuple[Celery, str], redis_url: str) -> None:
    app, queue = publisher
    busprop.configure(propagation_targets=[r"^security\.inside$"], write_traceparent=True)
    with sentry_sdk.start_transaction(name="head") as head:
        for name in ("security.inside", "security.outside"):
            app.send_task(name, ("v",), headers={"tenant": "acme"})
    messages = raw_messages(redis_url, queue)
    outside, inside = messages["security.outside"], messages["security.inside"]
    assert head.trace_id not in json.dumps(outside)  # nowhere in the message, top level or nested
    assert not set(TRACE_KEYS) & set(outside["headers"])
    assert not [key for key in outside["headers"] if key.startswith("sentry-")]  # nor the publish time
    assert not set(TRACE_KEYS) & set(outside["headers"].get("headers") or {})
    assert outside["headers"]["tenant"] == "acme"
    for container in (inside["headers"], inside["headers"]["headers"]):  # the control, both places
        assert container["sentry-trace"].startswith(head.trace_id)


def test_celery_baggage_capped_on_the_wire(publisher: tuple[Celery, str], redis_url: str) -> None:
    app, queue = publisher
    with inside_big_baggage_trace() as trace_id:
        app.send_task("security.capped", ("v",), headers={"baggage": third_party_baggage("own")})
    message = raw_messages(redis_url, queue)["security.capped"]
    assert_capped(message["headers"]["baggage"], trace_id)
    assert_capped(message["headers"]["headers"]["baggage"], trace_id)


@pytest.fixture(scope="module")
def security_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A solo busprop worker (``tests/apps/celery_worker.py``, send_default_pii off) on Redis."""
    worker = start_worker(
        tmp_path_factory, name="security", broker=redis_url, backend=redis_url, pool="solo", concurrency=1
    )
    yield worker
    stop_worker(worker)


def test_celery_arguments_and_headers_never_reach_sentry(sentry_init: Init, security_worker: Worker) -> None:
    sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)
    busprop.celery.install(security_worker.app)
    argument, keyword, header = marker("arg"), marker("kwarg"), marker("header")
    app = security_worker.app
    try:
        with sentry_sdk.start_transaction(name="head") as head:
            result = app.tasks["busprop_tests.echo"].apply_async((argument,), headers={"note": header})
            # keyword arguments, to a task the worker does not know (its hop still ends in a transaction)
            unknown = app.send_task("busprop_tests.not_registered", kwargs={"secret": keyword})
        assert result.get(timeout=20)["traceparent"].startswith(head.trace_id)
    finally:
        busprop.celery.uninstall()
    for task_id in (result.id, unknown.id):
        security_worker.wait_for(
            lambda event, task_id=task_id: any(
                span["data"].get("messaging.message.id") == task_id for span in event.get("spans", ())
            )
        )
    # The worker's transactions. Its error events are left out: Celery logs an unregistered task's whole
    # message at ERROR level, which sentry-sdk's logging integration reports (neither is busprop).
    worker_sent = json.dumps(security_worker.events("transaction"))
    sent = sent_to_sentry() + worker_sent
    assert head.trace_id in worker_sent and "queue.publish" in sent  # the control: both sides searched
    assert argument not in sent and header not in sent and keyword not in sent


# --- WebSockets ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def recording_server(seen: list[Any]) -> AsyncIterator[str]:
    """A bare ``websockets`` server recording each handshake's headers and every message."""

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen.append(dict(connection.request.headers))
        async for message in connection:
            seen.append(message)

    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"


async def send_one(url: str, text: str) -> None:
    async with traced_ws.connect(url) as ws:
        await ws.send(text)


async def test_websockets_no_trace_header_outside_targets(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    outside_seen: list[Any] = []
    inside_seen: list[Any] = []
    text = '{"message": "hi", "metadata": {"kept": 1}}'
    async with recording_server(outside_seen) as outside, recording_server(inside_seen) as inside:
        busprop.configure(propagation_targets=[f"^{inside}$"], write_traceparent=True)
        with sentry_sdk.start_transaction(name="head") as head:
            await send_one(outside, text)
            await send_one(inside, text)
            async with bare_connect(outside) as plain:  # broadcast() over a connection busprop did not open
                traced_ws.broadcast([plain], text)
                await asyncio.sleep(0.05)
            for url, expected in ((outside, []), (inside, ["sentry-trace", "baggage", "traceparent"])):
                written = traced_ws.handshake_headers(url, {"X-Tenant": "acme"})
                assert [name for name, _ in written] == ["X-Tenant", *expected]
    handshake, message, broadcast_handshake, broadcast = outside_seen
    for headers in (handshake, broadcast_handshake):
        assert not {key.lower() for key in headers} & set(TRACE_KEYS)
    assert message == text and broadcast == text  # byte for byte: no metadata added
    handshake, message = inside_seen  # the control
    assert handshake["sentry-trace"].startswith(head.trace_id)
    assert set(json.loads(message)["metadata"]) == {"kept", "sentryTrace", "baggage", "traceparent"}


@pytest.mark.parametrize("org", ["7", "42"])
async def test_websockets_strict_trace_continuation(sentry_init: Init, org: str) -> None:
    captured = sentry_init(dsn=ORG_DSN, strict_trace_continuation=True, traces_sample_rate=1.0)
    trace_id, span_id, sentry_trace, baggage = foreign_trace(org)
    done = asyncio.Event()

    async def handler(ws: Any) -> None:
        async for _message in ws:
            done.set()

    async with serve(traced_ws.traced_handler(handler), "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"
        async with bare_connect(url) as browser:  # a browser following Sentry's docs
            await browser.send(
                json.dumps({"message": "hi", "metadata": {"sentryTrace": sentry_trace, "baggage": baggage}})
            )
            await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.05)
    assert_continued_only_from_own_org(captured.transactions(), trace_id, span_id, org)


async def test_websockets_baggage_capped_on_the_wire(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    seen: list[Any] = []
    text = json.dumps({"message": "hi", "metadata": {"baggage": third_party_baggage("own")}})
    async with recording_server(seen) as url:
        with inside_big_baggage_trace() as trace_id:
            async with traced_ws.connect(
                url, additional_headers={"baggage": third_party_baggage("hs")}
            ) as ws:
                await ws.send(text)
                await asyncio.sleep(0.05)
    handshake, message = seen
    assert_capped(handshake["baggage"], trace_id, own="hs")
    assert_capped(json.loads(message)["metadata"]["baggage"], trace_id)


async def test_websockets_messages_query_and_headers_never_reach_sentry(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    body, token, header, reply = marker("body"), marker("token"), marker("header"), marker("reply")
    password = marker("password")

    async def handler(ws: Any) -> None:
        async for message in ws:
            assert json.loads(message)["message"] == body
            await ws.send(json.dumps({"message": reply}))

    async with serve(traced_ws.traced_handler(handler), "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"
        with sentry_sdk.start_transaction(name="head"):
            credentials = url.replace("ws://", f"ws://user:{password}@")  # sent as an Authorization header
            async with traced_ws.connect(
                f"{credentials}?token={token}", additional_headers={"X-Note": header}
            ) as ws:
                await ws.send(json.dumps({"message": body}))
                assert json.loads(await ws.recv())["message"] == reply
    await asyncio.sleep(0.05)
    sent = sent_to_sentry()
    assert url in sent and sent.count("queue.process") >= 2  # the control: both directions recorded
    authorization = base64.b64encode(f"user:{password}".encode()).decode()
    for secret in (body, token, header, reply, password, authorization):
        assert secret not in sent


# --- error events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("include_local_variables", [True, False])
def test_consumer_errors_carry_payloads_only_in_frame_locals(
    sentry_init: Init, include_local_variables: bool
) -> None:
    """A consumer's exception is reported with sentry-sdk's frame locals (its ``include_local_variables``,
    on by default), where the message is a local like any other; with it off, nothing of the message
    reaches Sentry, error event included."""
    captured = sentry_init(traces_sample_rate=1.0, include_local_variables=include_local_variables)
    body, header = marker("body"), marker("header")

    @busprop.consumer(system="custom", destination="orders", headers=lambda message: message["headers"])
    def handle(message: dict[str, Any]) -> None:
        raise LookupError("no such order")

    with pytest.raises(LookupError):
        handle({"headers": {"note": header}, "body": body})
    assert len(captured.errors()) == 1 and len(captured.transactions()) == 1  # the control
    sent = sent_to_sentry()
    assert "no such order" in sent
    assert (body in sent) is include_local_variables
    assert (header in sent) is include_local_variables
    assert body not in json.dumps(captured.transactions())  # never in the transaction
