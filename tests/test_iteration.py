"""Consumer loops: each loop body runs inside its own message's trace, and only there."""

from __future__ import annotations

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

    async def source() -> AsyncIterator[dict[str, str]]:
        for headers in MESSAGES:
            yield headers

    seen = []
    async with TracedAsyncIterator(source(), start) as messages:
        async for _ in messages:
            seen.append(current_trace_id())
    assert seen == [m["sentry-trace"][:32] for m in MESSAGES]
    assert current_trace_id() is None
    assert len(captured.transactions()) == 3
