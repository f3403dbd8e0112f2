"""busprop.amqp against the real RabbitMQ: what Sentry would receive from publishers and consumers.

Every queue has a unique name and is exclusive to the test's connection (or deleted at the end),
so tests never see each other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aio_pika.patterns
import pytest
import sentry_sdk
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.queue import QueueIterator

import busprop
import busprop.amqp
import busprop.sdk
from busprop.amqp import AioPikaIntegration
from busprop.testing import CapturingTransport
from tests.conftest import tool_missing
from tests.processes import read_captured, run_app, start_app

pytestmark = pytest.mark.broker

HEAD = "771a43a4192642f0b136d5159a501700"


def unique(prefix: str = "busprop-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def trace_of(event: dict[str, Any]) -> dict[str, Any]:
    return event["contexts"]["trace"]  # type: ignore[no-any-return]


def spans_of(events: list[dict[str, Any]], op: str) -> list[dict[str, Any]]:
    return [span for event in events for span in event["spans"] if span["op"] == op]


def mechanism_of(error: dict[str, Any]) -> str | None:
    return error["exception"]["values"][-1].get("mechanism", {}).get("type")  # type: ignore[no-any-return]


def messaging_data(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key.startswith("messaging.")}


def process_span(event: dict[str, Any]) -> dict[str, Any]:
    """A consumer transaction's one ``queue.process`` span, checked against the transaction.

    The span holds the message's Queues data; the transaction does not repeat it.
    """
    trace = trace_of(event)
    (span,) = [span for span in event["spans"] if span["op"] == "queue.process"]
    assert (span["trace_id"], span["parent_span_id"]) == (trace["trace_id"], trace["span_id"])
    assert span["description"] == span["data"]["messaging.destination.name"]
    assert span["origin"] == trace["origin"] == "auto.queue.busprop.aio_pika"
    assert span["status"] == trace["status"] in ("ok", "internal_error")
    assert messaging_data(trace["data"]) == {}
    return span  # type: ignore[no-any-return]


def processed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The consumers' transactions, each checked to hold exactly one ``queue.process`` span."""
    consumed = [event for event in events if trace_of(event)["op"] == busprop.sdk.OP_TASK]
    for event in consumed:
        process_span(event)
    return consumed


async def transactions_when(
    captured: Any, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 5
) -> list[dict[str, Any]]:
    """The captured transactions, once ``ready(events)`` holds (a consumer may finish after a reply)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events: list[dict[str, Any]] = captured.transactions()
        if ready(events) or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.01)


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url)
    yield connection
    await connection.close()


@pytest.fixture
async def channel(connection: aio_pika.abc.AbstractRobustConnection) -> AbstractChannel:
    return await connection.channel()


async def exclusive_queue(channel: AbstractChannel) -> AbstractQueue:
    return await channel.declare_queue(unique(), exclusive=True)


async def receive(queue: AbstractQueue) -> AbstractIncomingMessage:
    message = await queue.get(timeout=5, fail=False)
    for _ in range(50):
        if message is not None:
            return message
        await asyncio.sleep(0.02)
        message = await queue.get(timeout=5, fail=False)
    raise AssertionError(f"nothing arrived on {queue.name}")


async def consume_until(
    queue: AbstractQueue, count: int, handler: Callable[[AbstractIncomingMessage], Any]
) -> list[AbstractIncomingMessage]:
    """Consume with ``handler`` (already decorated or not) until ``count`` calls returned."""
    done = asyncio.Event()
    seen: list[AbstractIncomingMessage] = []

    async def callback(message: AbstractIncomingMessage) -> None:
        try:
            await handler(message)
        finally:
            seen.append(message)
            if len(seen) >= count:
                done.set()

    tag = await queue.consume(callback)
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        await queue.cancel(tag)
    return seen


# --- publishing ---------------------------------------------------------------------------------


async def test_publish_writes_trace_into_a_copy_and_leaves_the_message_alone(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    user_headers: dict[str, Any] = {"x-tenant": "acme", "baggage": "vendor=kept", "sentry-trace": "stale"}
    message = aio_pika.Message(b'{"order": 42}', headers=user_headers)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    with sentry_sdk.start_transaction(name="checkout"):
        await exchange.publish(message, routing_key=queue.name)

    assert message.headers is user_headers
    assert user_headers == {"x-tenant": "acme", "baggage": "vendor=kept", "sentry-trace": "stale"}
    assert message.timestamp is None and message.message_id is None

    received = await receive(queue)
    assert received.body == b'{"order": 42}'
    (span,) = spans_of(captured.transactions(), "queue.publish")
    assert received.headers["sentry-trace"] == f"{span['trace_id']}-{span['span_id']}-1"
    baggage = str(received.headers["baggage"]).split(",")
    assert baggage[0] == "vendor=kept" and f"sentry-trace_id={span['trace_id']}" in baggage
    assert received.headers["x-tenant"] == "acme"
    assert list(received.headers).count("sentry-trace") == 1
    assert received.timestamp is not None and received.message_id
    assert span["data"] == {
        **span["data"],
        "messaging.system": "rabbitmq",
        "messaging.destination.name": f"/{queue.name}",
        "messaging.message.id": received.message_id,
        "messaging.message.body.size": 13,
        "messaging.rabbitmq.destination.routing_key": queue.name,
    }
    assert span["origin"] == "auto.queue.busprop.aio_pika"
    assert span["status"] == "ok"


async def test_a_reused_message_carries_each_publish_its_own_trace(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    message = aio_pika.Message(b"same", message_id="fixed-id")
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    for name in ("first", "second"):
        with sentry_sdk.start_transaction(name=name):
            await exchange.publish(message, routing_key=queue.name)
    traces = [str((await receive(queue)).headers["sentry-trace"]) for _ in range(2)]
    spans = spans_of(captured.transactions(), "queue.publish")
    assert traces == [f"{span['trace_id']}-{span['span_id']}-1" for span in spans]
    assert traces[0][:32] != traces[1][:32]
    assert [span["data"]["messaging.message.id"] for span in spans] == ["fixed-id", "fixed-id"]
    assert message.headers == {}


async def test_forwarding_a_received_message_writes_the_forwarders_trace(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    """A received (acked, so locked) message published again: its old trace is replaced, in the copy only."""
    captured = sentry_init(traces_sample_rate=1.0)
    inbox, outbox = await exclusive_queue(channel), await exclusive_queue(channel)
    old = f"{HEAD}-b2bd6e9b3e4c5a1f-1"
    await channel.default_exchange.publish(
        aio_pika.Message(b"payload", headers={"sentry-trace": old, "x": 1}, correlation_id="c-1"), inbox.name
    )
    incoming = await receive(inbox)
    await incoming.ack()
    with sentry_sdk.start_transaction(name="forwarder"):
        await busprop.amqp.traced_exchange(channel.default_exchange).publish(
            incoming, routing_key=outbox.name
        )
    forwarded = await receive(outbox)
    (span,) = spans_of(captured.transactions(), "queue.publish")
    assert forwarded.headers["sentry-trace"] == f"{span['trace_id']}-{span['span_id']}-1"
    assert (forwarded.body, forwarded.headers["x"], forwarded.correlation_id) == (b"payload", 1, "c-1")
    assert incoming.headers["sentry-trace"] == old


async def test_named_exchange_destination_and_propagation_targets(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    exchange = await channel.declare_exchange(
        unique("busprop-x"), aio_pika.ExchangeType.TOPIC, auto_delete=True
    )
    queue = await exclusive_queue(channel)
    await queue.bind(busprop.amqp.traced_exchange(exchange), routing_key="orders.#")
    traced = busprop.amqp.traced_exchange(exchange)
    busprop.configure(propagation_targets=[rf"^{exchange.name}/orders\.eu$"])
    with sentry_sdk.start_transaction(name="checkout"):
        await traced.publish(aio_pika.Message(b"eu"), routing_key="orders.eu")
        await traced.publish(aio_pika.Message(b"us", headers={"keep": "me"}), routing_key="orders.us")

    eu, us = await receive(queue), await receive(queue)
    assert "sentry-trace" in eu.headers
    assert us.headers == {"keep": "me"} and us.timestamp is None
    destinations = [
        span["data"]["messaging.destination.name"]
        for span in spans_of(captured.transactions(), "queue.publish")
    ]
    assert destinations == [f"{exchange.name}/orders.eu", f"{exchange.name}/orders.us"]


async def test_publisher_decorator_traces_the_exchanges_it_receives(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)

    @busprop.amqp.publisher
    async def send(exchange: aio_pika.abc.AbstractExchange, body: bytes, *, also: Any = None) -> None:
        assert isinstance(exchange, busprop.amqp.TracedExchange)
        assert isinstance(also, busprop.amqp.TracedExchange)
        await exchange.publish(aio_pika.Message(body), routing_key=queue.name)

    with sentry_sdk.start_transaction(name="checkout"):
        await send(channel.default_exchange, b"hello", also=channel.default_exchange)
    (span,) = spans_of(captured.transactions(), "queue.publish")
    assert (await receive(queue)).headers["sentry-trace"] == f"{span['trace_id']}-{span['span_id']}-1"


# --- consuming ----------------------------------------------------------------------------------


async def publish_traced(channel: AbstractChannel, routing_key: str, bodies: list[bytes]) -> list[str]:
    """Publish each body in its own transaction; returns each message's ``trace_id-span_id``."""
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    for body in bodies:
        with sentry_sdk.start_transaction(name="producer"):
            await exchange.publish(aio_pika.Message(body), routing_key=routing_key)
    sentry_sdk.flush()
    spans = spans_of(CapturingTransport.transactions(), "queue.publish")[-len(bodies) :]
    return [f"{span['trace_id']}-{span['span_id']}" for span in spans]


async def test_callback_consumer_continues_the_trace(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    (sent,) = await publish_traced(channel, queue.name, [b"order"])
    inside: list[str | None] = []

    @busprop.amqp.consumer
    async def handle(message: AbstractIncomingMessage) -> None:
        async with message.process():
            inside.append(sentry_sdk.get_traceparent())

    await consume_until(queue, 1, handle)
    (event,) = processed(captured.transactions())
    trace, span = trace_of(event), process_span(event)
    assert (trace["trace_id"], trace["parent_span_id"]) == tuple(sent.split("-"))
    assert inside[0] is not None and inside[0].startswith(f"{trace['trace_id']}-{span['span_id']}")
    assert event["transaction"] == span["description"] == f"/{queue.name}"
    assert (trace["status"], span["status"]) == ("ok", "ok")
    data = span["data"]
    assert data["messaging.system"] == "rabbitmq"
    assert data["messaging.destination.name"] == f"/{queue.name}"
    assert data["messaging.message.retry.count"] == 0
    assert data["messaging.message.body.size"] == 5
    assert 0 <= data["messaging.message.receive.latency"] < 5000
    assert data["messaging.rabbitmq.message.delivery_tag"] >= 1
    assert data["messaging.message.id"]


async def test_iterator_runs_each_loop_body_in_its_message_trace(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    sent = await publish_traced(channel, queue.name, [b"0", b"1", b"2"])
    inside = []
    async with busprop.amqp.traced_iterator(queue.iterator(), name="orders") as messages:
        async for message in messages:
            async with message.process():
                await asyncio.sleep(0)
                inside.append((message.body, (sentry_sdk.get_traceparent() or "")[:32]))
            if len(inside) == 3:
                break
    assert inside == [(str(n).encode(), sent[n][:32]) for n in range(3)]
    events = processed(captured.transactions())
    assert [(trace_of(e)["trace_id"], trace_of(e)["parent_span_id"]) for e in events] == [
        tuple(trace.split("-")) for trace in sent
    ]
    assert {event["transaction"] for event in events} == {"orders"}
    assert [process_span(event)["description"] for event in events] == [f"/{queue.name}"] * 3
    assert all(trace_of(event)["status"] == process_span(event)["status"] == "ok" for event in events)


async def test_iterator_body_exception_fails_the_transaction_and_closes_the_iterator(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    await publish_traced(channel, queue.name, [b"bad"])
    iterator = queue.iterator()
    with pytest.raises(KeyError):
        async with busprop.amqp.traced_iterator(iterator) as messages:
            async for message in messages:
                async with message.process(requeue=True):
                    raise KeyError("bad")
    (event,) = processed(captured.transactions())
    assert trace_of(event)["status"] == process_span(event)["status"] == "internal_error"
    assert iterator.consumer_tag is None  # aio-pika's own close ran
    redelivered = await receive(queue)
    assert redelivered.redelivered and redelivered.body == b"bad"


async def test_consumer_exception_leaves_redelivery_unchanged(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    """The same callback, bare and decorated: aio-pika requeues and redelivers identically."""
    captured = sentry_init(traces_sample_rate=1.0)

    async def scenario(decorate: bool) -> list[bool]:
        queue = await exclusive_queue(channel)
        await publish_traced(channel, queue.name, [b"flaky"])
        deliveries: list[bool] = []

        async def handle(message: AbstractIncomingMessage) -> None:
            async with message.process(requeue=True):
                deliveries.append(bool(message.redelivered))
                if len(deliveries) == 1:
                    raise RuntimeError("flaky")

        await consume_until(queue, 2, busprop.amqp.consumer(handle) if decorate else handle)
        return deliveries

    bare = await scenario(decorate=False)
    traced = await scenario(decorate=True)
    assert bare == traced == [False, True]
    events = processed(captured.transactions())
    assert [trace_of(e)["status"] for e in events] == ["internal_error", "ok"]
    assert [process_span(e)["status"] for e in events] == ["internal_error", "ok"]
    assert [process_span(e)["data"]["messaging.message.retry.count"] for e in events] == [0, 1]
    assert trace_of(events[0])["trace_id"] == trace_of(events[1])["trace_id"]
    (error,) = [e for e in captured.errors() if mechanism_of(e) == "busprop.aio_pika"]
    assert error["exception"]["values"][-1]["value"] == "flaky"
    assert error["contexts"]["trace"]["trace_id"] == trace_of(events[0])["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == process_span(events[0])["span_id"]


async def test_decorated_callback_reraises_the_same_exception(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    await publish_traced(channel, queue.name, [b"x"])
    message = await receive(queue)
    error = ValueError("mine")

    @busprop.amqp.consumer
    async def handle(message: AbstractIncomingMessage) -> None:
        raise error

    with pytest.raises(ValueError) as raised:
        await handle(message)
    assert raised.value is error
    assert not message.processed  # busprop never acks, nacks or rejects
    await message.nack(requeue=False)


async def test_a_sync_callback_stays_sync_and_is_traced(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    (sent,) = await publish_traced(channel, queue.name, [b"sync"])

    @busprop.amqp.consumer
    def handle(message: AbstractIncomingMessage) -> str:
        return (sentry_sdk.get_traceparent() or "")[:32]

    assert handle(await receive(queue)) == sent[:32]  # a value, not a coroutine
    (event,) = processed(captured.transactions())
    assert trace_of(event)["parent_span_id"] == sent[33:]


def test_retry_count_from_redelivered_delivery_count_and_x_death() -> None:
    class Fake:
        def __init__(self, headers: dict[str, Any], redelivered: bool) -> None:
            self.headers, self.redelivered = headers, redelivered

    def count(headers: dict[str, Any], redelivered: bool = False) -> int:
        return busprop.amqp.retry_count(Fake(headers, redelivered))  # type: ignore[arg-type]

    assert count({}) == 0
    assert count({}, redelivered=True) == 1
    assert count({"x-delivery-count": 3}, redelivered=True) == 3
    deaths = [
        {"count": 2, "queue": "a", "reason": "rejected"},
        {"count": 1, "queue": "b", "reason": "expired"},
    ]
    assert count({"x-death": deaths}) == 3
    assert count({"x-death": deaths, "x-delivery-count": 1}, redelivered=True) == 4
    assert count({"x-death": "junk", "x-delivery-count": "2"}) == 0
    assert count({"x-death": [{"count": True}, {"count": -1}, "x"], "x-delivery-count": None}) == 0


async def test_retry_count_on_a_quorum_queue_and_after_dead_lettering(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    """Real broker headers: x-delivery-count of a quorum queue, x-death after a dead-letter exchange."""
    captured = sentry_init(traces_sample_rate=1.0)
    retries, quorum = await exclusive_queue(channel), unique("busprop-quorum")
    queue = await channel.declare_queue(
        quorum,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": retries.name,
        },
    )
    try:
        await publish_traced(channel, quorum, [b"job"])
        attempts: list[int] = []

        @busprop.amqp.consumer
        async def handle(message: AbstractIncomingMessage) -> None:
            attempts.append(busprop.amqp.retry_count(message))
            if len(attempts) == 1:
                await message.nack(requeue=True)  # back to the quorum queue: x-delivery-count 1
            else:
                await message.reject(requeue=False)  # to the dead-letter queue: x-death count 1

        await consume_until(queue, 2, handle)
        await consume_until(retries, 1, busprop.amqp.consumer(lambda message: message.ack()))
    finally:
        await queue.delete(if_unused=False, if_empty=False)
    events = processed(captured.transactions())
    assert attempts == [0, 1]
    # the third delivery: one dead-lettering (x-death); the broker does not carry the quorum queue's
    # x-delivery-count across the dead-letter exchange
    assert [process_span(e)["data"]["messaging.message.retry.count"] for e in events] == [0, 1, 1]
    assert len({trace_of(e)["trace_id"] for e in events}) == 1


MALFORMED: list[dict[str, Any]] = [
    {"sentry-trace": bytearray(b"\xff\xfe\x00"), "baggage": bytearray(b"\x00\x01")},
    {"sentry-trace": 42, "baggage": 1.5},
    {"sentry-trace": {"nested": {"table": f"{HEAD}-b2bd6e9b3e4c5a1f-1"}}, "baggage": ["a", 1]},
    {"sentry-trace": None, "baggage": None},
    {"sentry-trace": "not-a-trace", "baggage": "sentry-trace_id=zzz"},
    {"sentry-trace": f"{'0' * 32}-{'0' * 16}-1"},
    {"sentry-trace": [f"{HEAD}-b2bd6e9b3e4c5a1f-1"], "baggage": True},
    {"x-death": "junk", "x-delivery-count": "two", "busprop-published-at": "nan"},
]


async def test_malformed_and_non_string_headers_start_a_fresh_trace(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    for number, headers in enumerate(MALFORMED):
        await channel.default_exchange.publish(
            aio_pika.Message(str(number).encode(), headers=headers), queue.name
        )
    bodies: list[bytes] = []

    @busprop.amqp.consumer
    async def handle(message: AbstractIncomingMessage) -> None:
        async with message.process():
            bodies.append(message.body)

    await consume_until(queue, len(MALFORMED), handle)
    assert sorted(bodies) == sorted(str(n).encode() for n in range(len(MALFORMED)))
    events = processed(captured.transactions())
    trace_ids = {trace_of(event)["trace_id"] for event in events}
    assert len(events) == len(trace_ids) == len(MALFORMED)
    assert HEAD not in trace_ids and "0" * 32 not in trace_ids
    assert all(trace_of(event).get("parent_span_id") is None for event in events)
    assert captured.errors() == []


async def test_a_trace_in_a_byte_array_header_is_continued(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    headers = {"sentry-trace": bytearray(f"{HEAD}-b2bd6e9b3e4c5a1f-1".encode())}
    await channel.default_exchange.publish(aio_pika.Message(b"x", headers=headers), queue.name)
    await consume_until(queue, 1, busprop.amqp.consumer(lambda message: message.ack()))
    (event,) = processed(captured.transactions())
    assert (trace_of(event)["trace_id"], trace_of(event)["parent_span_id"]) == (HEAD, "b2bd6e9b3e4c5a1f")


async def test_unsampled_head_no_consumer_transaction_and_minus_zero_forwarded(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    first, second = await exclusive_queue(channel), await exclusive_queue(channel)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    with sentry_sdk.start_transaction(name="head", sampled=False) as head:
        await exchange.publish(aio_pika.Message(b"order"), routing_key=first.name)

    inside: list[Any] = []

    @busprop.amqp.consumer
    async def forward(message: AbstractIncomingMessage) -> None:
        async with message.process():
            inside.append(sentry_sdk.get_current_span())
            await exchange.publish(aio_pika.Message(b"email"), routing_key=second.name)

    await consume_until(first, 1, forward)
    # the body runs in a never-sampled transaction of the head's trace, which Sentry never receives
    assert [(span.trace_id, span.sampled) for span in inside] == [(head.trace_id, False)]
    received = await receive(second)
    trace_id, _, sampled = str(received.headers["sentry-trace"]).split("-")
    assert (trace_id, sampled) == (head.trace_id, "0")
    assert "sentry-sampled=false" in str(received.headers["baggage"])
    assert captured.transactions() == []


async def test_tracing_disabled_still_propagates_trace_ids(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=None)
    first, second = await exclusive_queue(channel), await exclusive_queue(channel)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    await exchange.publish(aio_pika.Message(b"a"), routing_key=first.name)
    head_trace = str((await receive(first)).headers["sentry-trace"])[:32]
    await exchange.publish(aio_pika.Message(b"b"), routing_key=first.name)

    @busprop.amqp.consumer
    async def forward(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await exchange.publish(aio_pika.Message(b"c"), routing_key=second.name)

    await consume_until(first, 1, forward)
    assert str((await receive(second)).headers["sentry-trace"])[:32] == head_trace
    assert captured.transactions() == []


# --- separate processes -------------------------------------------------------------------------


async def until_ready(process: subprocess.Popen[str]) -> None:
    """Wait for the app's ``ready`` line; fail with its output if it exits or says something else."""
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    if line.strip() != "ready":
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"the app did not get ready: {line!r}\n{stderr}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.mark.parametrize(("mode", "count", "prefetch"), [("callback", 500, 50), ("iterator", 100, 10)])
async def test_separate_processes_each_message_under_its_own_trace(
    amqp_url: str, channel: AbstractChannel, tmp_path: Any, mode: str, count: int, prefetch: int
) -> None:
    queue = await channel.declare_queue(unique(), auto_delete=False)
    consumer_capture, report_path = tmp_path / "consumer.json", tmp_path / "report.json"
    consumer = start_app(
        "amqp_consumer", amqp_url, queue.name, str(count), mode, str(prefetch),
        str(consumer_capture), str(report_path),
    )  # fmt: skip
    try:
        await until_ready(consumer)
        await asyncio.to_thread(
            run_app, "amqp_publisher", amqp_url, queue.name, str(count), str(tmp_path / "p.json")
        )
        _, stderr = await asyncio.to_thread(consumer.communicate, timeout=60)
        assert consumer.returncode == 0, stderr
    finally:
        stop(consumer)
        await queue.delete(if_unused=False, if_empty=False)

    publish_spans = spans_of(read_captured(tmp_path / "p.json")["transactions"], "queue.publish")
    assert len(publish_spans) == count
    parents = {span["trace_id"]: span["span_id"] for span in publish_spans}
    assert len(parents) == count

    report = json.loads(report_path.read_text())
    assert len(report["seen"]) == count
    for body, seen in report["seen"].items():
        assert seen["header"] == seen["before"] == seen["after"], body
    if mode == "callback":
        assert report["max_in_flight"] > 1  # callbacks really ran concurrently

    events = processed(read_captured(consumer_capture)["transactions"])
    assert len(events) == count
    assert {trace_of(e)["trace_id"]: trace_of(e)["parent_span_id"] for e in events} == parents


# --- RPC ----------------------------------------------------------------------------------------


async def test_rpc_server_continues_the_callers_trace_inside_the_round_trip_span(
    sentry_init: Callable[..., Any], connection: aio_pika.abc.AbstractRobustConnection
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    server = await busprop.amqp.TracedRPC.create(await connection.channel())
    caller = await busprop.amqp.TracedRPC.create(await connection.channel())
    method = unique("multiply")
    inside: list[str | None] = []

    async def multiply(*, x: int, y: int) -> int:
        await asyncio.sleep(0.01)
        inside.append(sentry_sdk.get_traceparent())
        return x * y

    await server.register(method, multiply, auto_delete=True)
    try:
        with sentry_sdk.start_transaction(name="caller") as root:
            assert await caller.call(method, kwargs={"x": 6, "y": 7}) == 42
    finally:
        await caller.close()
        await server.close()

    events = await transactions_when(captured, lambda events: len(processed(events)) == 1)
    (call_span,) = spans_of(events, "rpc.client")
    (request_span,) = [
        s for s in spans_of(events, "queue.publish") if s["parent_span_id"] == call_span["span_id"]
    ]
    (served,) = processed(events)
    assert call_span["trace_id"] == root.trace_id == trace_of(served)["trace_id"]
    assert trace_of(served)["parent_span_id"] == request_span["span_id"]  # the request, inside the call
    assert (call_span["status"], request_span["status"], trace_of(served)["status"]) == ("ok", "ok", "ok")
    assert inside[0] is not None and inside[0].startswith(
        f"{root.trace_id}-{process_span(served)['span_id']}"
    )
    # The server's transaction starts inside the caller's span; it may end a moment after the caller
    # has its reply (the server finishes after publishing the reply), so only the start is ordered.
    assert call_span["start_timestamp"] <= served["start_timestamp"] <= call_span["timestamp"]
    assert call_span["data"]["messaging.destination.name"] == f"/{method}"
    assert request_span["data"]["messaging.destination.name"] == f"/{method}"
    assert process_span(served)["data"]["messaging.destination.name"] == f"/{method}"


async def test_rpc_server_exception_fails_its_transaction_and_reaches_the_caller(
    sentry_init: Callable[..., Any], connection: aio_pika.abc.AbstractRobustConnection
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    server = await busprop.amqp.TracedRPC.create(await connection.channel())
    caller = await busprop.amqp.TracedRPC.create(await connection.channel())
    method = unique("fail")

    async def fail() -> None:
        raise LookupError("no such order")

    await server.register(method, fail, auto_delete=True)
    try:
        with sentry_sdk.start_transaction(name="caller"), pytest.raises(LookupError):
            await caller.call(method)
    finally:
        await caller.close()
        await server.close()
    events = await transactions_when(captured, lambda events: len(processed(events)) == 1)
    (served,) = processed(events)
    (call_span,) = spans_of(events, "rpc.client")
    assert trace_of(served)["status"] == process_span(served)["status"] == "internal_error"
    assert call_span["status"] == "internal_error"
    (error,) = [e for e in captured.errors() if mechanism_of(e) == "busprop.aio_pika"]
    assert error["contexts"]["trace"]["trace_id"] == trace_of(served)["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == process_span(served)["span_id"]


# --- auto-instrumentation -----------------------------------------------------------------------


@pytest.fixture
def integration() -> Iterator[type[AioPikaIntegration]]:
    yield AioPikaIntegration
    AioPikaIntegration.uninstall()


async def test_integration_traces_plain_aio_pika_code(
    sentry_init: Callable[..., Any], connection: aio_pika.abc.AbstractRobustConnection, integration: Any
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    channel = await connection.channel()
    callback_queue, loop_queue = await exclusive_queue(channel), await exclusive_queue(channel)
    with sentry_sdk.start_transaction(name="checkout") as root:
        await channel.default_exchange.publish(aio_pika.Message(b"a"), routing_key=callback_queue.name)
        await channel.default_exchange.publish(aio_pika.Message(b"b"), routing_key=loop_queue.name)
    inside: list[str] = []

    async def handle(message: AbstractIncomingMessage) -> None:
        async with message.process():
            inside.append((sentry_sdk.get_traceparent() or "")[:32])

    await consume_until(callback_queue, 1, handle)
    async with loop_queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                inside.append((sentry_sdk.get_traceparent() or "")[:32])
            break

    events = captured.transactions()
    publish_spans = spans_of(events, "queue.publish")
    assert len(publish_spans) == 2
    consumed = processed(events)
    assert [trace_of(e)["parent_span_id"] for e in consumed] == [span["span_id"] for span in publish_spans]
    assert inside == [root.trace_id, root.trace_id]


async def test_the_patched_publish_leaves_a_client_without_the_integration_alone(
    sentry_init: Callable[..., Any], connection: aio_pika.abc.AbstractRobustConnection, integration: Any
) -> None:
    """The patch stays installed once a client has set it up; a client initialised after it
    without AMQPIntegration has its messages published as given, and the next client with the
    Integration has them traced again (the check rides on the lookup every publish makes)."""
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    captured = sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)
    channel = await connection.channel()
    queue = await exclusive_queue(channel)
    message = aio_pika.Message(b"as given", headers={"x-user": "kept"})
    with sentry_sdk.start_transaction(name="checkout"):
        await channel.default_exchange.publish(message, routing_key=queue.name)
    delivered = await queue.get(timeout=5, no_ack=True)
    assert delivered.body == b"as given" and delivered.headers == {"x-user": "kept"}
    assert spans_of(captured.transactions(), "queue.publish") == []

    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    with sentry_sdk.start_transaction(name="checkout") as root:
        await channel.default_exchange.publish(message, routing_key=queue.name)
    delivered = await queue.get(timeout=5, no_ack=True)
    assert str(delivered.headers["sentry-trace"]).startswith(root.trace_id)
    assert len(spans_of(captured.transactions(), "queue.publish")) == 1


async def test_the_patched_publish_passes_arguments_it_cannot_read_to_aio_pika(
    sentry_init: Callable[..., Any], connection: aio_pika.abc.AbstractRobustConnection, integration: Any
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    channel = await connection.channel()
    with pytest.raises(TypeError) as raised:
        await channel.default_exchange.publish(aio_pika.Message(b"x"))  # type: ignore[call-arg]
    assert str(raised.value) == "Exchange.publish() missing 1 required positional argument: 'routing_key'"


@pytest.mark.parametrize("rpc_class", [aio_pika.patterns.RPC, busprop.amqp.TracedRPC])
async def test_integration_rpc_round_trip(
    sentry_init: Callable[..., Any],
    connection: aio_pika.abc.AbstractRobustConnection,
    integration: Any,
    rpc_class: type[aio_pika.patterns.RPC],
) -> None:
    """Plain RPC under the integration, and TracedRPC under it too: one span and one transaction."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    server = await rpc_class.create(await connection.channel())
    caller = await rpc_class.create(await connection.channel())
    method = unique("echo")

    async def echo(*, text: str) -> str:
        return text

    await server.register(method, echo, auto_delete=True)
    try:
        with sentry_sdk.start_transaction(name="caller"):
            assert await caller.call(method, kwargs={"text": "hi"}) == "hi"
    finally:
        await caller.close()
        await server.close()
    events = await transactions_when(captured, lambda events: len(processed(events)) == 1)
    (call_span,) = spans_of(events, "rpc.client")
    request_span = next(
        s for s in spans_of(events, "queue.publish") if s["parent_span_id"] == call_span["span_id"]
    )
    (served,) = processed(events)  # the caller's reply consumer is aio-pika's own: not a transaction
    assert trace_of(served)["parent_span_id"] == request_span["span_id"]


async def test_integration_iterator_body_exception_fails_the_transaction(
    sentry_init: Callable[..., Any], channel: AbstractChannel, integration: Any
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = await exclusive_queue(channel)
    await channel.default_exchange.publish(aio_pika.Message(b"bad"), routing_key=queue.name)
    with pytest.raises(KeyError):
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    raise KeyError("bad")
    (event,) = processed(captured.transactions())
    assert trace_of(event)["status"] == process_span(event)["status"] == "internal_error"


def test_integration_is_idempotent_and_uninstall_restores_the_originals(
    sentry_init: Callable[..., Any], integration: Any
) -> None:
    originals = {
        (owner, name): owner.__dict__[name]
        for owner, name in [
            (aio_pika.Exchange, "publish"),
            (aio_pika.Queue, "consume"),
            (aio_pika.Queue, "__aiter__"),
            (QueueIterator, "__aiter__"),
            (QueueIterator, "__aexit__"),
            (aio_pika.patterns.RPC, "call"),
            (aio_pika.patterns.RPC, "execute"),
        ]
    }
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    patched = {key: key[0].__dict__[key[1]] for key in originals}
    assert all(patched[key] is not original for key, original in originals.items())
    assert all(patched[key].__wrapped__ is original for key, original in originals.items())
    integration.setup_once()
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert {key: key[0].__dict__[key[1]] for key in originals} == patched
    integration.uninstall()
    assert {key: key[0].__dict__[key[1]] for key in originals} == originals
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert aio_pika.Exchange.__dict__["publish"] is not originals[(aio_pika.Exchange, "publish")]


async def test_integration_and_explicit_wrappers_trace_once(
    sentry_init: Callable[..., Any], channel: AbstractChannel, integration: Any
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = await exclusive_queue(channel)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)

    async def publish_one() -> None:
        with sentry_sdk.start_transaction(name="checkout"):
            await exchange.publish(aio_pika.Message(b"once"), routing_key=queue.name)

    await publish_one()
    await consume_until(queue, 1, busprop.amqp.consumer(lambda message: message.ack()))
    await publish_one()
    async with busprop.amqp.traced_iterator(queue.iterator()) as messages:
        async for message in messages:
            await message.ack()
            break
    await publish_one()
    async for message in busprop.amqp.traced_iterator(queue):
        await message.ack()
        break
    events = captured.transactions()
    assert len(spans_of(events, "queue.publish")) == 3
    assert len(processed(events)) == len(spans_of(events, "queue.process")) == 3


# --- the broker drops the connection mid-stream -------------------------------------------------


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def private_vhost(amqp_url: str) -> Iterator[str]:
    """A vhost of its own, so closing all of its connections disturbs nobody else on the broker."""
    if shutil.which("rabbitmqctl") is None:
        tool_missing("rabbitmqctl is not on PATH: it closes the connections from the broker side")
    vhost = unique("busprop-vhost")
    user = urlsplit(amqp_url).username or "guest"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        parts = urlsplit(amqp_url)
        yield urlunsplit((parts.scheme, parts.netloc, f"/{vhost}", "reconnect_interval=0.2", ""))
    finally:
        rabbitmqctl("delete_vhost", vhost)


async def test_connection_closed_by_the_broker_every_message_still_under_its_own_trace(
    sentry_init: Callable[..., Any], private_vhost: str
) -> None:
    """Messages 20-39 are in flight (unacked) when the broker closes both connections: they come back
    redelivered, and the rest are published after the robust connections reconnect."""
    captured = sentry_init(traces_sample_rate=1.0)
    count, drop_after = 120, 40
    vhost = urlsplit(private_vhost).path.lstrip("/")
    consumer_connection = await aio_pika.connect_robust(private_vhost)
    publisher_connection = await aio_pika.connect_robust(private_vhost)
    reconnections: list[object] = []
    for connection in (consumer_connection, publisher_connection):
        connection.reconnect_callbacks.add(lambda connection: reconnections.append(connection))
    expected: dict[bytes, str] = {}
    seen: dict[bytes, list[tuple[str, str, bool]]] = {}
    all_seen, dropped = asyncio.Event(), asyncio.Event()
    try:
        channel = await consumer_connection.channel()
        await channel.set_qos(prefetch_count=10)
        queue = await channel.declare_queue("stream", auto_delete=False)

        @busprop.amqp.consumer
        async def handle(message: AbstractIncomingMessage) -> None:
            async with message.process():
                if 20 <= int(message.body) < drop_after:
                    await dropped.wait()
                current = (sentry_sdk.get_traceparent() or "")[:32]
                header = str(message.headers["sentry-trace"])[:32]
                seen.setdefault(message.body, []).append((header, current, bool(message.redelivered)))
            if len(seen) == count:
                all_seen.set()

        await queue.consume(handle)
        publisher = busprop.amqp.traced_exchange((await publisher_connection.channel()).default_exchange)
        for number in range(count):
            if number == drop_after:
                await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "busprop test")
                await until(lambda: len(reconnections) >= 2)
                dropped.set()
            body = str(number).encode()
            with sentry_sdk.start_transaction(name=f"publish {number}") as transaction:
                expected[body] = transaction.trace_id
                await publish_until_accepted(publisher, body, "stream")
        await asyncio.wait_for(all_seen.wait(), timeout=30)
    finally:
        await consumer_connection.close()
        await publisher_connection.close()

    assert set(seen) == set(expected)
    for body, processings in seen.items():
        assert all(header == current == expected[body] for header, current, _ in processings), body
    assert any(redelivered for processings in seen.values() for _, _, redelivered in processings)
    events = processed(captured.transactions())
    assert {trace_of(event)["trace_id"] for event in events} == set(expected.values())


async def until(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def publish_until_accepted(exchange: Any, body: bytes, routing_key: str) -> None:
    """Publish, retrying while the robust connection reconnects (it does not replay publishes)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            await exchange.publish(aio_pika.Message(body), routing_key=routing_key)
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


# --- interoperability: Sentry's Node SDK (amqplib) and OpenTelemetry ------------------------------

NODE_DIR = Path(__file__).resolve().parent / "node"


def node_command(script: str, *args: str) -> list[str]:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@sentry" / "node").is_dir():
        tool_missing(
            "Node.js with tests/node/node_modules (./dev.sh installs them) is needed for the interop tests"
        )
    return ["node", "--import", "@sentry/node/import", script, *args]


def run_node(script: str, *args: str) -> None:
    result = subprocess.run(
        node_command(script, *args), cwd=NODE_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_node_sdk_publisher_is_continued_by_busprop(
    sentry_init: Callable[..., Any], channel: AbstractChannel, amqp_url: str, tmp_path: Path
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await exclusive_queue(channel)
    await asyncio.to_thread(run_node, "amqp_producer.mjs", amqp_url, queue.name, str(tmp_path / "node.json"))
    node_spans = json.loads((tmp_path / "node.json").read_text())["spans"]
    (node_publish,) = [span for span in node_spans if span["attributes"]["sentry.op"] == "queue.publish"]

    bodies: list[bytes] = []
    await consume_until(queue, 1, busprop.amqp.consumer(lambda message: bodies.append(message.body)))
    (event,) = processed(captured.transactions())
    assert bodies == [b"from-node"]
    assert (trace_of(event)["trace_id"], trace_of(event)["parent_span_id"]) == (
        node_publish["trace_id"],
        node_publish["span_id"],
    )
    assert event["_dsc"]["sample_rate"] == "1"  # the head's frozen baggage, as Node wrote it
    assert event["_dsc"]["transaction"] == "node-head"


async def test_busprop_publisher_is_continued_by_the_node_sdk(
    sentry_init: Callable[..., Any], channel: AbstractChannel, amqp_url: str, tmp_path: Path
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    name = unique()
    command = node_command("amqp_consumer.mjs", amqp_url, name, "1", str(tmp_path / "node.json"))
    shared = await channel.declare_queue(name, auto_delete=False)  # Node consumes from another connection
    node = subprocess.Popen(command, cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await until_ready(node)
        exchange = busprop.amqp.traced_exchange(channel.default_exchange)
        with sentry_sdk.start_transaction(name="python-head"):
            message = aio_pika.Message(b"from-python", headers={"baggage": "vendor=python"})
            await exchange.publish(message, routing_key=shared.name)
        _, stderr = await asyncio.to_thread(node.communicate, timeout=60)
        assert node.returncode == 0, stderr
    finally:
        stop(node)
        await shared.delete(if_unused=False, if_empty=False)

    (publish_span,) = spans_of(captured.transactions(), "queue.publish")
    report = json.loads((tmp_path / "node.json").read_text())
    (received,) = report["received"]
    assert received["body"] == "from-python"
    assert received["headers"]["sentry-trace"] == f"{publish_span['trace_id']}-{publish_span['span_id']}-1"
    (node_process,) = [span for span in report["spans"] if span["attributes"]["sentry.op"] == "queue.process"]
    assert (node_process["trace_id"], node_process["parent_span_id"]) == (
        publish_span["trace_id"],
        publish_span["span_id"],
    )
    assert received["activeTraceId"] == publish_span["trace_id"]


async def test_opentelemetry_traceparent_only_messages_are_continued(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    """OpenTelemetry's propagator writes only ``traceparent``; its sampled flag is the head's decision."""
    captured = sentry_init(traces_sample_rate=1.0)
    queue, forwarded = await exclusive_queue(channel), await exclusive_queue(channel)
    sampled = {"traceparent": f"00-{HEAD}-b2bd6e9b3e4c5a1f-01"}
    unsampled = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00"}
    for headers in (sampled, unsampled):
        await channel.default_exchange.publish(aio_pika.Message(b"otel", headers=headers), queue.name)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)

    @busprop.amqp.consumer
    async def forward(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await exchange.publish(aio_pika.Message(b"next"), routing_key=forwarded.name)

    await consume_until(queue, 2, forward)
    (event,) = processed(captured.transactions())
    assert (trace_of(event)["trace_id"], trace_of(event)["parent_span_id"]) == (HEAD, "b2bd6e9b3e4c5a1f")
    (publish_span,) = spans_of([event], "queue.publish")
    assert publish_span["parent_span_id"] == process_span(event)["span_id"]  # published from the body
    forwarded_traces = {str((await receive(forwarded)).headers["sentry-trace"]) for _ in range(2)}
    assert {(trace[:32], trace[-2:]) for trace in forwarded_traces} == {
        (HEAD, "-1"),
        ("0af7651916cd43dd8448eb211c80319c", "-0"),
    }
    assert f"{HEAD}-{publish_span['span_id']}-1" in forwarded_traces


async def test_write_traceparent_for_opentelemetry_consumers(
    sentry_init: Callable[..., Any], channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    busprop.configure(write_traceparent=True)
    queue = await exclusive_queue(channel)
    with sentry_sdk.start_transaction(name="checkout"):
        await busprop.amqp.traced_exchange(channel.default_exchange).publish(
            aio_pika.Message(b"x"), queue.name
        )
    (span,) = spans_of(captured.transactions(), "queue.publish")
    headers = (await receive(queue)).headers
    assert headers["traceparent"] == f"00-{span['trace_id']}-{span['span_id']}-01"


# --- the demo leg -------------------------------------------------------------------------------


def test_demo_leg_is_one_trace(sentry_init: Callable[..., Any], amqp_url: str) -> None:
    from busprop.demo.legs import amqp as leg

    captured = sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="root", op="demo") as root:
        assert leg.run() is None
    events = captured.transactions()
    hops = processed(events)
    assert len(hops) == 3  # the orders callback, the RPC server, the emails loop
    assert {trace_of(event)["trace_id"] for event in events} == {root.trace_id}
    spans = {span["span_id"]: span for event in events for span in event["spans"]}
    ops = {span_id: span["op"] for span_id, span in spans.items()}
    ops.update((trace_of(event)["span_id"], trace_of(event)["op"]) for event in events)
    parents = [spans[trace_of(event)["parent_span_id"]] for event in hops]
    assert [parent["op"] for parent in parents] == ["queue.publish"] * 3
    # each hop's message was published from: the demo's root, the RPC call, the orders callback's body
    assert sorted(ops[parent["parent_span_id"]] for parent in parents) == [
        "demo",
        "queue.process",
        "rpc.client",
    ]


@pytest.mark.parametrize(
    ("rate", "head", "stamped"),
    [(1.0, True, True), (1.0, False, False), (None, None, True)],
    ids=["sampled", "unsampled", "tracing-disabled"],
)
async def test_publish_time_is_written_unless_the_head_decided_against_sampling(
    sentry_init: Callable[..., Any],
    channel: AbstractChannel,
    rate: float | None,
    head: bool | None,
    stamped: bool,
) -> None:
    """Only a sampled (or still undecided) trace has a consumer that measures receive latency."""
    sentry_init(traces_sample_rate=rate)
    queue = await exclusive_queue(channel)
    exchange = busprop.amqp.traced_exchange(channel.default_exchange)
    original = aio_pika.Message(b"x", headers={"k": "v"})
    transaction = sentry_sdk.start_transaction(name="producer", sampled=head) if head is not None else None
    with transaction if transaction is not None else contextlib.nullcontext():
        await exchange.publish(original, routing_key=queue.name)
    received = await receive(queue)
    headers = received.headers or {}
    assert headers["k"] == "v" and "sentry-trace" in headers
    assert str(headers["sentry-trace"]).split("-")[2:] == {True: ["1"], False: ["0"], None: []}[head]
    assert ("busprop-published-at" in headers) is stamped
    assert (received.timestamp is not None) is stamped
    assert original.headers == {"k": "v"} and original.timestamp is None
    await received.ack()
