"""busprop.amqp with pika against the real RabbitMQ: what Sentry would receive from pika code.

``BlockingConnection`` and ``SelectConnection``, the Integration and the explicit API. Every queue
has a unique name and is exclusive to the test's connection (or deleted at the end). Consumers use
prefetch 1: an exception leaves ``start_consuming()`` and prefetched messages would then wait.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import sentry_sdk
from hypothesis import given
from hypothesis import strategies as st
from pika.adapters.blocking_connection import BlockingChannel

import busprop
import busprop.amqp
import busprop.sdk
from busprop.amqp import AMQPIntegration
from tests.processes import ROOT, read_captured, run_app, start_app
from tests.test_amqp import NODE_DIR, node_command, run_node
from tests.test_bad_input import (
    SETTINGS,
    Expected,
    Seen,
    amqp_headers,
    check_sent,
    check_trace,
    expected_trace,
    seen_now,
)

pytestmark = pytest.mark.broker

HEAD = "771a43a4192642f0b136d5159a501700"
ORIGIN = "auto.queue.busprop.pika"


def unique(prefix: str = "busprop-pika") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def trace_of(event: dict[str, Any]) -> dict[str, Any]:
    return event["contexts"]["trace"]  # type: ignore[no-any-return]


def spans_of(events: list[dict[str, Any]], op: str) -> list[dict[str, Any]]:
    return [span for event in events for span in event["spans"] if span["op"] == op]


def message_data(event: dict[str, Any]) -> dict[str, Any]:
    """The Queues data of a consumer's transaction: its one ``queue.process`` span's."""
    (span,) = spans_of([event], "queue.process")
    return span["data"]  # type: ignore[no-any-return]


def processed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The consumers' transactions, each checked to hold exactly one ``queue.process`` span."""
    consumed = [event for event in events if trace_of(event)["op"] == busprop.sdk.OP_TASK]
    for event in consumed:
        trace = trace_of(event)
        (span,) = spans_of([event], "queue.process")
        assert (span["trace_id"], span["parent_span_id"]) == (trace["trace_id"], trace["span_id"])
        assert span["origin"] == trace["origin"] == ORIGIN
        assert span["status"] == trace["status"]
    return consumed


@pytest.fixture
def connection(amqp_url: str) -> Iterator[pika.BlockingConnection]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield connection
    if connection.is_open:
        connection.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> BlockingChannel:
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    return channel


@pytest.fixture
def integration() -> Iterator[type[AMQPIntegration]]:
    yield AMQPIntegration
    AMQPIntegration.uninstall()


def exclusive_queue(channel: BlockingChannel) -> str:
    return str(channel.queue_declare(unique(), exclusive=True).method.queue)


def receive(channel: BlockingChannel, queue: str) -> tuple[Any, pika.BasicProperties, bytes]:
    """The next message on ``queue`` as the broker delivers it (untraced: ``basic_get``)."""
    for _ in range(200):
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, properties, body
        channel.connection.sleep(0.01)
    raise AssertionError(f"nothing arrived on {queue}")


def consume(
    channel: BlockingChannel, queue: str, count: int, callback: Callable[..., Any], *, keyword: bool = False
) -> list[bytes]:
    """``basic_consume(queue, callback)`` (the callback by keyword with ``keyword``) and
    ``start_consuming()`` until ``count`` messages were handled."""
    bodies: list[bytes] = []

    def on_message(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        try:
            callback(ch, method, properties, body)
        finally:
            bodies.append(body)
            ch.basic_ack(method.delivery_tag)
            if len(bodies) >= count:
                ch.stop_consuming()

    if keyword:
        channel.basic_consume(queue=queue, on_message_callback=on_message)
    else:
        channel.basic_consume(queue, on_message)
    channel.start_consuming()
    return bodies


def mechanism_of(error: dict[str, Any]) -> str | None:
    return error.get("exception", {}).get("values", [{}])[-1].get("mechanism", {}).get("type")  # type: ignore[no-any-return]


def traced_now() -> str:
    return sentry_sdk.get_traceparent() or ""


# --- publishing -----------------------------------------------------------------------------------


def test_publish_writes_str_headers_into_a_copy_each_its_own_trace(
    sentry_init: Callable[..., Any], channel: BlockingChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = exclusive_queue(channel)
    properties = pika.BasicProperties(headers={"x-user": "kept"}, correlation_id="c-1", message_id="m-1")
    for name in ("first", "second"):
        with sentry_sdk.start_transaction(name=name):
            busprop.amqp.basic_publish(channel, "", queue, b"payload", properties)
    assert properties.headers == {"x-user": "kept"}  # the caller's object is never changed

    spans = spans_of(captured.transactions(), "queue.publish")
    assert len(spans) == 2
    for span in spans:
        _, delivered, body = receive(channel, queue)
        assert body == b"payload"
        headers = delivered.headers
        assert headers["x-user"] == "kept"
        assert headers["sentry-trace"] == f"{span['trace_id']}-{span['span_id']}-1"
        assert isinstance(headers["sentry-trace"], str) and isinstance(headers["baggage"], str)
        assert (delivered.correlation_id, delivered.message_id) == ("c-1", "m-1")
        assert span["origin"] == ORIGIN and span["description"] == f"/{queue}"
        assert span["data"]["messaging.destination.name"] == f"/{queue}"
        assert span["data"]["messaging.message.id"] == "m-1"
        assert span["data"]["messaging.message.conversation_id"] == "c-1"
        assert span["data"]["messaging.message.body.size"] == len(b"payload")
    assert len({span["trace_id"] for span in spans}) == 2


@pytest.mark.parametrize("properties", [None, pika.BasicProperties(), pika.BasicProperties(headers=None)])
def test_properties_or_headers_absent_are_created(
    sentry_init: Callable[..., Any], channel: BlockingChannel, properties: Any
) -> None:
    sentry_init(traces_sample_rate=1.0)
    queue = exclusive_queue(channel)
    with sentry_sdk.start_transaction(name="head") as transaction:
        busprop.amqp.basic_publish(channel, "", queue, b"x", properties)
    _, delivered, _ = receive(channel, queue)
    assert delivered.headers["sentry-trace"].startswith(transaction.trace_id)
    assert "busprop-published-at" in delivered.headers
    if properties is not None:
        assert properties.headers is None


def test_integration_one_publish_span_per_blocking_publish_covering_the_confirm(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    channel.confirm_delivery()
    with sentry_sdk.start_transaction(name="head"):
        channel.basic_publish("", queue, b"one", pika.BasicProperties(headers={"x-user": 1}))
        busprop.amqp.basic_publish(channel, "", queue, b"two")  # explicit under the Integration: still once
    spans = spans_of(captured.transactions(), "queue.publish")
    assert len(spans) == 2
    traces = [receive(channel, queue)[1].headers["sentry-trace"] for _ in spans]
    assert traces == [f"{span['trace_id']}-{span['span_id']}-1" for span in spans]


def test_the_patched_publish_leaves_a_client_without_the_integration_alone(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    """The patches stay installed once a client has set them up; a client initialised after it
    without AMQPIntegration has its messages published as given (by the blocking channel and the
    channel under it), and the next client with the Integration has them traced again."""
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    captured = sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)
    queue = exclusive_queue(channel)
    properties = pika.BasicProperties(headers={"x-user": "kept"})
    with sentry_sdk.start_transaction(name="head"):
        channel.basic_publish("", queue, b"as given", properties)
    _, delivered, body = receive(channel, queue)
    assert body == b"as given" and delivered.headers == {"x-user": "kept"}
    assert spans_of(captured.transactions(), "queue.publish") == []

    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    with sentry_sdk.start_transaction(name="head") as transaction:
        channel.basic_publish("", queue, b"traced", properties)
    _, delivered, _ = receive(channel, queue)
    assert delivered.headers["sentry-trace"].startswith(transaction.trace_id)
    assert len(spans_of(captured.transactions(), "queue.publish")) == 1
    assert properties.headers == {"x-user": "kept"}


def test_unsampled_head_no_consumer_transaction_and_minus_zero_forwarded(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    queue, forwarded = exclusive_queue(channel), exclusive_queue(channel)
    unsampled = pika.BasicProperties(headers={"sentry-trace": f"{HEAD}-b2bd6e9b3e4c5a1f-0"})
    channel.basic_publish("", queue, b"no", unsampled)  # before the Integration: as a peer sent it
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])

    def forward(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        ch.basic_publish("", forwarded, b"next")

    consume(channel, queue, 1, forward)
    assert captured.transactions() == []
    _, delivered, _ = receive(channel, forwarded)
    assert (
        delivered.headers["sentry-trace"].startswith(HEAD) and delivered.headers["sentry-trace"][-2:] == "-0"
    )
    assert "busprop-published-at" not in delivered.headers  # no consumer will measure a latency


# --- consuming: callbacks -------------------------------------------------------------------------


def publish_traced(channel: BlockingChannel, queue: str, bodies: list[bytes]) -> list[str]:
    """Publish each body in a transaction of its own; the ``sentry-trace`` each carries."""
    traces = []
    for body in bodies:
        with sentry_sdk.start_transaction(name=f"publish {body!r}"):
            busprop.amqp.basic_publish(
                channel, "", queue, body, pika.BasicProperties(message_id=body.decode(), headers={"x": "y"})
            )
            traces.append(traced_now())
    return traces


@pytest.mark.parametrize("keyword", [False, True], ids=["positional", "keywords"])
def test_callback_consumer_continues_each_messages_trace(
    sentry_init: Callable[..., Any],
    channel: BlockingChannel,
    integration: type[AMQPIntegration],
    keyword: bool,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    publish_traced(channel, queue, [b"a", b"b", b"c"])
    seen: dict[bytes, str] = {}

    def record(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        seen[body] = traced_now()

    consume(channel, queue, 3, record, keyword=keyword)
    events = processed(captured.transactions())
    publishes = {
        span["data"]["messaging.message.id"]: span
        for span in spans_of(captured.transactions(), "queue.publish")
    }
    assert len(events) == 3
    for event in events:
        trace = trace_of(event)
        data = message_data(event)
        message_id = data["messaging.message.id"]
        publish = publishes[message_id]
        assert (trace["trace_id"], trace["parent_span_id"]) == (publish["trace_id"], publish["span_id"])
        assert seen[message_id.encode()].startswith(trace["trace_id"])
        assert trace["status"] == "ok"
        assert data["messaging.system"] == "rabbitmq"
        assert data["messaging.destination.name"] == f"/{queue}"
        assert data["messaging.rabbitmq.destination.routing_key"] == queue
        assert data["messaging.rabbitmq.message.delivery_tag"] >= 1
        assert data["messaging.message.body.size"] == 1
        assert data["messaging.message.retry.count"] == 0
        assert data["messaging.message.receive.latency"] >= 0
    assert not traced_now().startswith(tuple(trace_of(event)["trace_id"] for event in events))


class Boom(Exception):
    pass


def test_exception_in_a_callback_is_reported_in_the_messages_trace_and_leaves_start_consuming(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    (sent,) = publish_traced(channel, queue, [b"bad"])
    raised = Boom("bad message")

    def handle(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        raise raised

    channel.basic_consume(queue, handle)
    with pytest.raises(Boom) as caught:
        channel.start_consuming()
    assert caught.value is raised  # what pika does without busprop: the same object leaves start_consuming
    (event,) = processed(captured.transactions())
    assert trace_of(event)["status"] == "internal_error"
    assert trace_of(event)["trace_id"] == sent[:32]
    (error,) = captured.errors()
    assert error["contexts"]["trace"]["trace_id"] == sent[:32]
    assert mechanism_of(error) == "busprop.pika"
    assert error["exception"]["values"][-1]["mechanism"]["handled"] is False


Delivery = tuple[bool, bytes, dict[str, Any]]


def test_an_exception_in_a_callback_leaves_the_message_unacknowledged_and_redelivered_unchanged(
    sentry_init: Callable[..., Any], connection: pika.BlockingConnection, integration: type[AMQPIntegration]
) -> None:
    """busprop never acks, nacks or rejects: the same failing callback (``auto_ack=False``), bare and under
    the Integration, leaves its message to the broker, which redelivers it once the channel is closed."""

    def scenario() -> list[Delivery]:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1)
        queue = exclusive_queue(channel)  # exclusive to the connection: it outlives the channel
        publish_traced(channel, queue, [b"flaky"])
        deliveries: list[Delivery] = []
        raised = Boom("flaky")

        def handle(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
            deliveries.append((method.redelivered, body, dict(properties.headers)))
            if len(deliveries) == 1:
                raise raised
            ch.basic_ack(method.delivery_tag)
            ch.stop_consuming()

        channel.basic_consume(queue, handle, auto_ack=False)
        with pytest.raises(Boom) as caught:
            channel.start_consuming()
        assert caught.value is raised
        channel.close()  # the unacknowledged message goes back to the queue
        again = connection.channel()
        again.basic_consume(queue, handle, auto_ack=False)
        again.start_consuming()
        again.close()
        return deliveries

    sentry_init(traces_sample_rate=1.0)
    bare = scenario()
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    traced = scenario()
    for deliveries in (bare, traced):
        assert [(redelivered, body) for redelivered, body, _ in deliveries] == [
            (False, b"flaky"),
            (True, b"flaky"),
        ]
        assert deliveries[0][2] == deliveries[1][2] and "sentry-trace" in deliveries[0][2]
    events = processed(captured.transactions())
    assert [trace_of(event)["status"] for event in events] == ["internal_error", "ok"]
    assert [message_data(event)["messaging.message.retry.count"] for event in events] == [0, 1]
    assert {trace_of(event)["trace_id"] for event in events} == {traced[0][2]["sentry-trace"][:32]}
    (error,) = [error for error in captured.errors() if mechanism_of(error) == "busprop.pika"]
    assert error["exception"]["values"][-1]["value"] == "flaky"
    assert error["contexts"]["trace"]["trace_id"] == trace_of(events[0])["trace_id"]


def test_retry_count_of_a_requeued_then_dead_lettered_message(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    """Real broker headers: ``redelivered`` after ``basic_nack(requeue=True)``, ``x-death`` after a
    rejected message went through a dead-letter exchange, and both together."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    retries = exclusive_queue(channel)
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": retries}
    queue = str(channel.queue_declare(unique(), exclusive=True, arguments=arguments).method.queue)
    (sent,) = publish_traced(channel, queue, [b"job"])
    attempts: list[tuple[bool, int]] = []

    def handle(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        attempts.append((method.redelivered, busprop.amqp.retry_count(method, properties)))
        if len(attempts) in (1, 3):
            ch.basic_nack(method.delivery_tag, requeue=True)  # back to the same queue: redelivered
        elif len(attempts) == 2:
            ch.basic_reject(method.delivery_tag, requeue=False)  # to the dead-letter queue: x-death
        else:
            ch.basic_ack(method.delivery_tag)
        if len(attempts) in (2, 4):
            ch.stop_consuming()

    channel.basic_consume(queue, handle)
    channel.start_consuming()
    channel.basic_consume(retries, handle)
    channel.start_consuming()
    assert attempts == [(False, 0), (True, 1), (False, 1), (True, 2)]
    events = processed(captured.transactions())
    assert [message_data(event)["messaging.message.retry.count"] for event in events] == [0, 1, 1, 2]
    assert [message_data(event)["messaging.destination.name"] for event in events] == [
        f"/{queue}",
        f"/{queue}",
        f"/{retries}",
        f"/{retries}",
    ]
    assert {trace_of(event)["trace_id"] for event in events} == {sent[:32]}
    assert {trace_of(event)["status"] for event in events} == {"ok"}


def test_tracing_disabled_still_propagates_trace_ids(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    first, second = exclusive_queue(channel), exclusive_queue(channel)
    upstream = pika.BasicProperties(headers={"sentry-trace": f"{HEAD}-b2bd6e9b3e4c5a1f-1"})
    channel.basic_publish("", first, b"upstream", upstream)  # before the Integration: as a peer sent it
    captured = sentry_init(traces_sample_rate=None, integrations=[integration()])
    own = traced_now()[:32]
    channel.basic_publish("", second, b"own")
    _, delivered, _ = receive(channel, second)
    assert (
        isinstance(delivered.headers["sentry-trace"], str) and delivered.headers["sentry-trace"][:32] == own
    )
    assert (
        isinstance(delivered.headers["baggage"], str)
        and f"sentry-trace_id={own}" in delivered.headers["baggage"]
    )
    inside: list[str] = []

    def forward(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        inside.append(traced_now())
        ch.basic_publish("", second, b"forwarded")

    consume(channel, first, 1, forward)
    _, forwarded, _ = receive(channel, second)
    assert inside[0][:32] == forwarded.headers["sentry-trace"][:32] == HEAD
    assert traced_now()[:32] == own  # the consumer's trace ended with the message
    assert captured.transactions() == []


def test_decorated_callback_under_the_integration_is_one_transaction(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    publish_traced(channel, queue, [b"a", b"b"])
    seen: list[str] = []

    @busprop.amqp.consumer(name="orders")
    def handle(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        seen.append(traced_now())

    consume(channel, queue, 2, handle)
    events = processed(captured.transactions())
    assert len(events) == 2
    assert {event["transaction"] for event in events} == {"/" + queue}  # the Integration's wrap is outermost
    assert {trace[:32] for trace in seen} == {trace_of(event)["trace_id"] for event in events}


def test_consumer_decorator_without_the_integration(
    sentry_init: Callable[..., Any], channel: BlockingChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = exclusive_queue(channel)
    sent = publish_traced(channel, queue, [b"a"])

    @busprop.amqp.consumer(name="orders")
    def handle(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        assert traced_now().startswith(sent[0][:32])

    consume(channel, queue, 1, handle)
    (event,) = processed(captured.transactions())
    assert event["transaction"] == "orders"
    assert trace_of(event)["trace_id"] == sent[0][:32]


def test_message_processing_on_a_fetched_message(
    sentry_init: Callable[..., Any], channel: BlockingChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = exclusive_queue(channel)
    sent = publish_traced(channel, queue, [b"a"])
    method, properties, body = receive(channel, queue)
    with busprop.amqp.message_processing(method, properties, body, name="fetched") as transaction:
        assert transaction is not None and transaction.trace_id == sent[0][:32]
        assert busprop.amqp.retry_count(method, properties) == 0
    (event,) = processed(captured.transactions())
    assert event["transaction"] == "fetched"


# --- consuming: the consume() generator ------------------------------------------------------------


@pytest.mark.parametrize("explicit", [False, True])
def test_generator_loop_body_runs_in_each_messages_trace_until_the_next_is_asked_for(
    sentry_init: Callable[..., Any], channel: BlockingChannel, explicit: bool
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[] if explicit else [AMQPIntegration()])
    try:
        queue = exclusive_queue(channel)
        sent = publish_traced(channel, queue, [b"a", b"b"])
        generator = channel.consume(queue, inactivity_timeout=0.3)
        loop = busprop.amqp.traced_iterator(generator)
        assert (loop is generator) is not explicit  # under the Integration: already traced, not twice
        seen: list[tuple[Any, str]] = []
        for method, _properties, body in loop:
            seen.append((body, traced_now()[:32]))
            if method is None:
                break
            channel.basic_ack(method.delivery_tag)
        after = traced_now()[:32]
        channel.cancel()
    finally:
        AMQPIntegration.uninstall()
    assert seen[:2] == [(b"a", sent[0][:32]), (b"b", sent[1][:32])]
    assert seen[2][0] is None and seen[2][1] not in {sent[0][:32], sent[1][:32]}  # inactivity: no trace
    assert after not in {sent[0][:32], sent[1][:32]}
    events = processed(captured.transactions())
    assert sorted(trace_of(event)["trace_id"] for event in events) == sorted(trace[:32] for trace in sent)


def test_break_out_of_the_generator_ends_the_message_before_the_code_after_the_loop(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    sent = publish_traced(channel, queue, [b"a"])
    for method, _properties, _body in channel.consume(queue):
        channel.basic_ack(method.delivery_tag)
        break
    (event,) = processed(captured.transactions())  # sent already, before the code after the loop
    assert trace_of(event)["trace_id"] == sent[0][:32]
    assert not traced_now().startswith(sent[0][:32])
    channel.cancel()


@pytest.mark.parametrize("end", ["cancel", "close"])
def test_cancel_or_close_ends_the_message_of_a_generator_not_asked_again(
    sentry_init: Callable[..., Any],
    connection: pika.BlockingConnection,
    integration: type[AMQPIntegration],
    end: str,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    channel = connection.channel()
    queue = str(channel.queue_declare(unique(), auto_delete=True).method.queue)
    sent = publish_traced(channel, queue, [b"a"])
    generator = channel.consume(queue, auto_ack=True)
    _method, _properties, _body = next(generator)
    assert traced_now().startswith(sent[0][:32])
    getattr(channel, end)()
    assert not traced_now().startswith(sent[0][:32])  # OpenTelemetry's context would still be attached
    (event,) = processed(captured.transactions())
    assert trace_of(event)["trace_id"] == sent[0][:32]
    del generator


def test_an_exception_in_the_loop_body_leaves_the_loop_with_the_message_ended(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    sent = publish_traced(channel, queue, [b"a"])
    with pytest.raises(Boom):
        for _method, _properties, _body in channel.consume(queue, auto_ack=True):
            raise Boom
    assert not traced_now().startswith(sent[0][:32])
    (event,) = processed(captured.transactions())
    assert trace_of(event)["trace_id"] == sent[0][:32]
    channel.cancel()


@pytest.mark.parametrize("managed", [False, True])
def test_a_loop_body_exception_ends_the_message_ok_in_a_for_and_failed_in_the_with_form(
    sentry_init: Callable[..., Any],
    channel: BlockingChannel,
    integration: type[AMQPIntegration],
    managed: bool,
) -> None:
    """docs/api.md's loop table: a bare ``for`` never sees the exception (status ``ok``, nothing
    reported); ``with traced_iterator(...)`` does at its exit (``internal_error``, reported)."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    (sent,) = publish_traced(channel, queue, [b"bad"])
    raised = Boom("loop body")
    with pytest.raises(Boom) as caught:
        if managed:
            with busprop.amqp.traced_iterator(channel.consume(queue, auto_ack=True)) as messages:
                for _method, _properties, _body in messages:
                    raise raised
        else:
            for _method, _properties, _body in channel.consume(queue, auto_ack=True):
                raise raised
    assert caught.value is raised  # unchanged, in both forms
    assert not traced_now().startswith(sent[:32])
    (event,) = processed(captured.transactions())
    assert trace_of(event)["trace_id"] == sent[:32]
    assert trace_of(event)["status"] == ("internal_error" if managed else "ok")
    reported = [error for error in captured.errors() if error["contexts"]["trace"]["trace_id"] == sent[:32]]
    assert [error["exception"]["values"][-1]["value"] for error in reported] == (
        ["loop body"] if managed else []
    )
    channel.cancel()


# --- RPC over reply_to / correlation_id -----------------------------------------------------------


def test_rpc_request_server_and_reply_are_one_trace(
    sentry_init: Callable[..., Any], connection: pika.BlockingConnection, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    client, server = connection.channel(), connection.channel()
    requests = exclusive_queue(server)
    replies = exclusive_queue(client)

    def serve(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        reply = pika.BasicProperties(correlation_id=properties.correlation_id)
        ch.basic_publish("", properties.reply_to, body.upper(), reply)
        ch.basic_ack(method.delivery_tag)

    server.basic_consume(requests, serve)
    with sentry_sdk.start_transaction(name="rpc-client") as head:
        request = pika.BasicProperties(reply_to=replies, correlation_id="call-1")
        client.basic_publish("", requests, b"ping", request)
        for method, properties, body in client.consume(replies, auto_ack=True, inactivity_timeout=10):
            assert method is not None, "no reply"
            assert (properties.correlation_id, body) == ("call-1", b"PING")
            reply_trace = traced_now()[:32]
            break
    client.cancel()
    events = captured.transactions()
    consumers = processed(events)
    assert len(consumers) == 2  # the server's processing and the client's processing of the reply
    assert {trace_of(event)["trace_id"] for event in events} == {head.trace_id} == {reply_trace}
    conversation = {message_data(event)["messaging.message.conversation_id"] for event in consumers}
    assert conversation == {"call-1"}
    publishes = spans_of(events, "queue.publish")
    assert len(publishes) == 2 and {
        span["data"]["messaging.message.conversation_id"] for span in publishes
    } == {"call-1"}


# --- SelectConnection -----------------------------------------------------------------------------


def run_select(url: str, queue: str, count: int, fail_on: bytes | None = None) -> dict[str, Any]:
    """Publish ``count`` traced messages and consume them back with a ``SelectConnection``, whose
    ioloop runs in this thread until every message was handled (or the connection closed)."""
    result: dict[str, Any] = {"seen": {}, "published": [], "closed": None}

    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        channel.basic_qos(prefetch_count=1)
        channel.queue_declare(queue, exclusive=True, callback=lambda _frame: on_queue(channel))

    def on_queue(channel: Any) -> None:
        channel.basic_consume(queue, on_message)
        for number in range(count):
            with sentry_sdk.start_transaction(name=f"select {number}"):
                channel.basic_publish(
                    "", queue, str(number).encode(), pika.BasicProperties(message_id=str(number))
                )
                result["published"].append(traced_now())

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        result["seen"][body.decode()] = traced_now()
        if body == fail_on:
            raise Boom("select")
        channel.basic_ack(method.delivery_tag)
        if len(result["seen"]) >= count:
            channel.connection.close()

    def on_closed(connection: Any, reason: Exception) -> None:
        result["closed"] = reason
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        pika.URLParameters(url), on_open_callback=on_open, on_close_callback=on_closed
    )
    timer = connection.ioloop.call_later(30, connection.ioloop.stop)
    connection.ioloop.start()
    connection.ioloop.remove_timeout(timer)
    return result


def test_select_connection_publish_and_callback_in_each_messages_trace(
    sentry_init: Callable[..., Any], amqp_url: str, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    result = run_select(amqp_url, unique(), 5)
    events = captured.transactions()
    publishes = {span["data"]["messaging.message.id"]: span for span in spans_of(events, "queue.publish")}
    assert len(publishes) == len(spans_of(events, "queue.publish")) == 5
    consumers = processed(events)
    assert len(consumers) == 5
    for event in consumers:
        trace = trace_of(event)
        message_id = message_data(event)["messaging.message.id"]
        publish = publishes[message_id]
        assert (trace["trace_id"], trace["parent_span_id"]) == (publish["trace_id"], publish["span_id"])
        assert result["seen"][message_id].startswith(trace["trace_id"])


def test_select_connection_exception_is_reported_then_pika_aborts_the_connection(
    sentry_init: Callable[..., Any], amqp_url: str, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    result = run_select(amqp_url, unique(), 2, fail_on=b"0")
    assert result["closed"] is not None  # what pika does without busprop: it closes the connection
    (event,) = [event for event in processed(captured.transactions()) if trace_of(event)["status"] != "ok"]
    assert trace_of(event)["status"] == "internal_error"
    assert trace_of(event)["trace_id"] == result["published"][0][:32]
    # pika's own error logs are events too (sentry-sdk's logging integration); busprop reports once
    (error,) = [error for error in captured.errors() if mechanism_of(error) == "busprop.pika"]
    assert error["contexts"]["trace"]["trace_id"] == result["published"][0][:32]


def select_publish_and_receive(
    url: str, queue: str, publish: Callable[[Any], None], count: int
) -> list[tuple[pika.BasicProperties, bytes]]:
    """``publish(channel)`` on a ``SelectConnection``'s ``Channel`` once ``queue`` is declared; the
    ``count`` messages consumed back there, as delivered, in order (the ioloop runs in this thread)."""
    delivered: list[tuple[pika.BasicProperties, bytes]] = []

    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        channel.queue_declare(queue, exclusive=True, callback=lambda _frame: on_queue(channel))

    def on_queue(channel: Any) -> None:
        channel.basic_consume(queue, on_message, auto_ack=True)
        publish(channel)

    def on_message(channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        delivered.append((properties, body))
        if len(delivered) >= count:
            channel.connection.close()

    connection = pika.SelectConnection(
        pika.URLParameters(url),
        on_open_callback=on_open,
        on_close_callback=lambda connection, _reason: connection.ioloop.stop(),
    )
    timer = connection.ioloop.call_later(30, connection.ioloop.stop)
    connection.ioloop.start()
    connection.ioloop.remove_timeout(timer)
    return delivered


@pytest.mark.parametrize("explicit", [False, True])
def test_select_connection_publish_writes_str_headers_into_a_copy_each_its_own_trace(
    sentry_init: Callable[..., Any], amqp_url: str, integration: type[AMQPIntegration], explicit: bool
) -> None:
    """``Channel.basic_publish`` patched by the Integration, or ``busprop.amqp.basic_publish(channel, ...)``."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[] if explicit else [integration()])
    queue = unique()
    headers = {"x-user": "kept"}
    shared = pika.BasicProperties(headers=headers, message_id="shared")
    sent: dict[bytes, str] = {}

    def publish(channel: Any) -> None:
        for body, properties in ((b"none", None), (b"first", shared), (b"second", shared)):
            with sentry_sdk.start_transaction(name=body.decode()):
                if explicit:
                    busprop.amqp.basic_publish(channel, "", queue, body, properties)
                else:
                    channel.basic_publish("", queue, body, properties)
                sent[body] = traced_now()[:32]

    delivered = select_publish_and_receive(amqp_url, queue, publish, 3)
    assert shared.headers is headers and headers == {"x-user": "kept"}  # the caller's object is never changed
    assert shared.message_id == "shared"
    publishes = {span["trace_id"]: span for span in spans_of(captured.transactions(), "queue.publish")}
    assert len(publishes) == len(set(sent.values())) == 3
    assert [body for _, body in delivered] == [b"none", b"first", b"second"]
    for properties, body in delivered:
        span = publishes[sent[body]]
        assert properties.headers["sentry-trace"] == f"{span['trace_id']}-{span['span_id']}-1"
        assert isinstance(properties.headers["sentry-trace"], str)
        assert isinstance(properties.headers["baggage"], str)
        assert "busprop-published-at" in properties.headers
        assert span["description"] == f"/{queue}"
    (created, _), *reused = delivered
    assert created.message_id is None and "x-user" not in created.headers  # None: new properties
    assert [(properties.message_id, properties.headers["x-user"]) for properties, _ in reused] == [
        ("shared", "kept"),
        ("shared", "kept"),
    ]


# --- malformed headers ----------------------------------------------------------------------------


def pika_value(value: Any) -> Any:
    """An AMQP value as pika can encode it: no byte arrays (bytes instead), no floats."""
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, float):
        return int(value)
    if isinstance(value, list):
        return [pika_value(item) for item in value]
    if isinstance(value, dict):
        return {key: pika_value(item) for key, item in value.items()}
    return value


def test_generated_headers_from_rabbitmq_are_continued_or_start_a_fresh_trace(
    sentry_init: Callable[..., Any], channel: BlockingChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = exclusive_queue(channel)
    expectations: list[tuple[Expected, Seen]] = []

    @SETTINGS
    @given(amqp_headers.map(pika_value), st.binary(max_size=300))
    def check(headers: dict[str, Any], body: bytes) -> None:
        channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers))
        method, properties, delivered = receive(channel, queue)

        @busprop.amqp.consumer
        def handle(ch: Any, method: Any, properties: Any, body: bytes) -> Seen:
            return seen_now(body)

        seen = handle(channel, method, properties, delivered)
        assert seen.payload == body
        expected = expected_trace(headers)
        check_trace(seen, expected, headers)
        expectations.append((expected, seen))

    check()
    check_sent(captured, expectations, busprop.amqp.destination_of("", queue))


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_trace_in_a_bytes_or_byte_array_header_is_continued(
    sentry_init: Callable[..., Any], channel: BlockingChannel, kind: Callable[[bytes], Any]
) -> None:
    """pika publishes a ``bytes`` value as an AMQP byte array (field type ``x``) and delivers it as
    ``bytes``, as it does a long string that is not UTF-8; it refuses to publish a ``bytearray`` or a
    ``memoryview``, so those reach a callback only in properties the application built itself."""
    captured = sentry_init(traces_sample_rate=1.0)
    queue = exclusive_queue(channel)
    trace = f"{HEAD}-b2bd6e9b3e4c5a1f-1".encode()
    if kind is not bytes:
        with pytest.raises(pika.exceptions.UnsupportedAMQPFieldException):
            channel.basic_publish(
                "", queue, b"x", pika.BasicProperties(headers={"sentry-trace": kind(trace)})
            )
    channel.basic_publish("", queue, b"x", pika.BasicProperties(headers={"sentry-trace": trace}))
    method, properties, body = receive(channel, queue)
    assert type(properties.headers["sentry-trace"]) is bytes
    properties.headers["sentry-trace"] = kind(properties.headers["sentry-trace"])

    @busprop.amqp.consumer
    def handle(ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> str:
        return traced_now()

    assert handle(channel, method, properties, body).startswith(HEAD)
    (event,) = processed(captured.transactions())
    assert (trace_of(event)["trace_id"], trace_of(event)["parent_span_id"]) == (HEAD, "b2bd6e9b3e4c5a1f")


# --- separate processes, threads -------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "count"), [("callback", 150), ("generator", 60)])
def test_separate_processes_each_message_under_its_own_trace(
    amqp_url: str, channel: BlockingChannel, tmp_path: Path, mode: str, count: int
) -> None:
    queue = str(channel.queue_declare(unique(), auto_delete=False).method.queue)
    consumer = start_app(
        "pika_consumer", amqp_url, queue, str(count), mode, str(tmp_path / "c.json"), str(tmp_path / "r.json")
    )
    try:
        assert consumer.stdout is not None and consumer.stdout.readline().strip() == "ready"
        run_app("pika_publisher", amqp_url, queue, str(count), str(tmp_path / "p.json"))
        _, stderr = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, stderr
    finally:
        if consumer.poll() is None:
            consumer.kill()
        channel.queue_delete(queue)
    published = read_captured(tmp_path / "p.json")["transactions"]
    publish_spans = {span["trace_id"]: span for span in spans_of(published, "queue.publish")}
    assert len(publish_spans) == count  # one span per publish, each in its own trace
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["seen"]) == count
    for body, seen in report["seen"].items():
        assert seen["seen"] == seen["header"] and seen["header"] in publish_spans, body
        if int(body) % 3 == 0:
            assert "'x-app': 'publisher'" in str(seen["headers"])  # user headers kept
    assert report["after"] not in publish_spans
    consumed = processed(read_captured(tmp_path / "c.json")["transactions"])
    assert len(consumed) == count
    for event in consumed:
        trace = trace_of(event)
        assert trace["parent_span_id"] == publish_spans[trace["trace_id"]]["span_id"]


def test_threads_with_a_connection_each_keep_their_messages_traces_apart(
    sentry_init: Callable[..., Any], amqp_url: str, integration: type[AMQPIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    per_thread, failures = 15, []

    def work(number: int) -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
            channel = connection.channel()
            channel.basic_qos(prefetch_count=1)
            queue = exclusive_queue(channel)
            bodies = [f"{number}-{index}".encode() for index in range(per_thread)]
            sent = dict(zip(bodies, publish_traced(channel, queue, bodies), strict=True))
            seen: dict[bytes, str] = {}
            consume(channel, queue, per_thread, lambda ch, m, p, body: seen.update({body: traced_now()}))
            assert {body: trace[:32] for body, trace in seen.items()} == {
                body: trace[:32] for body, trace in sent.items()
            }
            connection.close()
        except BaseException as error:  # reported to the test's thread
            failures.append(error)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(processed(captured.transactions())) == 4 * per_thread


# --- the Integration ------------------------------------------------------------------------------


def test_integration_install_is_idempotent_and_uninstall_restores_the_originals(
    sentry_init: Callable[..., Any],
) -> None:
    AMQPIntegration.uninstall()  # an earlier test's install is not this test's original
    patched = [
        (BlockingChannel, "basic_publish"),
        (pika.channel.Channel, "basic_publish"),
        (BlockingChannel, "basic_consume"),
        (pika.channel.Channel, "basic_consume"),
        (BlockingChannel, "consume"),
        (BlockingChannel, "cancel"),
        (BlockingChannel, "close"),
    ]
    originals = {(owner, name): owner.__dict__[name] for owner, name in patched}
    sentry_init(integrations=[AMQPIntegration()])
    installed = {(owner, name): owner.__dict__[name] for owner, name in patched}
    AMQPIntegration.setup_once()  # a second install changes nothing
    assert {(owner, name): owner.__dict__[name] for owner, name in patched} == installed
    for key, wrapped in installed.items():
        assert wrapped is not originals[key] and wrapped.__wrapped__ is originals[key], key
    AMQPIntegration.uninstall()
    assert {(owner, name): owner.__dict__[name] for owner, name in patched} == originals
    sentry_init(integrations=[AMQPIntegration()])  # and a later init patches again
    assert BlockingChannel.__dict__["basic_publish"] is not originals[(BlockingChannel, "basic_publish")]
    AMQPIntegration.uninstall()
    assert busprop.amqp.AioPikaIntegration is AMQPIntegration


def test_patches_do_nothing_while_the_client_lacks_the_integration(
    sentry_init: Callable[..., Any], channel: BlockingChannel, integration: type[AMQPIntegration]
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    captured = sentry_init(traces_sample_rate=1.0)  # patched, but this client has no AMQPIntegration
    queue = exclusive_queue(channel)
    with sentry_sdk.start_transaction(name="head"):
        channel.basic_publish("", queue, b"x")
    assert spans_of(captured.transactions(), "queue.publish") == []
    assert receive(channel, queue)[1].headers is None


@pytest.mark.parametrize(("blocked", "used"), [("aio_pika", "pika"), ("pika", "aio_pika")])
def test_each_client_works_without_the_other(blocked: str, used: str) -> None:
    code = f"""
import sys
sys.modules[{blocked!r}] = None
import busprop.amqp
assert sys.modules.get("pika") is None and sys.modules.get("aio_pika") is None  # imports neither
from busprop.amqp import AMQPIntegration, destination_of
from busprop.testing import init_capturing
init_capturing(integrations=[AMQPIntegration()])
assert {blocked!r} not in [name for name, module in sys.modules.items() if module is not None]
import {used}
assert "busprop.amqp._{used}" in sys.modules
assert "busprop.amqp._{blocked}" not in sys.modules
AMQPIntegration.uninstall()
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


# --- interoperability: Sentry's Node SDK (amqplib) -------------------------------------------------


def test_node_sdk_publisher_is_continued_by_pika(
    sentry_init: Callable[..., Any],
    channel: BlockingChannel,
    integration: type[AMQPIntegration],
    amqp_url: str,
    tmp_path: Path,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    queue = exclusive_queue(channel)
    run_node("amqp_producer.mjs", amqp_url, queue, str(tmp_path / "node.json"))
    node_spans = json.loads((tmp_path / "node.json").read_text())["spans"]
    (node_publish,) = [span for span in node_spans if span["attributes"]["sentry.op"] == "queue.publish"]
    headers: list[Any] = []
    consume(channel, queue, 1, lambda ch, method, properties, body: headers.append(properties.headers))
    (event,) = processed(captured.transactions())
    assert (trace_of(event)["trace_id"], trace_of(event)["parent_span_id"]) == (
        node_publish["trace_id"],
        node_publish["span_id"],
    )
    assert isinstance(headers[0]["sentry-trace"], str)  # amqplib writes strings
    assert event["_dsc"]["transaction"] == "node-head"


def test_pika_publisher_is_continued_by_the_node_sdk(
    sentry_init: Callable[..., Any],
    channel: BlockingChannel,
    integration: type[AMQPIntegration],
    amqp_url: str,
    tmp_path: Path,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    name = unique()
    command = node_command("amqp_consumer.mjs", amqp_url, name, "1", str(tmp_path / "node.json"))
    channel.queue_declare(name, auto_delete=False)
    node = subprocess.Popen(command, cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert node.stdout is not None and node.stdout.readline().strip() == "ready"
        with sentry_sdk.start_transaction(name="python-head"):
            properties = pika.BasicProperties(headers={"baggage": "vendor=python"})
            channel.basic_publish("", name, b"from-pika", properties)
        _, stderr = node.communicate(timeout=60)
        assert node.returncode == 0, stderr
    finally:
        if node.poll() is None:
            node.kill()
        channel.queue_delete(name)
    (publish_span,) = spans_of(captured.transactions(), "queue.publish")
    report = json.loads((tmp_path / "node.json").read_text())
    (received,) = report["received"]
    assert received["body"] == "from-pika"
    assert received["headers"]["sentry-trace"] == f"{publish_span['trace_id']}-{publish_span['span_id']}-1"
    assert "vendor=python" in received["headers"]["baggage"]
    (node_process,) = [span for span in report["spans"] if span["attributes"]["sentry.op"] == "queue.process"]
    assert (node_process["trace_id"], node_process["parent_span_id"]) == (
        publish_span["trace_id"],
        publish_span["span_id"],
    )
