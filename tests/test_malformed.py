"""Bad metadata never raises: it starts a fresh trace (or, for bad baggage, drops the baggage)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import busprop
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
    42,
    ["sentry-trace_id=x"],
    "   ",
]


@pytest.mark.parametrize("value", BAD_SENTRY_TRACE, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("shape", ["mapping", "pairs"])
def test_bad_sentry_trace_starts_a_fresh_trace(sentry_init: Init, value: Any, shape: str) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    headers: Any = {"sentry-trace": value} if shape == "mapping" else [("sentry-trace", value)]
    with busprop.continue_trace(headers, system="c", destination="d"):
        pass
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["trace_id"] != TRACE_ID
    assert event["contexts"]["trace"].get("parent_span_id") is None


@pytest.mark.parametrize("value", BAD_TRACEPARENT, ids=lambda v: repr(v)[:40])
def test_bad_traceparent_starts_a_fresh_trace(sentry_init: Init, value: Any) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace({"traceparent": value}, system="c", destination="d"):
        pass
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] != TRACE_ID


@pytest.mark.parametrize("value", BAD_BAGGAGE, ids=lambda v: repr(v)[:40])
def test_bad_baggage_is_ignored_and_the_trace_continues(sentry_init: Init, value: Any) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace({"sentry-trace": VALID, "baggage": value}, system="c", destination="d"):
        pass
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert event["_dsc"]["public_key"] == "public"  # our own DSC, nothing taken from the bad value


@pytest.mark.parametrize(
    "carrier",
    [None, 42, "sentry-trace", b"bytes", object(), [1, 2, 3], [("sentry-trace",)], {1: VALID}, {None: None}],
    ids=repr,
)
def test_containers_of_the_wrong_type(sentry_init: Init, carrier: Any) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace(carrier, system="c", destination="d"):
        pass
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] != TRACE_ID


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


def test_a_carrier_that_raises_while_read(sentry_init: Init) -> None:
    class Exploding(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("boom")

    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace(Exploding(), system="c", destination="d"):
        pass
    assert len(captured.transactions()) == 1
