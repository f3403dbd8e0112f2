"""Bad metadata never raises: it starts a fresh trace (or, for bad baggage, drops the baggage).

"A fresh trace" is checked in full, since a consumer that lost its transaction, its span or its
status would also show a trace id other than the input's: one transaction in a trace of its own
(an id found nowhere in the input, no parent), with its ``queue.process`` span, both ``ok``, its
own dynamic sampling context, no error event, and nothing logged above debug level.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import busprop
from busprop.sdk import OP_PROCESS, OP_TASK
from tests.conftest import Captured

Init = Callable[..., Captured]
TRACE_ID = "771a43a4192642f0b136d5159a501700"
VALID = f"{TRACE_ID}-b2bd6e9b3e4c5a1f-1"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


BAD_SENTRY_TRACE: list[Any] = [
    "",
    " ",
    "-",
    "garbage",
    TRACE_ID,
    f"{TRACE_ID}-",
    f"{TRACE_ID}-b2bd6e9b3e4c5a1",
    f"{TRACE_ID}-b2bd6e9b3e4c5a1f-2",
    f"{TRACE_ID}-b2bd6e9b3e4c5a1f-1-1",
    f"{TRACE_ID.upper()}-B2BD6E9B3E4C5A1F-1",
    f"{'0' * 32}-b2bd6e9b3e4c5a1f-1",
    f"{TRACE_ID}-{'0' * 16}-1",
    f"{TRACE_ID}x-b2bd6e9b3e4c5a1f-1",
    VALID + " " * 200,
    VALID + "\n",
    "\u00e9" * 51,
    b"\xff\xfe" + VALID.encode(),
    VALID.encode("utf-16"),
    b"\x80" * 51,
    12345,
    1.5,
    True,
    None,
    [VALID],
    {"value": VALID},
    (VALID,),
    Unprintable(),
    VALID * 1000,
    VALID.encode() * 10000,
]

BAD_TRACEPARENT: list[Any] = [
    f"00-{TRACE_ID}-b2bd6e9b3e4c5a1f",
    f"00-{TRACE_ID}-b2bd6e9b3e4c5a1f-01-extra",
    f"ff-{TRACE_ID}-b2bd6e9b3e4c5a1f-01",
    f"00-{'0' * 32}-b2bd6e9b3e4c5a1f-01",
    f"00-{TRACE_ID}-{'0' * 16}-01",
    f"00-{TRACE_ID.upper()}-b2bd6e9b3e4c5a1f-01",
    b"\xff" * 55,
    55,
]

BAD_BAGGAGE: list[Any] = [
    "sentry-trace_id=x\x00y",
    "sentry-trace_id=\u2603",
    b"sentry-trace_id=\xff",
    "a=" + "b" * 9000,
    b"a=" + b"b" * 40000,
    # Sentry's own members, valid but for the whole: over 8192 characters, or one non-ASCII member.
    f"sentry-trace_id={TRACE_ID},sentry-public_key=public,"
    + ",".join(f"m{index}=v" for index in range(2000)),
    f"sentry-trace_id={TRACE_ID},sentry-public_key=public,vendor=caf\u00e9",
    42,
    ["sentry-trace_id=x"],
    "   ",
]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], set[int]]]:
    """``logs()``: the levels of what busprop logged so far."""
    caplog.set_level(logging.DEBUG, logger="busprop")
    yield lambda: {record.levelno for record in caplog.records if record.name == "busprop"}


def process(carrier: Any) -> dict[str, Any]:
    """Process one message carrying ``carrier``; returns the headers it would send on."""
    sent: dict[str, Any] = {}
    with busprop.continue_trace(carrier, system="c", destination="d"):
        busprop.inject(sent, destination="next")
    return sent


def processed(captured: Captured) -> dict[str, Any]:
    """The one transaction, with its ``queue.process`` span, both ``ok``; no error event."""
    assert captured.errors() == []
    (event,) = captured.transactions()
    trace = event["contexts"]["trace"]
    assert (trace["op"], trace["status"]) == (OP_TASK, "ok")
    [span] = event["spans"]
    assert (span["op"], span["status"], span["parent_span_id"]) == (OP_PROCESS, "ok", trace["span_id"])
    assert event["_dsc"]["trace_id"] == trace["trace_id"] and event["_dsc"]["public_key"] == "public"
    return event


def assert_fresh_trace(captured: Captured, value: Any, sent: dict[str, Any]) -> None:
    """A trace of its own, sampled here, whose id is nowhere in ``value``; sent on from inside."""
    trace = processed(captured)["contexts"]["trace"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace["trace_id"]) and trace["trace_id"] != TRACE_ID
    assert trace["trace_id"] not in repr(value)
    assert trace.get("parent_span_id") is None
    assert sent["sentry-trace"].startswith(trace["trace_id"]) and sent["sentry-trace"].endswith("-1")


@pytest.mark.parametrize("value", BAD_SENTRY_TRACE, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("shape", ["mapping", "pairs"])
def test_bad_sentry_trace_starts_a_fresh_trace(
    sentry_init: Init, logs: Callable[[], set[int]], value: Any, shape: str
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    headers: Any = {"sentry-trace": value} if shape == "mapping" else [("sentry-trace", value)]
    assert_fresh_trace(captured, value, process(headers))
    assert logs() == {logging.DEBUG}  # "no usable trace", and nothing louder


@pytest.mark.parametrize("value", BAD_TRACEPARENT, ids=lambda v: repr(v)[:40])
def test_bad_traceparent_starts_a_fresh_trace(
    sentry_init: Init, logs: Callable[[], set[int]], value: Any
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    assert_fresh_trace(captured, value, process({"traceparent": value}))
    assert logs() == {logging.DEBUG}


@pytest.mark.parametrize("value", BAD_BAGGAGE, ids=lambda v: repr(v)[:40])
def test_bad_baggage_is_ignored_and_the_trace_continues(
    sentry_init: Init, logs: Callable[[], set[int]], value: Any
) -> None:
    """Exactly as if the message carried no baggage: nothing of the bad value is kept or sent on."""
    captured = sentry_init(traces_sample_rate=1.0)
    without_baggage = process({"sentry-trace": VALID})
    expected = processed(captured)["_dsc"]
    captured = sentry_init(traces_sample_rate=1.0)
    sent = process({"sentry-trace": VALID, "baggage": value})
    event = processed(captured)
    assert (event["contexts"]["trace"]["trace_id"], event["contexts"]["trace"]["parent_span_id"]) == (
        TRACE_ID,
        "b2bd6e9b3e4c5a1f",
    )
    assert event["_dsc"] == expected  # our own DSC, nothing taken from the bad value
    assert sent["baggage"] == without_baggage["baggage"]  # and nothing of it sent on
    assert logs() <= {logging.DEBUG}


@pytest.mark.parametrize(
    "carrier",
    [None, 42, "sentry-trace", b"bytes", object(), [1, 2, 3], [("sentry-trace",)], {1: VALID}, {None: None}],
    ids=repr,
)
def test_containers_of_the_wrong_type(sentry_init: Init, logs: Callable[[], set[int]], carrier: Any) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    assert_fresh_trace(captured, carrier, process(carrier))
    assert logs() == (set() if carrier is None else {logging.DEBUG})  # no carrier, nothing to say


def test_duplicates_first_usable_wins_and_junk_logs_at_debug(
    sentry_init: Init, caplog: pytest.LogCaptureFixture
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    caplog.set_level(logging.DEBUG, logger="busprop")
    with busprop.continue_trace(
        [("sentry-trace", b"junk"), ("sentry-trace", VALID.encode()), ("sentry-trace", b"x")],
        system="c",
        destination="d",
    ):
        pass
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] == TRACE_ID
    caplog.clear()
    with busprop.continue_trace({"sentry-trace": "junk"}, system="kafka", destination="d"):
        pass
    assert [r.levelno for r in caplog.records if r.name == "busprop"] == [logging.DEBUG]


def test_a_dict_whose_key_comparison_raises(sentry_init: Init, logs: Callable[[], set[int]]) -> None:
    """A dict is read by lookups: a key that shares the header's hash and whose comparison raises
    makes that lookup raise, which starts a fresh trace like any unreadable carrier."""

    class Clashing:
        def __hash__(self) -> int:
            return hash("sentry-trace")

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

    captured = sentry_init(traces_sample_rate=1.0)
    carrier = {Clashing(): VALID}
    assert busprop.extract(carrier) is busprop.carrier.NO_TRACE  # extract itself never raises
    assert_fresh_trace(captured, dict(carrier), process(carrier))
    assert logs() == {logging.DEBUG}


def test_a_carrier_that_raises_while_read(sentry_init: Init, logs: Callable[[], set[int]]) -> None:
    class Exploding(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("boom")

    captured = sentry_init(traces_sample_rate=1.0)
    carrier = Exploding({"sentry-trace": VALID})
    assert_fresh_trace(captured, dict(carrier), process(carrier))
    assert logs() == {logging.DEBUG}
