"""Where each adapter's loop ends the last message's processing, against the real brokers.

docs/api.md ("Consumer loops") documents it per iterator: a loop left by ``break`` or ``return`` ends the
message right there, so the code after the loop runs outside it; the ``with``/``async with`` forms
leave nothing behind; an end asked for from another thread or task sends the transaction there and
never resets a scope outside the context that opened it; and no finalizer touches a context.
Each scenario runs in a copy of the test's context, so a scope it leaves behind is its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aio_pika
import pytest
import sentry_sdk
from aio_pika.abc import AbstractChannel
from kafka import KafkaProducer
from websockets.exceptions import ConnectionClosed

import busprop.amqp
import busprop.kafka
from busprop import websockets as traced_ws
from busprop.amqp import AioPikaIntegration, TracedQueueIterator
from busprop.iteration import CurrentProcessing, TracedAsyncIterator, TracedIterator
from busprop.websockets import TracedConnection
from tests.conftest import Captured
from tests.test_amqp import channel as channel  # the fixtures
from tests.test_amqp import connection as connection
from tests.test_amqp import exclusive_queue
from tests.test_kafka import assigned_consumer
from tests.test_kafka import new_topic as new_topic
from tests.test_kafka import raw_producer as raw_producer
from tests.test_websockets import running

pytestmark = pytest.mark.broker

Init = Callable[..., Captured]


def consumed(captured: Captured) -> list[str]:
    """The statuses of the messages' transactions sent so far, in order."""
    return [
        event["contexts"]["trace"]["status"]
        for event in captured.transactions()
        if event["contexts"]["trace"]["op"] == busprop.sdk.OP_TASK
    ]


def in_a_message() -> bool:
    span = sentry_sdk.get_current_span()
    return span is not None and span.op == busprop.sdk.OP_PROCESS


@pytest.mark.parametrize(
    "cls", [CurrentProcessing, TracedIterator, TracedAsyncIterator, TracedQueueIterator, TracedConnection]
)
def test_no_finalizer_ends_a_message(cls: type) -> None:
    """A ``__del__`` runs in whatever thread and context the collector is in: none may end a message."""
    assert [klass for klass in cls.__mro__ if "__del__" in vars(klass)] == []


# --- Kafka ---------------------------------------------------------------------------------------


@pytest.fixture
def two_records(kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]) -> str:
    topic = new_topic()
    for value in (b"one", b"two"):
        raw_producer.send(topic, value)
    raw_producer.flush()
    return topic


def test_kafka_traced_consumer_break_ends_the_record_before_the_code_after_the_loop(
    sentry_init: Init, kafka_bootstrap: str, two_records: str
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    consumer = assigned_consumer(kafka_bootstrap, two_records)
    records = busprop.kafka.traced_consumer(consumer)
    for _record in records:
        assert in_a_message()
        break
    after_plain_loop, sent = in_a_message(), consumed(captured)
    with busprop.kafka.traced_consumer(consumer) as records:
        for _record in records:
            break
        after_with_loop, sent_in_block = in_a_message(), consumed(captured)
    consumer.close()
    assert (after_plain_loop, sent) == (False, ["ok"])
    assert (after_with_loop, sent_in_block) == (False, ["ok", "ok"])


def test_kafka_traced_records_break_ends_the_record_before_the_code_after_the_loop(
    sentry_init: Init, kafka_bootstrap: str, two_records: str
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    consumer = assigned_consumer(kafka_bootstrap, two_records)
    batch: dict[Any, list[Any]] = {}
    for _ in range(50):
        batch = batch or consumer.poll(timeout_ms=200)
    consumer.close()
    with busprop.kafka.traced_records(batch) as records:
        for _record in records:
            break
        assert not in_a_message()
        assert consumed(captured) == ["ok"]
    assert consumed(captured) == ["ok"]


@pytest.fixture
def kafka_integration() -> Iterator[type[busprop.kafka.KafkaIntegration]]:
    yield busprop.kafka.KafkaIntegration
    busprop.kafka.KafkaIntegration.uninstall()


def test_kafka_integration_last_record_ends_at_the_next_record_or_close(
    sentry_init: Init, kafka_bootstrap: str, two_records: str, kafka_integration: Any
) -> None:
    """Documented: kafka-python's consumer is its own iterator, so busprop cannot see a break."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[kafka_integration()])
    consumer = assigned_consumer(kafka_bootstrap, two_records)
    for _record in consumer:
        break
    assert in_a_message() and consumed(captured) == []
    consumer.close()
    assert not in_a_message() and consumed(captured) == ["ok"]


def test_kafka_integration_close_from_another_thread_sends_the_record_and_resets_nothing_there(
    sentry_init: Init, kafka_bootstrap: str, two_records: str, kafka_integration: Any
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[kafka_integration()])
    outer = sentry_sdk.get_isolation_scope()
    consumer = assigned_consumer(kafka_bootstrap, two_records)

    def scenario() -> None:
        for _record in consumer:
            break
        closer = threading.Thread(target=consumer.close)
        closer.start()
        closer.join()
        assert consumed(captured) == ["ok"]
        assert next(consumer, None) is None  # closed: this thread's next step leaves the record's scope
        assert sentry_sdk.get_isolation_scope() is outer

    contextvars.copy_context().run(scenario)
    assert consumed(captured) == ["ok"]


# --- AMQP ----------------------------------------------------------------------------------------


async def two_messages(channel: AbstractChannel) -> aio_pika.abc.AbstractQueue:
    queue = await exclusive_queue(channel)
    for body in (b"one", b"two"):
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)
    return queue


async def test_amqp_traced_iterator_break_ends_the_message_before_the_code_after_the_loop(
    sentry_init: Init, channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    queue = await two_messages(channel)
    async with busprop.amqp.traced_iterator(queue.iterator()) as messages:
        async for message in messages:
            await message.ack()
            break
        assert not in_a_message()
        assert consumed(captured) == ["ok"]
        async for message in messages:
            await message.ack()
            break
        assert not in_a_message()
    assert consumed(captured) == ["ok", "ok"]


@pytest.fixture
def amqp_integration() -> Iterator[type[AioPikaIntegration]]:
    yield AioPikaIntegration
    AioPikaIntegration.uninstall()


async def test_amqp_integration_break_ends_the_message_before_the_code_after_the_loop(
    sentry_init: Init, channel: AbstractChannel, amqp_integration: Any
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[amqp_integration()])
    async for message in await two_messages(channel):  # its consumer stays open, as without busprop
        await message.ack()
        break
    assert not in_a_message()
    assert consumed(captured) == ["ok"]
    async with (await two_messages(channel)).iterator() as messages:
        async for message in messages:
            await message.ack()
            break
        assert not in_a_message()
        assert consumed(captured) == ["ok", "ok"]
    assert consumed(captured) == ["ok", "ok"]


async def test_amqp_close_from_another_task_sends_the_message_and_resets_nothing_there(
    sentry_init: Init, channel: AbstractChannel
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    outer = sentry_sdk.get_isolation_scope()
    queue = await two_messages(channel)
    messages = busprop.amqp.traced_iterator(queue.iterator())
    async for message in messages:
        await message.ack()
        await asyncio.create_task(messages.close())  # another task: its own context
        assert consumed(captured) == ["ok"]
    assert sentry_sdk.get_isolation_scope() is outer  # the loop's next step left the scope
    assert consumed(captured) == ["ok"]


# --- WebSockets ----------------------------------------------------------------------------------


async def test_websocket_break_ends_the_message_before_the_code_after_the_loop(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    after_loop: list[tuple[bool, list[str]]] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for _message in ws:
            break
        after_loop.append((in_a_message(), consumed(captured)))
        await ws.send('{"message": "done"}')

    async with running(handler) as url, traced_ws.connect(url) as ws:
        await ws.send('{"message": "one"}')
        async for _reply in ws:
            break
        after_loop.append((in_a_message(), consumed(captured)))
    assert after_loop == [(False, ["ok"]), (False, ["ok", "ok"])]


async def test_websocket_recv_message_ends_at_the_next_recv_or_close(sentry_init: Init) -> None:
    """Documented: ``recv()`` is no loop; its message ends at the next ``recv()``, ``close()`` or block end."""
    captured = sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        await ws.send('{"message": "hello"}')
        await ws.wait_closed()

    async with running(handler) as url:
        ws = await traced_ws.connect(url)
        await ws.recv()
        assert in_a_message() and consumed(captured) == []
        await ws.close()
        assert not in_a_message() and consumed(captured) == ["ok"]


async def test_websocket_close_from_another_task_sends_the_message_and_resets_nothing_there(
    sentry_init: Init,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    outer = sentry_sdk.get_isolation_scope()

    async def handler(ws: traced_ws.TracedConnection) -> None:
        await ws.send('{"message": "hello"}')
        await ws.wait_closed()

    async with running(handler) as url:
        ws = await traced_ws.connect(url)
        await ws.recv()
        await asyncio.create_task(ws.close())  # another task: its own context
        assert consumed(captured) == ["ok"]
        with pytest.raises(ConnectionClosed):
            await ws.recv()  # this task's next step leaves the message's scope
    assert sentry_sdk.get_isolation_scope() is outer
    assert consumed(captured) == ["ok"]
