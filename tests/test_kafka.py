"""busprop.kafka against the real Kafka-protocol broker (Tansu, or ``KAFKA_BOOTSTRAP_SERVERS``).

Most tests read with ``assign()`` (no group join, which costs about 3 s on Tansu); the tests that
are about consumer groups join one. Every test uses its own topics.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

import busprop
import busprop.kafka
from busprop import sdk
from tests.conftest import IN_CI, Captured
from tests.processes import read_captured, run_app, start_app

pytestmark = pytest.mark.broker

SentryInit = Callable[..., Captured]


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """``new_topic(partitions=1)`` creates a uniquely named topic, deleted after the test."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    created: list[str] = []

    def create(partitions: int = 1) -> str:
        name = f"busprop-{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, partitions, 1)])
        created.append(name)
        return name

    yield create
    with contextlib.suppress(Exception):  # a broker without deletion keeps them; names are unique
        admin.delete_topics(created)
    admin.close()


@pytest.fixture
def raw_producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    yield producer
    producer.close(timeout=5)


def assigned_consumer(bootstrap: str, topic: str, partitions: int = 1, **config: Any) -> KafkaConsumer:
    """A consumer reading ``topic`` from the beginning without joining a group."""
    config.setdefault("consumer_timeout_ms", 5000)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **config)
    consumer.assign([TopicPartition(topic, partition) for partition in range(partitions)])
    consumer.seek_to_beginning()
    return consumer


def read_all(bootstrap: str, topic: str, count: int, partitions: int = 1) -> list[Any]:
    consumer = assigned_consumer(bootstrap, topic, partitions)
    records = []
    for record in consumer:
        records.append(record)
        if len(records) == count:
            break
    consumer.close()
    assert len(records) == count
    return records


def header_values(record: Any, key: str) -> list[bytes]:
    return [value for name, value in record.headers if name == key]


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def check_batch_failure_then_unsampled_delivery(
    sentry_init: Callable[..., Captured],
    batch: Any,
    topic: str,
    consumer: Any,
    value_of: Callable[[Any], Any],
) -> None:
    """Any client's records ``ok``, ``poison``, ``never`` through ``process_batch``: a raising body
    fails the sampled batch and propagates unchanged; an unsampled batch delivers every record with
    no span of its own."""
    captured = sentry_init(traces_sample_rate=1.0)
    failure = RuntimeError("poison record")
    with pytest.raises(RuntimeError) as raised, busprop.kafka.process_batch(batch) as records:
        for record in records:
            if value_of(record) == b"poison":
                raise failure
    assert raised.value is failure
    transaction = only(captured.transactions())
    trace = transaction["contexts"]["trace"]
    assert (trace["op"], transaction["transaction"], trace["status"]) == (
        sdk.OP_TASK,
        f"batch {topic}",
        "internal_error",
    )
    assert [(span["op"], span["status"]) for span in transaction["spans"]] == [
        ("queue.process", "ok"),
        ("queue.process", "internal_error"),
    ]
    assert only(captured.errors())["exception"]["values"][-1]["value"] == "poison record"

    captured = sentry_init(traces_sample_rate=0.0)
    with busprop.kafka.process_batch(batch, consumer=consumer) as records:
        delivered = []
        for record in records:
            span = sentry_sdk.get_current_span()  # the unsampled batch's, no span of the record's
            assert span is not None and span.op == sdk.OP_TASK and span.sampled is False
            delivered.append(value_of(record))
    assert delivered == [b"ok", b"poison", b"never"]
    assert captured.transactions() == []


def publish_spans(transaction: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for span in transaction["spans"] if span["op"] == "queue.publish"]


def messaging(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key.startswith("messaging.")}


def process_span(transaction: dict[str, Any]) -> dict[str, Any]:
    """The one ``queue.process`` span of a record's transaction: its child, holding the Queues data
    the transaction does not repeat."""
    trace = transaction["contexts"]["trace"]
    span: dict[str, Any] = only([span for span in transaction["spans"] if span["op"] == "queue.process"])
    assert span["parent_span_id"] == trace["span_id"]
    assert span["description"] == span["data"]["messaging.destination.name"]
    assert (span["origin"], span["status"]) == (trace["origin"], trace["status"])
    assert messaging(trace["data"]) == {}
    return span


def is_processed(transaction: dict[str, Any]) -> bool:
    return bool(transaction["contexts"]["trace"].get("op") == sdk.OP_TASK)


def processed_records(captured: Captured) -> list[dict[str, Any]]:
    """The transactions of consumed records, each checked to hold its one ``queue.process`` span."""
    transactions = [transaction for transaction in captured.transactions() if is_processed(transaction)]
    for transaction in transactions:
        process_span(transaction)
    return transactions


def check_decorated_handlers(
    captured: Captured, head_trace_id: str, parents: list[str], seen: list[Any], topic: str
) -> None:
    """Three records handled by ``@busprop.kafka.consumer`` functions (the third raising, the
    second in group ``async-group``): each body ran in its record's trace, under the span that
    sent it (``parents``), with the Queues data filled and the failure reported in its record."""
    processed = processed_records(captured)
    assert seen == [
        (head_trace_id, parent, process_span(event)["span_id"])
        for parent, event in zip(parents, processed, strict=True)
    ]
    assert [event["contexts"]["trace"]["status"] for event in processed] == ["ok", "ok", "internal_error"]
    data = [process_span(event)["data"] for event in processed]
    assert [item["messaging.message.id"] for item in data] == [f"{topic}/0/{n}" for n in range(3)]
    assert data[1]["messaging.consumer.group.name"] == "async-group"
    error = only(captured.errors())
    assert error["exception"]["values"][-1]["type"] == "ValueError"
    assert error["contexts"]["trace"]["span_id"] == process_span(processed[2])["span_id"]


def in_body() -> tuple[str, str | None, str]:
    """What a loop body sees: (trace id, its record transaction's parent span id, its span id).

    The body runs in the record's ``queue.process`` span, a child of the record's transaction.
    """
    span = sentry_sdk.get_current_span()
    assert span is not None and span.op == "queue.process"
    transaction = span.containing_transaction
    assert transaction is not None and span.parent_span_id == transaction.span_id
    return span.trace_id, transaction.parent_span_id, span.span_id


# --- producer ------------------------------------------------------------------------------------


def test_traced_producer_writes_bytes_headers_in_place_of_old_ones(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    user_headers = (
        ("first", b"1"),
        ("sentry-trace", b"stale"),
        ("baggage", b"vendor=kept"),
        ("middle", b"2"),
        ("sentry-trace", b"duplicate"),
    )
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with producer, sentry_sdk.start_transaction(name="head") as head:
        metadata = producer.send(topic, b"payload", headers=user_headers).get(timeout=10)
    assert metadata.topic == topic
    assert user_headers[1] == ("sentry-trace", b"stale")  # the caller's tuple is untouched

    record = only(read_all(kafka_bootstrap, topic, 1))
    assert [name for name, _ in record.headers] == ["first", "sentry-trace", "baggage", "middle"]
    assert all(isinstance(value, bytes) for _, value in record.headers)
    span = only(publish_spans(only(captured.transactions())))
    assert header_values(record, "sentry-trace") == [f"{head.trace_id}-{span['span_id']}-1".encode()]
    baggage = header_values(record, "baggage")[0].decode()
    assert baggage.startswith("vendor=kept,")
    assert f"sentry-trace_id={head.trace_id}" in baggage
    assert span["data"]["messaging.system"] == "kafka"
    assert span["data"]["messaging.destination.name"] == topic
    assert span["data"]["messaging.message.body.size"] == len(b"payload")
    assert span["data"]["messaging.destination.partition.id"] == "0"
    assert span["data"]["messaging.message.id"] == f"{topic}/0/{metadata.offset}"  # acknowledged inside
    assert span["origin"] == "auto.queue.busprop.kafka"
    assert span["status"] == "ok"


def test_traced_producer_without_tracing_still_carries_the_trace(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=None)
    topic = new_topic()
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    producer.send(topic, b"x").get(timeout=10)
    producer.close()
    record = only(read_all(kafka_bootstrap, topic, 1))
    trace_id = sentry_sdk.get_current_scope().get_active_propagation_context().trace_id
    assert only(header_values(record, "sentry-trace")).decode().startswith(f"{trace_id}-")
    assert captured.transactions() == []


def test_destination_outside_propagation_targets_gets_no_headers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=["^payments$"])
    topic = new_topic()
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with sentry_sdk.start_transaction(name="head"):
        producer.send(topic, b"x", headers=[("kept", b"1")]).get(timeout=10)
    producer.close()
    assert only(read_all(kafka_bootstrap, topic, 1)).headers == [("kept", b"1")]


async def test_producer_decorator_sync_and_async(
    sentry_init: SentryInit, kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()

    @busprop.kafka.producer(topic=topic)
    def send(value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        return raw_producer.send(topic, value, headers=headers)

    @busprop.kafka.producer(topic=lambda value, **_: topic, name="async send")
    async def send_async(value: bytes, *, headers: Any = None) -> Any:
        return raw_producer.send(topic, value, headers=headers)

    given = (("kept", b"1"),)
    with sentry_sdk.start_transaction(name="head") as head:
        send(b"sync", given).get(timeout=10)
        (await send_async(b"async")).get(timeout=10)
    records = read_all(kafka_bootstrap, topic, 2)
    spans = publish_spans(only(captured.transactions()))
    assert [span["description"] for span in spans] == [topic, "async send"]
    for record, span in zip(records, spans, strict=True):
        assert only(header_values(record, "sentry-trace")) == f"{head.trace_id}-{span['span_id']}-1".encode()
    assert records[0].headers[0] == ("kept", b"1")


def test_producer_decorator_needs_a_headers_parameter() -> None:
    with pytest.raises(TypeError, match="no 'headers' parameter"):
        busprop.kafka.producer(topic="t")(lambda value: None)


@pytest.mark.parametrize("rate", [1.0, 0.0], ids=["sampled", "unsampled"])
def test_delivery_failure_is_reported_and_reaches_the_caller_unchanged(
    sentry_init: SentryInit, rate: float
) -> None:
    """An unsampled send has no span to describe: only its failure is watched, and reported."""
    from busprop.demo.brokers import start_embedded_kafka

    captured = sentry_init(traces_sample_rate=rate)
    broker = start_embedded_kafka()
    plain = KafkaProducer(
        bootstrap_servers=broker.bootstrap_servers,
        request_timeout_ms=500,
        delivery_timeout_ms=800,
        retries=0,
        max_block_ms=1000,
        reconnect_backoff_max_ms=100,
    )
    producer = busprop.kafka.traced_producer(plain)
    try:
        producer.send("doomed", b"first").get(timeout=10)  # metadata known, so send() returns a future
        broker.stop()
        with sentry_sdk.start_transaction(name="head") as head:
            future = producer.send("doomed", b"lost")
        with pytest.raises(Exception) as raised:
            future.get(timeout=10)
    finally:
        broker.stop()
        plain.close(timeout=1)
    error = only([event for event in captured.errors() if "exception" in event])  # not kafka's log records
    assert error["exception"]["values"][-1]["type"] == type(raised.value).__name__
    assert error["exception"]["values"][-1]["mechanism"] == {
        "type": "busprop.kafka.delivery",
        "handled": True,
    }
    assert error["contexts"]["trace"]["trace_id"] == head.trace_id


# --- consumer ------------------------------------------------------------------------------------


def produce_traced(bootstrap: str, topic: str, values: list[bytes], **send: Any) -> tuple[str, list[str]]:
    """Send ``values`` inside one sampled transaction; returns its trace id and the publish span ids."""
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=bootstrap))
    with sentry_sdk.start_transaction(name="head") as head:
        for value in values:
            producer.send(topic, value, **send)
    producer.flush()
    producer.close()
    headers = [
        only(header_values(record, "sentry-trace")) for record in read_all(bootstrap, topic, len(values))
    ]
    return head.trace_id, [value.decode().split("-")[1] for value in headers]


def test_loop_body_runs_inside_the_records_trace(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"one", b"two"], key=b"k")
    seen = []
    consumer = assigned_consumer(kafka_bootstrap, topic)
    for _record in busprop.kafka.traced_consumer(consumer, group_id="billing"):
        seen.append(in_body())
        if len(seen) == 2:
            break
    consumer.close()
    processed = processed_records(captured)
    assert len(processed) == 2
    assert seen == [
        (trace_id, span_id, process_span(event)["span_id"])
        for span_id, event in zip(publish_span_ids, processed, strict=True)
    ]
    data = process_span(processed[0])["data"]
    assert data["messaging.message.id"] == f"{topic}/0/0"
    assert data["messaging.destination.partition.id"] == "0"
    assert data["messaging.kafka.offset"] == 0
    assert data["messaging.consumer.group.name"] == "billing"
    assert data["messaging.message.body.size"] == 3
    assert 0 <= data["messaging.message.receive.latency"] < 60_000
    assert "messaging.kafka.message.key" not in data
    assert processed[0]["transaction"] == topic


#: sentry-sdk's options, and whether a record's key is then collected into the span data.
KEY_COLLECTION = [
    ({}, False),
    ({"send_default_pii": True}, True),
    ({"data_collection": {"queues": True}}, True),
    ({"send_default_pii": True, "data_collection": {"queues": False}}, False),
]


@pytest.mark.filterwarnings("ignore:.*send_default_pii.* deprecated")
@pytest.mark.parametrize(("options", "collected"), KEY_COLLECTION)
def test_record_key_only_with_send_default_pii(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    raw_producer: KafkaProducer,
    new_topic: Callable[..., str],
    options: dict[str, Any],
    collected: bool,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, **options)
    topic = new_topic()
    raw_producer.send(topic, b"v", key=b"customer-7").get(timeout=10)
    consumer = assigned_consumer(kafka_bootstrap, topic)
    for _record in busprop.kafka.traced_consumer(consumer):
        break
    consumer.close()
    data = process_span(only(processed_records(captured)))["data"]
    assert data.get("messaging.kafka.message.key") == ("customer-7" if collected else None)


def test_loop_body_exception_marks_failed_and_propagates_unchanged(
    sentry_init: SentryInit, kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    raw_producer.send(topic, b"v").get(timeout=10)
    consumer = assigned_consumer(kafka_bootstrap, topic)
    failure = LookupError("no such order")
    with pytest.raises(LookupError) as raised, busprop.kafka.traced_consumer(consumer) as records:
        for _record in records:
            raise failure
    consumer.close()
    assert raised.value is failure
    transaction = only(processed_records(captured))
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    error = only(captured.errors())
    assert error["exception"]["values"][-1]["value"] == "no such order"
    assert error["exception"]["values"][-1]["mechanism"] == {"type": "busprop.kafka", "handled": False}
    assert error["contexts"]["trace"]["span_id"] == process_span(transaction)["span_id"]


async def test_consumer_decorator_sync_and_async_handlers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"sync", b"async", b"bad"])
    seen: list[tuple[str, str | None, str]] = []

    @busprop.kafka.consumer
    def handle(record: Any) -> str:
        seen.append(in_body())
        return "handled"

    class Handlers:
        @busprop.kafka.consumer(group_id="async-group")
        async def handle(self, record: Any) -> None:
            seen.append(in_body())
            if record.value == b"bad":
                raise ValueError("bad record")

    records = read_all(kafka_bootstrap, topic, 3)
    assert handle(records[0]) == "handled"
    await Handlers().handle(records[1])
    with pytest.raises(ValueError, match="bad record"):
        await Handlers().handle(records[2])
    processed = processed_records(captured)
    assert seen == [
        (trace_id, span_id, process_span(event)["span_id"])
        for span_id, event in zip(publish_span_ids, processed, strict=True)
    ]
    assert [event["contexts"]["trace"]["status"] for event in processed] == ["ok", "ok", "internal_error"]
    assert process_span(processed[1])["data"]["messaging.consumer.group.name"] == "async-group"
    error = only(captured.errors())
    assert error["exception"]["values"][-1]["type"] == "ValueError"
    assert error["contexts"]["trace"]["span_id"] == process_span(processed[2])["span_id"]


def test_consumer_decorator_survives_a_non_record(sentry_init: SentryInit) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    @busprop.kafka.consumer
    def handle(payload: Any) -> Any:
        return payload

    assert handle({"not": "a record"}) == {"not": "a record"}
    assert process_span(only(processed_records(captured)))["data"]["messaging.system"] == "kafka"


JUNK_HEADERS: dict[str, Any] = {
    "absent": None,
    "empty": [],
    "malformed": [("sentry-trace", b"not-a-trace"), ("baggage", b"sentry-trace_id=nope")],
    "non-utf8": [("sentry-trace", b"\xff\xfe" * 20), ("baggage", b"\xc3\x28")],
    "all-zero": [("sentry-trace", b"0" * 32 + b"-" + b"0" * 16 + b"-1")],
    "oversized": [("sentry-trace", b"a" * 4096), ("baggage", b"k=" + b"v" * 10_000)],
    "other-keys": [("Sentry-Trace", b"4f1c3a2b9d8e7f6a5b4c3d2e1f0a9b8c-1a2b3c4d5e6f7a8b-1"), ("x", b"")],
}


def test_junk_trace_headers_start_a_fresh_trace_and_the_record_is_delivered(
    sentry_init: SentryInit, kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    for name, headers in JUNK_HEADERS.items():
        raw_producer.send(topic, name.encode(), headers=headers)
    raw_producer.flush()
    consumer = assigned_consumer(kafka_bootstrap, topic)
    delivered = []
    for record in busprop.kafka.traced_consumer(consumer):
        delivered.append(record.value.decode())
        if len(delivered) == len(JUNK_HEADERS):
            break
    consumer.close()
    assert delivered == list(JUNK_HEADERS)
    processed = processed_records(captured)
    assert len(processed) == len(JUNK_HEADERS)
    assert len({event["contexts"]["trace"]["trace_id"] for event in processed}) == len(JUNK_HEADERS)
    for event in processed:
        assert event["contexts"]["trace"].get("parent_span_id") is None
        assert event["_dsc"]["trace_id"] == event["contexts"]["trace"]["trace_id"]


def test_duplicated_trace_headers_first_usable_value_wins(
    sentry_init: SentryInit, kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    first = "4f1c3a2b9d8e7f6a5b4c3d2e1f0a9b8c-1a2b3c4d5e6f7a8b-1"
    second = "0123456789abcdef0123456789abcdef-0123456789abcdef-1"
    headers = [("sentry-trace", b"junk"), ("sentry-trace", first.encode()), ("sentry-trace", second.encode())]
    raw_producer.send(topic, b"v", headers=headers).get(timeout=10)
    consumer = assigned_consumer(kafka_bootstrap, topic)
    for _record in busprop.kafka.traced_consumer(consumer):
        break
    consumer.close()
    trace = only(processed_records(captured))["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == tuple(first.split("-")[:2])


def test_unsampled_head_gives_no_consumer_transaction_and_forwards_minus_zero(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    first, second = new_topic(), new_topic()
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with sentry_sdk.start_transaction(name="head", sampled=False) as head:
        producer.send(first, b"order").get(timeout=10)
    consumer = assigned_consumer(kafka_bootstrap, first)
    for record in busprop.kafka.traced_consumer(consumer):
        span = sentry_sdk.get_current_span()  # a never-sampled transaction carries the head's "no"
        assert span is not None and span.sampled is False and span.trace_id == head.trace_id
        producer.send(second, record.value).get(timeout=10)
        break
    consumer.close()
    producer.close()
    forwarded = only(header_values(only(read_all(kafka_bootstrap, second, 1)), "sentry-trace")).decode()
    assert forwarded.startswith(f"{head.trace_id}-") and forwarded.endswith("-0")
    assert captured.transactions() == []


# --- separate processes, a consumer group --------------------------------------------------------


def test_thousand_records_of_fifty_traces_across_processes_in_a_consumer_group(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    traces, per_trace = 50, 20
    topic, group = new_topic(partitions=4), f"group-{uuid.uuid4().hex[:8]}"
    consumer_capture, producer_capture = tmp_path / "consumer.json", tmp_path / "producer.json"
    consumer = start_app(
        "kafka_consumer", kafka_bootstrap, topic, group, str(traces * per_trace), str(consumer_capture)
    )
    try:
        run_app("kafka_producer", kafka_bootstrap, topic, str(traces), str(per_trace), str(producer_capture))
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
        trace_of_head[head["transaction"]] = head["contexts"]["trace"]["trace_id"]
        trace_of_span.update({span["span_id"]: span["trace_id"] for span in spans})

    processed = read_captured(consumer_capture)["transactions"]
    assert len(processed) == traces * per_trace
    parents = [event["contexts"]["trace"]["parent_span_id"] for event in processed]
    assert sorted(parents) == sorted(trace_of_span)  # every record once, each under its own publish span
    parent_of_process_span = {}
    for event in processed:
        trace = event["contexts"]["trace"]
        assert is_processed(event)
        assert trace["trace_id"] == trace_of_span[trace["parent_span_id"]]
        assert process_span(event)["data"]["messaging.consumer.group.name"] == group
        assert event["_dsc"]["trace_id"] == trace["trace_id"]  # the head's frozen baggage
        parent_of_process_span[process_span(event)["span_id"]] = trace["parent_span_id"]
    assert len({event["contexts"]["trace"]["trace_id"] for event in processed}) == traces

    seen = json.loads(stdout)
    assert len(seen) == traces * per_trace
    for value, trace_id, span_id in seen:  # the loop body ran inside the record's queue.process span
        assert trace_id == trace_of_head[f"order-{value.split(':')[0]}"]
        assert trace_of_span[parent_of_process_span[span_id]] == trace_id
    assert len({span_id for _, _, span_id in seen}) == traces * per_trace


# --- poll() batches ------------------------------------------------------------------------------


def poll_all(consumer: KafkaConsumer, count: int) -> dict[Any, list[Any]]:
    """Merge ``poll()`` results until ``count`` records arrived (a batch as poll returns it)."""
    batch: dict[Any, list[Any]] = {}
    for _attempt in range(50):
        for partition, records in consumer.poll(timeout_ms=200).items():
            batch.setdefault(partition, []).extend(records)
        if sum(len(records) for records in batch.values()) >= count:
            return batch
    raise AssertionError(f"fewer than {count} records arrived")


def produce_heads(bootstrap: str, topic: str, heads: list[tuple[str, bool]], per_head: int) -> dict[str, str]:
    """Each head (name, sampled) sends ``per_head`` records; returns the trace id of each head."""
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=bootstrap))
    trace_ids = {}
    for name, sampled in heads:
        with sentry_sdk.start_transaction(name=name, sampled=sampled) as head:
            for index in range(per_head):
                producer.send(topic, f"{name}:{index}".encode())
        trace_ids[name] = head.trace_id
    producer.close()
    return trace_ids


def test_poll_batch_with_one_trace_per_record(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic(partitions=2)
    trace_ids = produce_heads(kafka_bootstrap, topic, [("a", True), ("b", True), ("c", True)], 2)
    consumer = assigned_consumer(kafka_bootstrap, topic, partitions=2)
    batch = poll_all(consumer, 6)
    seen, span_ids = [], []
    with busprop.kafka.traced_records(batch, group_id="batch-group") as records:
        for record in records:
            trace_id, _parent, span_id = in_body()
            seen.append((record.value.decode().split(":")[0], trace_id))
            span_ids.append(span_id)
    consumer.close()
    assert sorted(seen) == sorted((head, trace_ids[head]) for head in "aabbcc")
    processed = processed_records(captured)
    assert len(processed) == 6
    assert sorted(span_ids) == sorted(process_span(event)["span_id"] for event in processed)
    assert {process_span(event)["data"]["messaging.consumer.group.name"] for event in processed} == {
        "batch-group"
    }


def test_batch_mode_one_transaction_with_a_span_per_record(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    produce_heads(kafka_bootstrap, topic, [("sampled", True), ("unsampled", False)], 3)
    records_on_broker = read_all(kafka_bootstrap, topic, 6)
    producer_traces = {
        record.offset: only(header_values(record, "sentry-trace")).decode().split("-")
        for record in records_on_broker
    }
    captured_heads = len(captured.transactions())
    consumer = assigned_consumer(kafka_bootstrap, topic, group_id=None)
    batch = poll_all(consumer, 6)
    inside = []
    with busprop.kafka.process_batch(batch, consumer=consumer, name="orders batch") as records:
        for record in records:
            span = sentry_sdk.get_current_span()
            assert span is not None
            inside.append((record.offset, span.op, span.span_id))
    consumer.close()
    transaction = only(captured.transactions()[captured_heads:])
    trace = transaction["contexts"]["trace"]
    assert (trace["op"], transaction["transaction"], trace["status"]) == (sdk.OP_TASK, "orders batch", "ok")
    assert trace["data"]["messaging.batch.message_count"] == 6
    assert trace["trace_id"] not in {parts[0] for parts in producer_traces.values()}  # a trace of its own
    assert {span["op"] for span in transaction["spans"]} == {"queue.process"}  # one per record, nothing else
    spans = sorted(transaction["spans"], key=lambda span: span["data"]["messaging.kafka.offset"])
    assert inside == [(offset, "queue.process", span["span_id"]) for offset, span in enumerate(spans)]
    assert [span["data"]["messaging.message.id"] for span in spans] == [f"{topic}/0/{n}" for n in range(6)]
    for span in spans:
        trace_id, span_id, sampled = producer_traces[span["data"]["messaging.kafka.offset"]]
        assert span["parent_span_id"] == trace["span_id"]
        assert (span["description"], span["status"]) == (topic, "ok")
        assert span["data"]["busprop.link.trace_id"] == trace_id
        assert span["data"]["busprop.link.span_id"] == span_id
        assert span["data"]["busprop.link.sampled"] is (sampled == "1")
        assert span["data"]["messaging.destination.name"] == topic
        assert span["data"]["messaging.message.receive.latency"] >= 0
    assert all(
        earlier["timestamp"] <= later["start_timestamp"] for earlier, later in itertools.pairwise(spans)
    )


def test_batch_mode_exception_fails_the_batch_and_propagates(
    sentry_init: SentryInit, kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    for value in (b"ok", b"poison", b"never"):
        raw_producer.send(topic, value)
    raw_producer.flush()
    consumer = assigned_consumer(kafka_bootstrap, topic)
    batch = poll_all(consumer, 3)
    failure = RuntimeError("poison record")
    with pytest.raises(RuntimeError) as raised, busprop.kafka.process_batch(batch) as records:
        for record in records:
            if record.value == b"poison":
                raise failure
    consumer.close()
    assert raised.value is failure
    transaction = only(captured.transactions())
    assert (transaction["contexts"]["trace"]["op"], transaction["transaction"]) == (
        sdk.OP_TASK,
        f"batch {topic}",
    )
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert [(span["op"], span["status"]) for span in transaction["spans"]] == [
        ("queue.process", "ok"),
        ("queue.process", "internal_error"),
    ]
    assert only(captured.errors())["exception"]["values"][-1]["value"] == "poison record"


def test_unsampled_batch_costs_no_spans_and_delivers_every_record(
    sentry_init: SentryInit, kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=0.0)
    topic = new_topic()
    for value in (b"1", b"2", b"3"):
        raw_producer.send(topic, value)
    raw_producer.flush()
    consumer = assigned_consumer(kafka_bootstrap, topic)
    with busprop.kafka.process_batch(poll_all(consumer, 3)) as records:
        assert [record.value for record in records] == [b"1", b"2", b"3"]
    consumer.close()
    assert captured.transactions() == []


def test_an_empty_poll_creates_no_transaction(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """A consumer polling an idle topic sent one empty ``batch unknown`` transaction per poll."""
    captured = sentry_init(traces_sample_rate=1.0)
    consumer = assigned_consumer(kafka_bootstrap, new_topic())
    batch = consumer.poll(timeout_ms=200)
    consumer.close()
    assert batch == {}
    for empty in (batch, []):
        with busprop.kafka.process_batch(empty, consumer=consumer) as records:
            assert sentry_sdk.get_current_span() is None  # no transaction, not even an unsent one
            assert list(records) == []
    with pytest.raises(KeyError) as raised, busprop.kafka.process_batch({}):
        raise KeyError("the loop's own error")
    assert raised.value.args == ("the loop's own error",)
    assert captured.transactions() == []
    # nothing was processed: the error is the caller's to report (kafka-python's own log lines aside)
    assert [event for event in captured.errors() if "exception" in event] == []


# --- KafkaIntegration ----------------------------------------------------------------------------

ORIGINAL_SEND = KafkaProducer.send
ORIGINAL_NEXT = KafkaConsumer.__next__
ORIGINAL_CLOSE = KafkaConsumer.close


@pytest.fixture
def integration() -> Iterator[type[busprop.kafka.KafkaIntegration]]:
    yield busprop.kafka.KafkaIntegration
    busprop.kafka.KafkaIntegration.uninstall()


def test_integration_traces_unchanged_kafka_python_code(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    with sentry_sdk.start_transaction(name="head") as head:
        for value in (b"one", b"two"):
            producer.send(topic, value, headers=(("kept", b"1"),))
    producer.close()
    publish_span_ids = [span["span_id"] for span in publish_spans(only(captured.transactions()))]
    assert len(publish_span_ids) == 2

    consumer = assigned_consumer(kafka_bootstrap, topic, group_id=None)
    seen = []
    for record in consumer:
        seen.append((record.value, *in_body()))
        if len(seen) == 2:
            break
    assert len(processed_records(captured)) == 1  # the second record's ends when asked for more
    consumer.close()
    processed = processed_records(captured)
    assert len(processed) == 2
    assert seen == [
        (b"one", head.trace_id, publish_span_ids[0], process_span(processed[0])["span_id"]),
        (b"two", head.trace_id, publish_span_ids[1], process_span(processed[1])["span_id"]),
    ]
    assert sentry_sdk.get_current_span() is None  # nothing left open after close()


def test_integration_twice_and_with_the_wrappers_traces_once(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    patched_send, patched_next = KafkaProducer.send, KafkaConsumer.__next__
    assert patched_send is not ORIGINAL_SEND and patched_next is not ORIGINAL_NEXT
    busprop.kafka.install()
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert (KafkaProducer.send, KafkaConsumer.__next__) == (patched_send, patched_next)

    topic = new_topic()
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with sentry_sdk.start_transaction(name="head"):
        producer.send(topic, b"v").get(timeout=10)
    producer.close()
    assert len(publish_spans(only(captured.transactions()))) == 1
    record = only(read_all(kafka_bootstrap, topic, 1))  # a patched consumer: one transaction
    assert len(header_values(record, "sentry-trace")) == 1
    assert len(processed_records(captured)) == 1

    consumer = assigned_consumer(kafka_bootstrap, topic)
    with busprop.kafka.traced_consumer(consumer) as records:
        for _record in records:
            break
    consumer.close()
    assert len(processed_records(captured)) == 2  # not 3: the wrapper bypasses the patch


def test_integration_uninstall_restores_the_originals(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    integration.uninstall()
    assert KafkaProducer.send is ORIGINAL_SEND
    assert KafkaConsumer.__next__ is ORIGINAL_NEXT
    assert KafkaConsumer.close is ORIGINAL_CLOSE
    integration.uninstall()  # twice is harmless

    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    with sentry_sdk.start_transaction(name="head"):
        producer.send(topic, b"plain").get(timeout=10)
    producer.close()
    assert only(read_all(kafka_bootstrap, topic, 1)).headers == []
    assert publish_spans(only(captured.transactions())) == []

    sentry_init(traces_sample_rate=1.0, integrations=[integration()])  # can be installed again
    assert KafkaProducer.send is not ORIGINAL_SEND


def test_patched_methods_pass_through_for_a_client_without_the_integration(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    captured = sentry_init(traces_sample_rate=1.0)  # the patches stay, this client did not ask for them
    assert KafkaProducer.send is not ORIGINAL_SEND
    topic = new_topic()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    with sentry_sdk.start_transaction(name="head"):
        producer.send(topic, b"plain").get(timeout=10)
    producer.close()
    consumer = assigned_consumer(kafka_bootstrap, topic)
    assert next(consumer).headers == []
    consumer.close()
    assert [event["transaction"] for event in captured.transactions()] == ["head"]


# --- interoperability: Sentry's Node SDK (kafkajs) and OpenTelemetry -----------------------------

NODE_DIR = Path(__file__).resolve().parent / "node"


def run_node(script: str, *args: str) -> str:
    """Run ``tests/node/<script>`` under Sentry's import hook (so its kafkajs integration is active)."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@sentry" / "node").is_dir():
        message = "node and tests/node/node_modules are needed (./dev.sh installs them)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    result = subprocess.run(
        ["node", "--import", "@sentry/node/import", script, *args],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_records_from_sentrys_node_sdk_are_continued(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic()
    run_node("kafka_producer.mjs", kafka_bootstrap, topic, str(tmp_path / "node.json"))
    node_spans = read_captured(tmp_path / "node.json")["spans"]
    node_publish = only([span for span in node_spans if span["op"] == "queue.publish"])
    node_head = only([span for span in node_spans if span["name"] == "node-head"])

    captured = sentry_init(traces_sample_rate=0.0)  # the head's decision (sampled) must win
    consumer = assigned_consumer(kafka_bootstrap, topic)
    with busprop.kafka.traced_consumer(consumer) as records:
        for record in records:
            assert record.value == b"from-node"
            break
    consumer.close()
    event = only(processed_records(captured))
    assert event["contexts"]["trace"]["trace_id"] == node_head["trace_id"]
    assert event["contexts"]["trace"]["parent_span_id"] == node_publish["span_id"]
    node_baggage = dict(
        member.split("=", 1) for member in only(header_values(record, "baggage")).decode().split(",")
    )
    assert event["_dsc"]["sample_rand"] == node_baggage["sentry-sample_rand"]  # full precision kept
    assert event["_dsc"]["transaction"] == "node-head"  # Node's frozen baggage travels on


def test_records_from_busprop_are_continued_by_sentrys_node_sdk(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with sentry_sdk.start_transaction(name="python-head") as head:
        producer.send(topic, b"from-python", headers=[("sentry-trace", b"stale")]).get(timeout=10)
    producer.close()
    publish_span = only(publish_spans(only(captured.transactions())))

    group = f"node-{uuid.uuid4().hex[:8]}"
    seen = json.loads(
        run_node("kafka_consumer.mjs", kafka_bootstrap, topic, group, "1", str(tmp_path / "n.json"))
    )
    assert seen == [
        {"value": "from-python", "trace_id": head.trace_id, "parent_span_id": publish_span["span_id"]}
    ]
    node_process = only(
        [span for span in read_captured(tmp_path / "n.json")["spans"] if span["op"] == "queue.process"]
    )
    assert (node_process["trace_id"], node_process["parent_span_id"]) == (
        head.trace_id,
        publish_span["span_id"],
    )


def test_opentelemetry_traceparent_only_records_are_continued(
    sentry_init: SentryInit, kafka_bootstrap: str, raw_producer: KafkaProducer, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=0.0)
    topic = new_topic()
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    raw_producer.send(topic, b"otel", headers=[("traceparent", f"00-{trace_id}-{span_id}-01".encode())])
    raw_producer.flush()
    consumer = assigned_consumer(kafka_bootstrap, topic)
    with busprop.kafka.traced_consumer(consumer) as records:
        for _record in records:
            break
    consumer.close()
    trace = only(processed_records(captured))["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == (trace_id, span_id)


def test_write_traceparent_for_opentelemetry_consumers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(write_traceparent=True)
    topic = new_topic()
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=kafka_bootstrap))
    with sentry_sdk.start_transaction(name="head") as head:
        producer.send(topic, b"v", headers=[("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")])
    producer.close()
    record = only(read_all(kafka_bootstrap, topic, 1))
    sentry_trace = only(header_values(record, "sentry-trace")).decode()
    traceparent = only(header_values(record, "traceparent")).decode()  # replaced, not appended
    assert traceparent == f"00-{head.trace_id}-{sentry_trace.split('-')[1]}-01"


# --- demo leg ------------------------------------------------------------------------------------


def test_demo_leg_keeps_every_hop_in_one_trace(
    sentry_init: SentryInit, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from busprop.demo.legs import kafka as leg

    captured = sentry_init(traces_sample_rate=1.0)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    with sentry_sdk.start_transaction(op="demo", name="busprop demo") as root:
        assert leg.run() is None
    events = captured.transactions()
    processed = processed_records(captured)
    assert len(processed) == 2
    assert {event["contexts"]["trace"]["trace_id"] for event in events} == {root.trace_id}
    root_event = only([event for event in events if event["transaction"] == "busprop demo"])
    publish_ids = {span["span_id"] for span in publish_spans(root_event)}
    publish_ids |= {span["span_id"] for event in processed for span in publish_spans(event)}
    assert {event["contexts"]["trace"]["parent_span_id"] for event in processed} <= publish_ids
    forwarded = [(span, event) for event in processed for span in publish_spans(event)]
    assert len(forwarded) == 1  # the receipt, sent from inside the order's queue.process span
    assert all(span["parent_span_id"] == process_span(event)["span_id"] for span, event in forwarded)
