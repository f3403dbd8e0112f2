"""Consumer loops: each loop body runs inside its own message's trace, and only there."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sentry_sdk

import busprop
from busprop.iteration import TracedAsyncIterator, TracedIterator
from tests.conftest import Captured

Init = Callable[..., Captured]
MESSAGES = [{"sentry-trace": f"{index:032x}-{index:016x}-1"} for index in range(1, 4)]


def start(headers: dict[str, str]) -> busprop.MessageProcessing:
    return busprop.continue_trace(headers, system="c", destination="d")


async def source() -> AsyncIterator[dict[str, str]]:
    for headers in MESSAGES:
        yield headers


def current_trace_id() -> str | None:
    span = sentry_sdk.get_current_span()
    return span.trace_id if span is not None else None


def test_each_loop_body_is_inside_its_message(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    seen = [current_trace_id() for _ in TracedIterator(MESSAGES, start)]
    assert seen == [m["sentry-trace"][:32] for m in MESSAGES]
    assert current_trace_id() is None
    assert len(captured.transactions()) == 3


def test_break_ends_the_current_message(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    for headers in TracedIterator(MESSAGES, start):
        if headers is MESSAGES[1]:
            break
    assert current_trace_id() is None
    assert len(captured.transactions()) == 2


def test_with_form_marks_a_raising_body_failed(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with pytest.raises(ZeroDivisionError), TracedIterator(MESSAGES, start) as messages:
        for _ in messages:
            _ = 1 / 0
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["status"] == "internal_error"
    assert current_trace_id() is None


def test_a_failing_reader_gives_a_fresh_trace(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    def broken(headers: Any) -> busprop.MessageProcessing:
        raise KeyError("no")

    assert list(TracedIterator(MESSAGES, broken)) == MESSAGES
    assert len(captured.transactions()) == 3


async def test_async_loop(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    seen = []
    async with TracedAsyncIterator(source(), start) as messages:
        async for _ in messages:
            seen.append(current_trace_id())
    assert seen == [m["sentry-trace"][:32] for m in MESSAGES]
    assert current_trace_id() is None
    assert len(captured.transactions()) == 3


# --- where the last message's processing ends ----------------------------------------------------
# The iterator is kept in a variable, as in real code (`records = traced_consumer(c)`): a break
# does not collect it, so only the loop's own end can end the message.


def trace_of(headers: dict[str, str]) -> str:
    return headers["sentry-trace"][:32]


def statuses(captured: Captured) -> list[str]:
    return [event["contexts"]["trace"]["status"] for event in captured.transactions()]


def test_break_ends_the_message_before_the_code_after_the_loop(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    messages = TracedIterator(MESSAGES, start)
    for headers in messages:
        if headers is MESSAGES[1]:
            break
    assert current_trace_id() is None
    assert statuses(captured) == ["ok", "ok"]


def test_return_from_the_loop_ends_the_message(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    messages = TracedIterator(MESSAGES, start)

    def first_trace() -> str | None:
        for _ in messages:
            return current_trace_id()
        return None

    assert first_trace() == trace_of(MESSAGES[0])
    assert current_trace_id() is None
    assert statuses(captured) == ["ok"]


def test_with_form_code_after_the_loop_is_outside_the_message(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with TracedIterator(MESSAGES, start) as messages:
        for _ in messages:
            break
        after_loop, sent = current_trace_id(), statuses(captured)
        for _ in messages:  # the same iterator again: the next message
            assert current_trace_id() == trace_of(MESSAGES[1])
            break
    assert (after_loop, sent) == (None, ["ok"])
    assert current_trace_id() is None
    assert statuses(captured) == ["ok", "ok"]


def test_without_with_an_exception_ends_the_message_where_it_leaves_the_loop(sentry_init: Init) -> None:
    """Documented: the iterator cannot see the exception, so the message ends ``ok``."""
    captured = sentry_init(traces_sample_rate=1.0)
    messages = TracedIterator(MESSAGES, start)
    with pytest.raises(KeyError):
        for _ in messages:
            raise KeyError("no")
    assert current_trace_id() is None
    assert statuses(captured) == ["ok"]


def test_with_form_an_exception_caught_inside_the_block_ends_with_it(sentry_init: Init) -> None:
    """Documented: the message stays open for ``__exit__`` until the block ends or ``close()``."""
    captured = sentry_init(traces_sample_rate=1.0)
    with TracedIterator(MESSAGES, start) as messages:
        with contextlib.suppress(KeyError):
            for _ in messages:
                raise KeyError("handled")
        assert current_trace_id() == trace_of(MESSAGES[0])
        messages.close()
        assert current_trace_id() is None
    assert statuses(captured) == ["ok"]


def test_close_from_another_thread_sends_the_message_and_leaves_this_context_alone(
    sentry_init: Init,
) -> None:
    """The transaction is sent where close() runs; the loop's context leaves the scope at its next step."""
    captured = sentry_init(traces_sample_rate=1.0)
    outer = sentry_sdk.get_isolation_scope()

    def scenario() -> None:
        messages = TracedIterator(MESSAGES, start)
        next(messages)
        closer = threading.Thread(target=messages.close)
        closer.start()
        closer.join()
        assert statuses(captured) == ["ok"]
        assert next(messages) is MESSAGES[1]
        assert current_trace_id() == trace_of(MESSAGES[1])
        messages.close()
        assert current_trace_id() is None
        assert sentry_sdk.get_isolation_scope() is outer

    contextvars.copy_context().run(scenario)
    assert statuses(captured) == ["ok", "ok"]


def test_a_collected_iterator_sends_its_message_and_touches_no_scope(sentry_init: Init) -> None:
    """Collected in the middle of other code: the transaction is sent, that code's scope is left alone."""
    captured = sentry_init(traces_sample_rate=1.0)

    def scenario() -> None:
        messages = TracedIterator(MESSAGES, start)
        next(messages)
        with sentry_sdk.isolation_scope() as later:
            del messages
            gc.collect()
            assert sentry_sdk.get_isolation_scope() is later
            assert statuses(captured) == ["ok"]

    contextvars.copy_context().run(scenario)


def test_an_iterator_collected_in_another_thread_resets_nothing_there(
    sentry_init: Init, caplog: pytest.LogCaptureFixture
) -> None:
    """Resetting the loop's context from the collecting thread would fail inside sentry-sdk."""
    captured = sentry_init(traces_sample_rate=1.0, debug=True)
    held: list[TracedIterator[dict[str, str]]] = []

    def scenario() -> None:
        held.append(TracedIterator(MESSAGES, start))
        next(held[0])
        collector = threading.Thread(target=held.clear)  # the last reference dies there
        collector.start()
        collector.join()

    with caplog.at_level(logging.DEBUG):
        contextvars.copy_context().run(scenario)
    assert statuses(captured) == ["ok"]
    assert "Internal error in sentry_sdk" not in caplog.text


async def test_async_break_ends_the_message_before_the_code_after_the_loop(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    messages = TracedAsyncIterator(source(), start)
    async for headers in messages:
        if headers is MESSAGES[1]:
            break
    assert current_trace_id() is None
    assert statuses(captured) == ["ok", "ok"]


async def test_async_with_form_code_after_the_loop_is_outside_the_message(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    async with TracedAsyncIterator(source(), start) as messages:
        async for _ in messages:
            await asyncio.sleep(0)
            break
        after_loop, sent = current_trace_id(), statuses(captured)
    assert (after_loop, sent) == (None, ["ok"])
    with pytest.raises(ZeroDivisionError):
        async with TracedAsyncIterator(source(), start) as messages:
            async for _ in messages:
                await asyncio.sleep(0)
                _ = 1 / 0
    assert current_trace_id() is None
    assert statuses(captured) == ["ok", "internal_error"]


async def test_async_without_with_an_exception_ends_the_message_where_it_leaves_the_loop(
    sentry_init: Init,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    messages = TracedAsyncIterator(source(), start)
    with pytest.raises(KeyError):
        async for _ in messages:
            raise KeyError("no")
    assert current_trace_id() is None
    assert statuses(captured) == ["ok"]


async def test_aclose_from_another_task_sends_the_message_and_the_loop_leaves_it_at_its_next_step(
    sentry_init: Init,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    outer = sentry_sdk.get_isolation_scope()
    messages = TracedAsyncIterator(source(), start)
    seen = []
    async for _ in messages:
        seen.append(current_trace_id())
        if len(seen) == 1:
            await asyncio.create_task(messages.aclose())  # another task, another context
            assert statuses(captured) == ["ok"]
            assert (sentry_sdk.get_traceparent() or "")[:32] == seen[0]  # until this loop's next step
    assert seen == [trace_of(m) for m in MESSAGES]
    assert current_trace_id() is None
    assert sentry_sdk.get_isolation_scope() is outer
    assert statuses(captured) == ["ok", "ok", "ok"]
