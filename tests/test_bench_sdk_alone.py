"""The benchmarks' "sentry-sdk alone" (``bench/sdk_alone.py``) does what busprop asks of sentry-sdk.

The goals table reads every goal busprop misses against the same ratio for sentry-sdk alone: the
SDK work busprop asks for, written by hand with no busprop code. That reading holds only while the
hand-written work is busprop's: inside it the SDK must propagate what it propagates inside
busprop's processing of the same message, and a sampled message must reach Sentry in the same
shape. These tests keep the two from drifting apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
import sentry_sdk

import busprop
import busprop.kafka

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import sdk_alone

TRACE_ID = "771a43a4192642f0b136d5159a501700"
BAGGAGE = f"sentry-trace_id={TRACE_ID},sentry-sample_rand=0.250000,sentry-environment=prod,vendor=kept"


def _headers(flag: str) -> dict[str, str]:
    sampled = {"1": "true", "0": "false"}[flag]
    return {
        "sentry-trace": f"{TRACE_ID}-b2bd6e9b3e4c5a1f-{flag}",
        "baggage": f"{BAGGAGE},sentry-sampled={sampled}",
    }


def _propagated() -> tuple[Any, ...]:
    """What the SDK propagates and keeps current here, but the new span's own id."""
    traceparent = sentry_sdk.get_traceparent() or ""
    trace_id, _span_id, *flag = traceparent.split("-")
    span = sentry_sdk.get_current_span()
    described = (
        None if span is None else (span.op, span.name, span.sampled, span.parent_span_id, span.trace_id)
    )
    return trace_id, flag, sentry_sdk.get_baggage(), described


@pytest.mark.parametrize(
    ("rate", "flag", "mode"),
    [(0.0, "0", "unsampled"), (1.0, "0", "unsampled"), (None, "0", "off"), (None, "1", "off")],
)
def test_inside_it_the_sdk_propagates_what_it_propagates_inside_busprop(
    sentry_init: Callable[..., Any], rate: float | None, flag: str, mode: str
) -> None:
    sentry_init(traces_sample_rate=rate)
    with busprop.continue_trace(
        _headers(flag), system="kafka", destination="orders", origin=sdk_alone.ORIGIN
    ):
        ours = _propagated()
    with sdk_alone.processing(_headers(flag), "orders", mode):
        alone = _propagated()
    assert ours[0] == TRACE_ID
    assert alone == ours


def _message(timestamp_ms: int) -> Any:
    return confluent_kafka.Message(
        topic="orders",
        partition=2,
        offset=7,
        value=b"x" * 100,
        headers=[(name, value.encode()) for name, value in _headers("1").items()],
        timestamp=(confluent_kafka.TIMESTAMP_CREATE_TIME, timestamp_ms),
    )


def _shape(transaction: dict[str, Any]) -> tuple[Any, ...]:
    trace = transaction["contexts"]["trace"]
    (span,) = transaction["spans"]
    return (
        transaction["transaction"],
        trace["op"],
        trace["origin"],
        trace["status"],
        trace["trace_id"],
        trace["parent_span_id"],
        span["op"],
        span["description"],
        span["origin"],
        span["status"],
        sorted(span["data"]),
    )


def test_a_sampled_record_reaches_sentry_in_busprops_shape(sentry_init: Callable[..., Any]) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[busprop.kafka.KafkaIntegration()])
    sent_at = int(time.time() * 1000)
    for _record in busprop.kafka.traced_records([_message(sent_at)]):
        pass
    message = _message(sent_at)
    data = sdk_alone.kafka_data(
        message.topic(), message.partition(), message.offset(), len(message.value()), message.timestamp()[1]
    )
    with sdk_alone.processing(_headers("1"), "orders", "sampled", data):
        pass
    ours, alone = captured.transactions()
    assert _shape(alone) == _shape(ours)
    ours_data, alone_data = ours["spans"][0]["data"], alone["spans"][0]["data"]
    latency = "messaging.message.receive.latency"
    assert {
        key: value for key, value in alone_data.items() if key != latency and key.startswith("messaging.")
    } == {key: value for key, value in ours_data.items() if key != latency and key.startswith("messaging.")}
