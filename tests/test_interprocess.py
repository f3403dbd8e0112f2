"""Continuation across two separate processes through a real carrier (a Redis list)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from busprop import sdk
from tests.processes import read_captured, run_app

pytestmark = pytest.mark.broker


def run_pipeline(
    redis_url: str, tmp_path: Path, producer_rate: str, consumer_rate: str, head: str = "transaction"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    name = f"busprop-test-{uuid.uuid4().hex[:8]}"
    forward = f"{name}-forward"
    run_app("core_redis_producer", redis_url, name, str(tmp_path / "p.json"), producer_rate, head)
    run_app("core_redis_consumer", redis_url, name, forward, str(tmp_path / "c.json"), consumer_rate)
    client = redis.Redis.from_url(redis_url)
    raw = client.lpop(forward)
    client.delete(name, forward)
    assert raw is not None
    forwarded: dict[str, Any] = json.loads(raw)
    return read_captured(tmp_path / "p.json"), read_captured(tmp_path / "c.json"), forwarded["headers"]


def test_sampled_head(redis_url: str, tmp_path: Path) -> None:
    producer, consumer, forwarded = run_pipeline(redis_url, tmp_path, "1.0", "0.0")
    (root,) = producer["transactions"]
    (publish_span,) = [span for span in root["spans"] if span["op"] == "queue.publish"]
    (processed,) = consumer["transactions"]
    trace_id = root["contexts"]["trace"]["trace_id"]
    assert processed["contexts"]["trace"]["trace_id"] == trace_id
    assert processed["contexts"]["trace"]["parent_span_id"] == publish_span["span_id"]
    assert processed["contexts"]["trace"]["op"] == sdk.OP_TASK
    assert processed["_dsc"] == root["_dsc"]  # frozen at the head: same sample_rand, same public key
    (process_span,) = [span for span in processed["spans"] if span["op"] == "queue.process"]
    assert process_span["parent_span_id"] == processed["contexts"]["trace"]["span_id"]
    assert process_span["status"] == "ok"
    (forward_span,) = [span for span in processed["spans"] if span["op"] == "queue.publish"]
    assert forward_span["parent_span_id"] == process_span["span_id"]  # sent from inside the body
    assert forwarded["sentry-trace"] == f"{trace_id}-{forward_span['span_id']}-1"
    assert "vendor=acme" in forwarded["baggage"].split(",")


def test_unsampled_head(redis_url: str, tmp_path: Path) -> None:
    producer, consumer, forwarded = run_pipeline(redis_url, tmp_path, "0.0", "1.0")
    assert producer["transactions"] == [] and consumer["transactions"] == []
    assert forwarded["sentry-trace"].endswith("-0")
    assert "sentry-sampled=false" in forwarded["baggage"]


def test_undecided_head_outside_a_transaction(redis_url: str, tmp_path: Path) -> None:
    producer, consumer, forwarded = run_pipeline(redis_url, tmp_path, "1.0", "1.0", head="bare")
    assert producer["transactions"] == []
    (processed,) = consumer["transactions"]
    assert forwarded["sentry-trace"].startswith(processed["contexts"]["trace"]["trace_id"])
    assert forwarded["sentry-trace"].endswith("-1")


def test_tracing_disabled_everywhere_still_propagates_ids(redis_url: str, tmp_path: Path) -> None:
    producer, consumer, forwarded = run_pipeline(redis_url, tmp_path, "none", "none")
    assert producer["transactions"] == [] and consumer["transactions"] == []
    assert "sentry-trace_id=" in forwarded["baggage"]
    trace_id = forwarded["sentry-trace"][:32]
    assert f"sentry-trace_id={trace_id}" in forwarded["baggage"]
