"""The generic @producer and @consumer decorators on sync and async functions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sentry_sdk

import busprop
from busprop import sdk
from tests.conftest import Captured

Init = Callable[..., Captured]
Message = dict[str, Any]


def process_spans(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for span in event["spans"] if span["op"] == "queue.process"]


def test_sync_producer_and_consumer(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    sent: list[Message] = []

    @busprop.producer(system="custom", destination="orders", headers=lambda msg: msg["headers"])
    def send(msg: Message) -> str:
        sent.append(msg)
        return "sent"

    @busprop.consumer(
        system="custom",
        destination=lambda msg: msg["topic"],
        headers=lambda msg: msg["headers"],
        message_id=lambda msg: msg["id"],
        body_size=lambda msg: len(msg["body"]),
    )
    def handle(msg: Message) -> str:
        return f"handled {msg['id']}"

    with sentry_sdk.start_transaction(name="checkout") as root:
        assert send({"headers": {}, "topic": "orders", "id": "7", "body": "abc"}) == "sent"
    assert handle(sent[0]) == "handled 7"
    consumer = next(e for e in captured.transactions() if e["contexts"]["trace"]["op"] == sdk.OP_TASK)
    assert consumer["contexts"]["trace"]["trace_id"] == root.trace_id
    assert consumer["transaction"] == "orders"
    (span,) = process_spans(consumer)
    assert (span["description"], span["status"]) == ("orders", "ok")
    assert span["data"]["messaging.message.id"] == "7"
    assert span["data"]["messaging.message.body.size"] == 3


async def test_async_producer_and_consumer(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    bus: asyncio.Queue[Message] = asyncio.Queue()

    @busprop.producer(system="custom", destination="orders", headers=lambda msg: msg["headers"])
    async def send(msg: Message) -> None:
        await bus.put(msg)

    @busprop.consumer(system="custom", destination="orders", headers=lambda msg: msg["headers"])
    async def handle(msg: Message) -> str:
        await asyncio.sleep(0)
        return str(sentry_sdk.get_current_span().op)  # type: ignore[union-attr]

    assert asyncio.iscoroutinefunction(handle)
    with sentry_sdk.start_transaction(name="checkout") as root:
        await send({"headers": {}})
    assert await handle(await bus.get()) == "queue.process"
    consumer = next(e for e in captured.transactions() if e["transaction"] == "orders")
    assert consumer["contexts"]["trace"]["trace_id"] == root.trace_id


def test_default_headers_is_the_first_argument(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    @busprop.consumer(system="custom", destination="orders")
    def handle(headers: dict[str, str]) -> None:
        pass

    handle({"sentry-trace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"})
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] == "771a43a4192642f0b136d5159a501700"


def test_a_failing_headers_function_never_reaches_user_code(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    @busprop.consumer(system="custom", destination="orders", headers=lambda msg: msg["missing"])
    def handle(msg: Message) -> str:
        return "ran"

    assert handle({}) == "ran"
    assert len(captured.transactions()) == 1


def test_consumer_exception_propagates_unchanged(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    error = LookupError("mine")

    @busprop.consumer(system="custom", destination="orders")
    def handle(headers: Message) -> None:
        raise error

    with pytest.raises(LookupError) as raised:
        handle({})
    assert raised.value is error
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["status"] == "internal_error"
    (span,) = process_spans(event)
    assert span["status"] == "internal_error"


def test_decorated_function_keeps_its_name_and_doc() -> None:
    @busprop.consumer(system="custom", destination="orders")
    def handle(headers: Message) -> None:
        """Handles."""

    assert handle.__name__ == "handle"
    assert handle.__doc__ == "Handles."
