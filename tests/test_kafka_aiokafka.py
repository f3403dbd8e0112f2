"""busprop.kafka with aiokafka against the real Kafka-protocol broker (Tansu, or ``KAFKA_BOOTSTRAP_SERVERS``).

Consumers read with ``assign()`` (no group join, which costs seconds on Tansu) except in the
separate-process test, which is about a consumer group. Every test uses its own topics, created
with one partition so that records come back in the order they were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiokafka
import pytest
import sentry_sdk
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

import busprop.kafka
from busprop.kafka import _integration
from tests import test_http_hops, test_kafka
from tests.conftest import Captured
from tests.processes import read_captured, run_app, start_app
from tests.test_bad_input import (
    BATCH,
    BROKER_BATCHES,
    BROKER_SETTINGS,
    Expected,
    Seen,
    check_sent,
    check_trace,
    expected_trace,
    pair_lists,
    seen_now,
    trace_pair,
    valid_pair,
    wire_values,
)
from tests.test_http_hops import UNSAMPLED, assert_hop, hop, make_head
from tests.test_kafka import (
    JUNK_HEADERS,
    header_values,
    in_body,
    is_processed,
    only,
    process_span,
    processed_records,
    publish_spans,
    run_node,
)

pytestmark = pytest.mark.broker

SentryInit = Callable[..., Captured]

# The fixtures kafka-python's and the HTTP hop tests use: a fresh topic, a recording HTTP server.
new_topic = test_kafka.new_topic
hop_server = test_http_hops.hop_server

ORIGINALS = {
    (AIOKafkaProducer, "send"): AIOKafkaProducer.send,
    (AIOKafkaProducer, "send_and_wait"): AIOKafkaProducer.send_and_wait,
    (AIOKafkaConsumer, "getone"): AIOKafkaConsumer.getone,
    (AIOKafkaConsumer, "stop"): AIOKafkaConsumer.stop,
}


def originals_in_place() -> bool:
    return all(owner.__dict__[name] is original for (owner, name), original in ORIGINALS.items())


@pytest.fixture
def integration() -> Iterator[type[busprop.kafka.KafkaIntegration]]:
    yield busprop.kafka.KafkaIntegration
    busprop.kafka.KafkaIntegration.uninstall()


@contextlib.asynccontextmanager
async def started_producer(bootstrap: str, **config: Any) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **config)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def assigned(bootstrap: str, topic: str, **config: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer reading ``topic`` (one partition) from the beginning, without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **config)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        yield consumer
    finally:
        await consumer.stop()


async def read_raw(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The records as stored, read by an untraced consumer (no integration installed meanwhile)."""
    async with assigned(bootstrap, topic) as consumer:
        batch = await consumer.getmany(timeout_ms=10_000, max_records=count)
        records = [record for records in batch.values() for record in records]
        while len(records) < count:
            records.append(await asyncio.wait_for(consumer.getone(), 10))
    return records


def trace_of(record: Any) -> tuple[str, str]:
    """The trace id and parent span id a record's ``sentry-trace`` header names."""
    trace_id, span_id, *_ = only(header_values(record, "sentry-trace")).decode().split("-")
    return trace_id, span_id


def body_trace() -> tuple[str, str | None]:
    """The trace id of the loop body's span and its transaction's parent (the producer's span)."""
    trace_id, parent_span_id, _span_id = in_body()
    return trace_id, parent_span_id


# --- producer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["traced_producer", "integration"])
async def test_send_and_send_and_wait_write_the_trace_once_and_keep_the_users_headers(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
    route: str,
) -> None:
    if route == "integration":
        captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    else:
        captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    listed = [("kept", b"1"), ("sentry-trace", b"stale"), ("other", b"2")]
    as_tuple = (("kept", b"t"),)
    async with started_producer(kafka_bootstrap) as plain:
        producer: Any = busprop.kafka.traced_producer(plain) if route == "traced_producer" else plain
        with sentry_sdk.start_transaction(name="head") as head:
            await producer.send_and_wait(topic, b"first", headers=listed)
            future = await producer.send(topic, b"second", None, None, None, as_tuple)
            await future
            await producer.send_and_wait(topic, b"third")
    assert listed == [("kept", b"1"), ("sentry-trace", b"stale"), ("other", b"2")]  # not mutated
    spans = publish_spans(only(captured.transactions()))
    assert len(spans) == 3  # send_and_wait calls send: one span each, not two
    records = await read_raw(kafka_bootstrap, topic, 3)
    assert [record.value for record in records] == [b"first", b"second", b"third"]
    assert [[name for name, _ in record.headers] for record in records] == [
        ["kept", "sentry-trace", "other", "baggage"],
        ["kept", "sentry-trace", "baggage"],
        ["sentry-trace", "baggage"],
    ]
    assert [dict(record.headers).get("kept") for record in records] == [b"1", b"t", None]
    for record, span in zip(records, spans, strict=True):
        assert trace_of(record) == (head.trace_id, span["span_id"])
        assert span["data"]["messaging.message.id"] == f"{topic}/0/{record.offset}"
        assert span["data"]["messaging.destination.name"] == topic
        assert span["description"] == topic
    assert spans[0]["data"]["messaging.message.body.size"] == len(b"first")


@pytest.mark.parametrize("rate", [1.0, 0.0], ids=["sampled", "unsampled"])
async def test_delivery_failure_is_reported_in_the_sends_trace_and_reaches_the_caller_unchanged(
    sentry_init: SentryInit, rate: float
) -> None:
    """An unsampled send has no span to describe: only its failure is watched, and reported."""
    from busprop.demo.brokers import start_embedded_kafka

    captured = sentry_init(traces_sample_rate=rate)
    broker = start_embedded_kafka()
    plain = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=1000, retry_backoff_ms=50
    )
    producer = busprop.kafka.traced_producer(plain)
    try:
        await plain.start()
        await producer.send_and_wait("doomed", b"first")  # metadata known: send() will not block on it
        broker.stop()
        with sentry_sdk.start_transaction(name="head") as head:
            future = await producer.send("doomed", b"lost")
        with pytest.raises(Exception) as raised:
            await asyncio.wait_for(future, 20)
    finally:
        broker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(plain.stop(), 5)
    error = only([event for event in captured.errors() if "exception" in event])
    assert error["exception"]["values"][-1]["type"] == type(raised.value).__name__
    assert error["exception"]["values"][-1]["mechanism"] == {
        "type": "busprop.kafka.delivery",
        "handled": True,
    }
    assert error["contexts"]["trace"]["trace_id"] == head.trace_id
    if rate == 0.0:
        assert captured.transactions() == []
        assert error["contexts"]["trace"]["span_id"] == head.span_id  # the send's current span
        return
    transaction = only([event for event in captured.transactions() if event["transaction"] == "head"])
    span = only(publish_spans(transaction))
    assert error["contexts"]["trace"]["span_id"] == span["span_id"]


async def test_traced_producer_without_tracing_carries_the_scopes_trace_into_the_loop_body(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=None)
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as plain:
        await busprop.kafka.traced_producer(plain).send_and_wait(topic, b"x")
    trace_id = sentry_sdk.get_current_scope().get_active_propagation_context().trace_id
    async with assigned(kafka_bootstrap, topic) as consumer:
        async for record in busprop.kafka.traced_consumer(consumer):
            await asyncio.sleep(0)  # the body may await: still the record's trace
            inside = sentry_sdk.get_current_scope().get_active_propagation_context()
            assert (inside.trace_id, inside.parent_span_id) == trace_of(record)  # not the outer context
            break
    assert trace_of(record)[0] == trace_id
    assert f"sentry-trace_id={trace_id}".encode() in only(header_values(record, "baggage"))
    assert captured.transactions() == []


async def test_destination_outside_propagation_targets_gets_no_headers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=["^payments$"])
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as plain:
        with sentry_sdk.start_transaction(name="head"):
            await busprop.kafka.traced_producer(plain).send_and_wait(topic, b"x", headers=[("kept", b"1")])
    assert only(await read_raw(kafka_bootstrap, topic, 1)).headers == (("kept", b"1"),)
    span = only(publish_spans(only(captured.transactions())))  # the send itself is still traced
    assert span["data"]["messaging.message.id"] == f"{topic}/0/0"


# --- consumer: KafkaIntegration on unchanged code -------------------------------------------------


async def test_integration_getone_and_async_for_bodies_run_in_each_records_trace(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as producer:  # created after init: patched
        with sentry_sdk.start_transaction(name="head") as head:
            for value in (b"one", b"two", b"three", b"four"):
                await producer.send_and_wait(topic, value, key=b"k")
    span_ids = [span["span_id"] for span in publish_spans(only(captured.transactions()))]
    assert len(span_ids) == 4

    seen = []
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.seek_to_beginning()
    record = await consumer.getone()
    seen.append((record.value, *body_trace()))
    assert len(processed_records(captured)) == 0  # still processing "one"
    async for record in consumer:
        await asyncio.sleep(0)
        seen.append((record.value, *body_trace()))
        assert len(processed_records(captured)) == len(seen) - 1  # the previous one ended when asked
        if len(seen) == 3:
            break
    record = await consumer.getone()
    seen.append((record.value, *body_trace()))
    await consumer.stop()
    assert sentry_sdk.get_current_span() is None  # nothing left open after stop()
    processed = processed_records(captured)
    assert len(processed) == 4
    assert seen == [
        (value, head.trace_id, span_id)
        for value, span_id in zip((b"one", b"two", b"three", b"four"), span_ids, strict=True)
    ]
    assert [event["contexts"]["trace"]["parent_span_id"] for event in processed] == span_ids
    data = test_kafka.process_span(processed[0])["data"]
    assert data["messaging.message.id"] == f"{topic}/0/0"
    assert data["messaging.destination.partition.id"] == "0"
    assert data["messaging.kafka.offset"] == 0
    assert data["messaging.message.body.size"] == 3
    assert 0 <= data["messaging.message.receive.latency"] < 60_000
    assert "messaging.consumer.group.name" not in data  # no group: assign()
    assert processed[0]["transaction"] == topic


async def test_asyncio_timeout_keeps_the_body_in_the_trace_and_wait_for_before_312_does_not(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as producer:
        with sentry_sdk.start_transaction(name="head") as head:
            await producer.send_and_wait(topic, b"wait_for")
            await producer.send_and_wait(topic, b"timeout")
    async with assigned(kafka_bootstrap, topic) as consumer:
        record = await asyncio.wait_for(consumer.getone(), 10)
        assert record.value == b"wait_for"
        span = sentry_sdk.get_current_span()
        if sys.version_info < (3, 12):  # getone ran in a task of its own, which has ended
            assert span is None
            assert len(processed_records(captured)) == 1  # sent when that task ended
        else:
            assert span is not None and span.trace_id == head.trace_id
        if sys.version_info < (3, 11):  # no asyncio.timeout yet: the one record is all there is
            return
        async with asyncio.timeout(10):  # runs getone in this task: the body is in the trace
            record = await consumer.getone()
        assert record.value == b"timeout"
        assert body_trace()[0] == head.trace_id
    processed = processed_records(captured)
    assert [event["contexts"]["trace"]["trace_id"] for event in processed] == [head.trace_id] * 2
    assert sentry_sdk.get_current_span() is None


async def test_concurrent_tasks_never_mix_traces(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topics, per_topic = [new_topic() for _ in range(6)], 10
    async with started_producer(kafka_bootstrap, linger_ms=5) as producer:

        async def produce(topic: str, index: int) -> None:
            with sentry_sdk.new_scope(), sentry_sdk.start_transaction(name=f"head-{topic}-{index}"):
                await producer.send_and_wait(topic, f"{topic}:{index}".encode())

        await asyncio.gather(*(produce(topic, i) for topic in topics for i in range(per_topic)))
    heads = {
        event["transaction"]: event["contexts"]["trace"]["trace_id"] for event in captured.transactions()
    }
    assert len(set(heads.values())) == len(topics) * per_topic

    mixed: list[Any] = []

    def check(record: Any) -> None:
        trace_id, parent_span_id = body_trace()
        if (trace_id, parent_span_id) != trace_of(record):
            mixed.append((record.value, trace_id))

    async def own_consumer(topic: str, explicit: bool) -> None:  # a consumer per task, tasks in one loop
        async with assigned(kafka_bootstrap, topic) as consumer:
            count = 0
            async for record in busprop.kafka.traced_consumer(consumer) if explicit else consumer:
                check(record)
                await asyncio.sleep(0.001)
                check(record)
                count += 1
                if count == per_topic:
                    break

    shared_topic = topics[0]

    async def shared(consumer: AIOKafkaConsumer, records: int) -> None:  # tasks sharing a consumer
        for _ in range(records):
            record = await consumer.getone()
            check(record)
            await asyncio.sleep(0.001)  # the other tasks ask for records meanwhile
            check(record)
            with sentry_sdk.start_span(op="work", name=record.value.decode()):
                pass

    await asyncio.gather(*(own_consumer(topic, index % 2 == 0) for index, topic in enumerate(topics)))
    async with assigned(kafka_bootstrap, shared_topic) as consumer:
        await asyncio.gather(*(shared(consumer, per_topic // 5) for _ in range(5)))
        before_stop = len(processed_records(captured))
        # Every task ended, so each sent its last record; stop() from here ends nothing of theirs.
    assert mixed == []
    processed = processed_records(captured)
    assert before_stop == len(processed) == len(topics) * per_topic + per_topic
    works = [span for event in processed for span in event["spans"] if span["op"] == "work"]
    assert len(works) == per_topic  # each in its record's transaction, none ended by another task
    assert sentry_sdk.get_current_span() is None


async def test_stop_from_another_task_sends_the_open_records_without_raising(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as producer:
        for value in (b"a", b"b"):
            await producer.send_and_wait(topic, value)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.seek_to_beginning()
    holding, release = asyncio.Event(), asyncio.Event()

    async def worker() -> Any:
        record = await consumer.getone()
        holding.set()
        await release.wait()  # still processing when another task stops the consumer
        return record.value, trace_of(record)

    task = asyncio.create_task(worker())
    await holding.wait()
    await consumer.stop()  # from this task: must not raise, must send the worker's record
    assert len(processed_records(captured)) == 1
    release.set()
    assert (await task)[0] == b"a"  # the worker went on unharmed
    assert len(processed_records(captured)) == 1  # and its record was sent once, not again at its end
    assert sentry_sdk.get_current_span() is None


# --- explicit wrappers on objects created before sentry_sdk.init ----------------------------------


async def test_traced_consumer_async_for_break_and_failure_end_the_record_as_documented(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as plain, assigned(kafka_bootstrap, topic) as consumer:
        captured = sentry_init(traces_sample_rate=1.0)  # after both were created
        producer = busprop.kafka.traced_producer(plain)
        with sentry_sdk.start_transaction(name="head") as head:
            for value in (b"one", b"two", b"three"):
                await producer.send_and_wait(topic, value)
        span_ids = [span["span_id"] for span in publish_spans(only(captured.transactions()))]

        async for record in busprop.kafka.traced_consumer(consumer, group_id="billing"):
            assert body_trace() == (head.trace_id, span_ids[0]) and record.value == b"one"
            break
        assert len(processed_records(captured)) == 1  # ended at the break, before this line
        assert sentry_sdk.get_current_span() is None

        with pytest.raises(KeyError, match="boom"):
            async with busprop.kafka.traced_consumer(consumer) as records:
                async for _record in records:
                    assert body_trace() == (head.trace_id, span_ids[1])
                    raise KeyError("boom")
        records = busprop.kafka.traced_consumer(consumer)
        record = await records.__anext__()
        assert record.value == b"three" and body_trace() == (head.trace_id, span_ids[2])
        await records.aclose()
    processed = processed_records(captured)
    assert [event["contexts"]["trace"]["parent_span_id"] for event in processed] == span_ids
    assert [event["contexts"]["trace"]["status"] for event in processed] == ["ok", "internal_error", "ok"]
    assert test_kafka.process_span(processed[0])["data"]["messaging.consumer.group.name"] == "billing"
    error = only([event for event in captured.errors() if "exception" in event])
    assert error["contexts"]["trace"]["span_id"] == process_span(processed[1])["span_id"]
    assert sentry_sdk.get_current_span() is None


async def test_getmany_batches_through_traced_records_and_process_batch(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as plain:
        producer = busprop.kafka.traced_producer(plain)
        with sentry_sdk.start_transaction(name="head") as head:
            for value in (b"one", b"two"):
                await producer.send_and_wait(topic, value)
    span_ids = [span["span_id"] for span in publish_spans(only(captured.transactions()))]
    async with assigned(kafka_bootstrap, topic) as consumer:
        batch: dict[Any, list[Any]] = {}
        while sum(map(len, batch.values())) < 2:
            for partition, records in (await consumer.getmany(timeout_ms=5000)).items():
                batch.setdefault(partition, []).extend(records)
        seen = []
        with busprop.kafka.traced_records(batch, consumer=consumer) as records:
            for _record in records:
                seen.append(body_trace())
        assert seen == [(head.trace_id, span_id) for span_id in span_ids]
        with busprop.kafka.process_batch(batch, consumer=consumer, name="pair") as records:
            values = [record.value for record in records]
    assert values == [b"one", b"two"]
    batch_event = only([event for event in captured.transactions() if event["transaction"] == "pair"])
    spans = [span for span in batch_event["spans"] if span["op"] == "queue.process"]
    assert [span["data"]["busprop.link.span_id"] for span in spans] == span_ids
    assert [span["data"]["messaging.message.id"] for span in spans] == [f"{topic}/0/0", f"{topic}/0/1"]
    assert batch_event["contexts"]["trace"]["data"]["messaging.batch.message_count"] == 2


async def test_an_empty_getmany_creates_no_transaction(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """A consumer polling an idle topic must not send one empty transaction per ``getmany()``."""
    captured = sentry_init(traces_sample_rate=1.0)
    async with assigned(kafka_bootstrap, new_topic()) as consumer:
        batch = await consumer.getmany(timeout_ms=200)
        assert batch == {}
        with busprop.kafka.process_batch(batch, consumer=consumer) as records:
            assert sentry_sdk.get_current_span() is None  # no transaction, not even an unsent one
            assert list(records) == []
        with busprop.kafka.traced_records(batch, consumer=consumer) as records:
            assert list(records) == []
        assert sentry_sdk.get_current_span() is None
    assert captured.transactions() == []
    assert captured.errors() == []


async def test_consumer_decorator_sync_and_async_handlers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as plain:
        producer = busprop.kafka.traced_producer(plain)
        with sentry_sdk.start_transaction(name="head") as head:
            for value in (b"sync", b"async", b"bad"):
                await producer.send_and_wait(topic, value)
    records = await read_raw(kafka_bootstrap, topic, 3)
    seen: list[tuple[str, str | None, str]] = []

    @busprop.kafka.consumer
    def handle(record: Any) -> str:
        seen.append(in_body())
        return "handled"

    class Handlers:
        @busprop.kafka.consumer(group_id="async-group")
        async def handle(self, record: Any) -> None:  # after self: the decorator finds the record
            await asyncio.sleep(0)
            seen.append(in_body())
            if record.value == b"bad":
                raise ValueError("bad record")

    assert handle(records[0]) == "handled"
    await Handlers().handle(records[1])
    with pytest.raises(ValueError, match="bad record"):
        await Handlers().handle(records[2])
    parents = [trace_of(record)[1] for record in records]
    test_kafka.check_decorated_handlers(captured, head.trace_id, parents, seen, topic)


async def test_batch_mode_exception_fails_the_batch_and_an_unsampled_batch_delivers_every_record(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as producer:
        for value in (b"ok", b"poison", b"never"):
            await producer.send_and_wait(topic, value)
    async with assigned(kafka_bootstrap, topic) as consumer:
        batch: dict[Any, list[Any]] = {}
        while sum(map(len, batch.values())) < 3:
            for partition, records in (await consumer.getmany(timeout_ms=5000)).items():
                batch.setdefault(partition, []).extend(records)
        test_kafka.check_batch_failure_then_unsampled_delivery(
            sentry_init, batch, topic, consumer, lambda record: record.value
        )


# --- what arrives: junk, duplicated and generated trace headers, unsampled heads ------------------


async def test_junk_and_duplicated_trace_headers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    first = "4f1c3a2b9d8e7f6a5b4c3d2e1f0a9b8c-1a2b3c4d5e6f7a8b-1"
    duplicated = [("sentry-trace", b"junk"), ("sentry-trace", first.encode()), ("sentry-trace", b"0" * 32)]
    cases = {**JUNK_HEADERS, "duplicated": duplicated}
    async with started_producer(kafka_bootstrap) as producer:
        for name, headers in cases.items():
            await producer.send_and_wait(topic, name.encode(), headers=headers)
    delivered = []
    async with assigned(kafka_bootstrap, topic) as consumer:
        async for record in busprop.kafka.traced_consumer(consumer):
            delivered.append(record.value.decode())
            if len(delivered) == len(cases):
                break
    assert delivered == list(cases)
    processed = processed_records(captured)
    assert len(processed) == len(cases)
    *junk, last = processed
    assert len({event["contexts"]["trace"]["trace_id"] for event in junk}) == len(JUNK_HEADERS)
    for event in junk:
        assert event["contexts"]["trace"].get("parent_span_id") is None
    trace = last["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == tuple(first.split("-")[:2])


def test_generated_trace_headers_from_the_broker(sentry_init: SentryInit, kafka_bootstrap: str) -> None:
    """Hypothesis: records with generated (malformed, duplicated) trace headers, through aiokafka."""
    from kafka.admin import KafkaAdminClient, NewTopic

    captured = sentry_init(traces_sample_rate=1.0)
    topic = f"busprop-bad-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    loop = asyncio.new_event_loop()

    async def start() -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])
        return producer, consumer

    producer, consumer = loop.run_until_complete(start())

    expectations: list[tuple[Expected, Seen]] = []
    message = st.tuples(pair_lists(trace_pair(wire_values), valid_pair(str.encode)), st.binary(max_size=300))
    keys = itertools.count()

    async def round_trip(pending: dict[bytes, tuple[list[tuple[str, Any]], bytes]]) -> None:
        sent = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, (headers, value) in pending.items()
        ]
        await asyncio.gather(*sent)
        async for record in busprop.kafka.traced_consumer(consumer):
            if record.key not in pending:
                continue  # left over from an example hypothesis stopped early
            headers, value = pending.pop(record.key)
            seen = seen_now(record.value)
            assert seen.payload == value and list(record.headers) == headers
            expected = expected_trace(headers)
            check_trace(seen, expected, headers)
            expectations.append((expected, seen))
            if not pending:
                break

    @BROKER_SETTINGS
    @given(st.lists(message, min_size=BATCH // 2, max_size=BATCH))
    def check(batch: list[tuple[list[tuple[str, Any]], bytes]]) -> None:
        pending = {str(next(keys)).encode(): sent for sent in batch}
        loop.run_until_complete(asyncio.wait_for(round_trip(pending), 30))
        assert not pending

    try:
        check()
    finally:
        loop.run_until_complete(consumer.stop())
        loop.run_until_complete(producer.stop())
        loop.close()
    assert len(expectations) >= BROKER_BATCHES
    check_sent(captured, expectations, topic)


async def test_unsampled_head_no_transaction_minus_zero_forwarded_and_http_carries_the_decision(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    hop_server: Any,
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    head = make_head(UNSAMPLED)
    first, second = new_topic(), new_topic()
    async with started_producer(kafka_bootstrap) as producer:  # before init: the head's headers as given
        await producer.send_and_wait(first, b"order", headers=head.kafka_headers)
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    async with started_producer(kafka_bootstrap) as producer, assigned(kafka_bootstrap, first) as consumer:
        async for record in consumer:
            span = sentry_sdk.get_current_span()  # a never-sampled transaction carries the head's "no"
            assert span is not None and span.sampled is False and span.trace_id == head.trace_id
            seen = await asyncio.to_thread(hop, hop_server.url("aiokafka"))
            await producer.send_and_wait(second, record.value)
            break
    assert_hop(hop_server, "aiokafka", seen, head, captured.transactions())
    forwarded = only(header_values(only(await read_raw(kafka_bootstrap, second, 1)), "sentry-trace")).decode()
    assert forwarded.startswith(f"{head.trace_id}-") and forwarded.endswith("-0")
    assert captured.transactions() == []


# --- KafkaIntegration: install, uninstall, clients missing or too old -----------------------------


async def test_integration_twice_and_with_the_wrappers_traces_once(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    patched = (AIOKafkaProducer.send, AIOKafkaConsumer.getone, AIOKafkaConsumer.stop)
    assert not originals_in_place()
    busprop.kafka.install()
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert (AIOKafkaProducer.send, AIOKafkaConsumer.getone, AIOKafkaConsumer.stop) == patched
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as plain:
        producer = busprop.kafka.traced_producer(plain)
        with sentry_sdk.start_transaction(name="head"):
            await producer.send_and_wait(topic, b"v")
    assert len(publish_spans(only(captured.transactions()))) == 1
    async with assigned(kafka_bootstrap, topic) as consumer:
        async for record in busprop.kafka.traced_consumer(consumer):
            assert len(header_values(record, "sentry-trace")) == 1
            break
    assert len(processed_records(captured)) == 1  # not 2: the wrapper bypasses the patches


async def test_integration_uninstall_restores_the_originals(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert not originals_in_place()
    integration.uninstall()
    assert originals_in_place()
    integration.uninstall()  # twice is harmless
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as producer:
        with sentry_sdk.start_transaction(name="head"):
            await producer.send_and_wait(topic, b"plain")
    assert only(await read_raw(kafka_bootstrap, topic, 1)).headers == ()
    assert [event["transaction"] for event in captured.transactions()] == ["head"]
    assert publish_spans(only(captured.transactions())) == []
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])  # can be installed again
    assert not originals_in_place()


async def test_patched_methods_pass_through_for_a_client_without_the_integration(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    captured = sentry_init(traces_sample_rate=1.0)  # the patches stay, this client did not ask for them
    assert not originals_in_place()
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as producer:
        with sentry_sdk.start_transaction(name="head"):
            await producer.send_and_wait(topic, b"plain", headers=[("kept", b"1")])
    async with assigned(kafka_bootstrap, topic) as consumer:
        record = await consumer.getone()  # in this task
        assert record.value == b"plain" and record.headers == (("kept", b"1"),)
        assert sentry_sdk.get_current_span() is None  # no record's processing started
    head = only(captured.transactions())
    assert head["transaction"] == "head" and head["spans"] == []


@pytest.mark.parametrize("why", ["too old", "missing"])
def test_integration_skips_an_aiokafka_too_old_or_missing_with_a_debug_log(
    sentry_init: SentryInit,
    integration: type[busprop.kafka.KafkaIntegration],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    why: str,
) -> None:
    monkeypatch.delitem(_integration._PATCHES, "aiokafka", raising=False)  # built again, now
    if why == "too old":
        monkeypatch.setattr(aiokafka, "__version__", "0.10.0")
    else:
        monkeypatch.setitem(sys.modules, "aiokafka", None)  # import aiokafka raises ImportError
    kafka_python_send = busprop.kafka._kafka_python.CLIENT.patch_points()[0][0].__dict__["send"]
    with caplog.at_level(logging.DEBUG, logger="busprop"):
        sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert originals_in_place()
    assert "aiokafka not patched" in caplog.text
    assert ("older than 0.11" in caplog.text) == (why == "too old")
    assert busprop.kafka._kafka_python.CLIENT.patch_points()[0][0].__dict__["send"] is not kafka_python_send


# --- separate processes, a consumer group ---------------------------------------------------------


def test_many_traces_across_processes_in_a_consumer_group(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    traces, per_trace = 30, 10
    topic, group = new_topic(), f"group-{uuid.uuid4().hex[:8]}"
    consumer_capture, producer_capture = tmp_path / "consumer.json", tmp_path / "producer.json"
    count = str(traces * per_trace)
    consumer = start_app("aiokafka_consumer", kafka_bootstrap, topic, group, count, str(consumer_capture))
    try:
        run_app(
            "aiokafka_producer", kafka_bootstrap, topic, str(traces), str(per_trace), str(producer_capture)
        )
        stdout, stderr = consumer.communicate(timeout=90)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, stderr

    produced = read_captured(producer_capture)["transactions"]
    assert len(produced) == traces
    trace_of_span, trace_of_head = {}, {}
    for head in produced:
        spans = publish_spans(head)
        assert len(spans) == per_trace
        assert all(span["data"]["messaging.message.id"].startswith(f"{topic}/0/") for span in spans)
        trace_of_head[head["transaction"]] = head["contexts"]["trace"]["trace_id"]
        trace_of_span.update({span["span_id"]: span["trace_id"] for span in spans})

    processed = read_captured(consumer_capture)["transactions"]
    assert len(processed) == traces * per_trace
    assert sorted(event["contexts"]["trace"]["parent_span_id"] for event in processed) == sorted(
        trace_of_span
    )
    parent_of_process_span = {}
    for event in processed:
        trace = event["contexts"]["trace"]
        assert is_processed(event)
        assert trace["trace_id"] == trace_of_span[trace["parent_span_id"]]
        assert process_span(event)["data"]["messaging.consumer.group.name"] == group
        parent_of_process_span[process_span(event)["span_id"]] = trace["parent_span_id"]

    seen = json.loads(stdout)
    assert len(seen) == traces * per_trace
    for value, trace_id, span_id in seen:  # the loop body ran inside the record's queue.process span
        assert trace_id == trace_of_head[f"order-{value.split(':')[0]}"]
        assert trace_of_span[parent_of_process_span[span_id]] == trace_id


# --- interoperability: Sentry's Node SDK (kafkajs) and OpenTelemetry ------------------------------


async def test_records_from_sentrys_node_sdk_are_continued(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic()
    await asyncio.to_thread(
        run_node, "kafka_producer.mjs", kafka_bootstrap, topic, str(tmp_path / "node.json")
    )
    node_spans = read_captured(tmp_path / "node.json")["spans"]
    node_publish = only([span for span in node_spans if span["op"] == "queue.publish"])
    node_head = only([span for span in node_spans if span["name"] == "node-head"])
    captured = sentry_init(traces_sample_rate=0.0)  # the head's decision (sampled) must win
    async with assigned(kafka_bootstrap, topic) as consumer:
        async for record in busprop.kafka.traced_consumer(consumer):
            assert record.value == b"from-node"
            assert dict(record.headers)["x-other"] == b"kept"
            break
    event = only(processed_records(captured))
    assert event["contexts"]["trace"]["trace_id"] == node_head["trace_id"]
    assert event["contexts"]["trace"]["parent_span_id"] == node_publish["span_id"]
    assert event["_dsc"]["transaction"] == "node-head"  # Node's frozen baggage travels on


async def test_records_from_aiokafka_are_continued_by_sentrys_node_sdk(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    async with started_producer(kafka_bootstrap) as plain:
        producer = busprop.kafka.traced_producer(plain)
        with sentry_sdk.start_transaction(name="python-head") as head:
            await producer.send_and_wait(topic, b"from-python", headers=[("sentry-trace", b"stale")])
    publish_span = only(publish_spans(only(captured.transactions())))
    group = f"node-{uuid.uuid4().hex[:8]}"
    output = await asyncio.to_thread(
        run_node, "kafka_consumer.mjs", kafka_bootstrap, topic, group, "1", str(tmp_path / "n.json")
    )
    assert json.loads(output) == [
        {"value": "from-python", "trace_id": head.trace_id, "parent_span_id": publish_span["span_id"]}
    ]
    node_process = only(
        [span for span in read_captured(tmp_path / "n.json")["spans"] if span["op"] == "queue.process"]
    )
    assert (node_process["trace_id"], node_process["parent_span_id"]) == (
        head.trace_id,
        publish_span["span_id"],
    )


async def test_opentelemetry_traceparent_only_records_are_continued_and_write_traceparent_writes_one(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=0.0)  # the traceparent's sampled flag must win
    busprop.configure(write_traceparent=True)
    topic = new_topic()
    otel_trace_id, otel_span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    stale = ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")
    async with started_producer(kafka_bootstrap) as plain:
        otel = f"00-{otel_trace_id}-{otel_span_id}-01".encode()
        await plain.send_and_wait(topic, b"otel", headers=[("traceparent", otel)])
        with sentry_sdk.start_transaction(name="head", sampled=True) as head:
            await busprop.kafka.traced_producer(plain).send_and_wait(topic, b"busprop", headers=[stale])
    records = []
    async with assigned(kafka_bootstrap, topic) as consumer:
        async for record in busprop.kafka.traced_consumer(consumer):
            records.append(record)
            if len(records) == 2:
                break
    head_event = only([event for event in captured.transactions() if event["transaction"] == "head"])
    publish_span = only(publish_spans(head_event))
    assert trace_of(records[1]) == (head.trace_id, publish_span["span_id"])
    traceparent = only(header_values(records[1], "traceparent")).decode()  # replaced, not appended
    assert traceparent == f"00-{head.trace_id}-{publish_span['span_id']}-01"
    traces = [event["contexts"]["trace"] for event in processed_records(captured)]
    assert [(trace["trace_id"], trace["parent_span_id"]) for trace in traces] == [
        (otel_trace_id, otel_span_id),
        (head.trace_id, publish_span["span_id"]),
    ]
