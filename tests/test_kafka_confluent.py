"""busprop.kafka with confluent-kafka against the real Kafka-protocol broker (Tansu, or ``KAFKA_BOOTSTRAP_SERVERS``).

Consumers read with ``assign()`` (no group join, which takes about half of ``session.timeout.ms``
with librdkafka on Tansu) except in the separate-process test, which is about a consumer group.
Every test uses its own topics, created with one partition so records come back in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
import sentry_sdk
from confluent_kafka import (
    OFFSET_BEGINNING,
    DeserializingConsumer,
    SerializingProducer,
    TopicPartition,
    cimpl,
)
from confluent_kafka.serialization import StringDeserializer, StringSerializer
from hypothesis import given
from hypothesis import strategies as st

import busprop.kafka
from busprop.kafka import _integration
from busprop.testing import LOCAL_DSN, CapturingTransport
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


@pytest.fixture
def integration() -> Iterator[type[busprop.kafka.KafkaIntegration]]:
    yield busprop.kafka.KafkaIntegration
    busprop.kafka.KafkaIntegration.uninstall()


def producer_of(bootstrap: str, kind: Callable[..., Any] = cimpl.Producer, **config: Any) -> Any:
    return kind({"bootstrap.servers": bootstrap, "linger.ms": 0, **config})


def configured_producer(form: str, bootstrap: str, on_delivery: Callable[..., Any], **config: Any) -> Any:
    """A producer of ``confluent_kafka`` (the integration's classes) with ``on_delivery`` configured
    in one of the ways the client reads it."""
    if form == "as a keyword":
        return producer_of(
            bootstrap, lambda conf: confluent_kafka.Producer(conf, on_delivery=on_delivery), **config
        )
    if form == "in default.topic.config":
        config["default.topic.config"] = {"on_delivery": on_delivery}
        return producer_of(bootstrap, confluent_kafka.Producer, **config)
    kind = SerializingProducer if form == "serializing" else confluent_kafka.Producer
    return producer_of(bootstrap, kind, on_delivery=on_delivery, **config)


CONFIGURED_FORMS = ["in the dict", "as a keyword", "in default.topic.config", "serializing"]


@contextlib.contextmanager
def assigned(bootstrap: str, topic: str, kind: Callable[..., Any] = cimpl.Consumer, **config: Any) -> Any:
    """A consumer reading ``topic`` (one partition) from the beginning, without joining a group."""
    consumer = kind({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}", **config})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        yield consumer
    finally:
        consumer.close()


def poll_messages(consumer: Any, count: int) -> list[Any]:
    """``count`` messages (not events), polled with a deadline."""
    messages: list[Any] = []
    for _ in range(200):
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            messages.append(message)
            if len(messages) == count:
                return messages
    raise AssertionError(f"only {len(messages)} of {count} messages arrived")


def read_raw(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The records as stored, read by a plain C consumer (never patched)."""
    with assigned(bootstrap, topic) as consumer:
        return poll_messages(consumer, count)


def values_of(message: Any, key: str) -> list[Any]:
    return [value for name, value in message.headers() or [] if name == key]


def trace_of(message: Any) -> tuple[str, str]:
    trace_id, span_id, *_ = only(values_of(message, "sentry-trace")).decode().split("-")
    return trace_id, span_id


# --- producer ------------------------------------------------------------------------------------

STALE = ("sentry-trace", b"0123456789abcdef0123456789abcdef-0123456789abcdef-1")

#: Each form a caller writes: (name, positional arguments after the topic, keywords, user headers).
#: The delivery callback is given as ``CALLBACK``: replaced per call by a recording function.
CALLBACK = object()
FORMS: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = [
    ("keywords", (), {"value": b"v", "key": b"k", "on_delivery": CALLBACK, "headers": []}, []),
    (
        "all positional",
        (b"v", b"k", 0, CALLBACK, None, 0, [("a", b"1"), STALE, ("n", None), ("a", b"2")]),
        {},
        [("a", b"1"), STALE, ("n", None), ("a", b"2")],
    ),
    (
        "callback alias, dict headers",
        (b"v",),
        {"callback": CALLBACK, "headers": {"a": b"1", "n": None}},
        None,
    ),
    ("tuple headers", (b"v", None), {"headers": (("a", b"1"), STALE), "on_delivery": CALLBACK}, None),
]


@pytest.mark.parametrize("route", ["traced_producer", "integration"])
@pytest.mark.parametrize(("form", "args", "kwargs", "_headers"), FORMS, ids=[form[0] for form in FORMS])
def test_every_produce_form_writes_the_trace_once_and_keeps_the_users_headers(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
    route: str,
    form: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    _headers: Any,
) -> None:
    if route == "integration":
        captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
        producer = producer_of(kafka_bootstrap, confluent_kafka.Producer)
        assert type(producer) is not cimpl.Producer  # the integration's subclass
    else:
        captured = sentry_init(traces_sample_rate=1.0)
        producer = busprop.kafka.traced_producer(producer_of(kafka_bootstrap))
    topic = new_topic()
    delivered: list[tuple[Any, Any]] = []

    def callback(error: Any, message: Any) -> None:
        delivered.append((error, message))

    args = tuple(callback if value is CALLBACK else value for value in args)
    kwargs = {name: callback if value is CALLBACK else value for name, value in kwargs.items()}
    given_headers = args[-1] if len(args) == 7 else kwargs.get("headers")
    before = repr(given_headers)
    with sentry_sdk.start_transaction(name="head") as head:
        producer.produce(topic, *args, **kwargs)
        assert producer.flush(10) == 0
    assert repr(given_headers) == before  # the caller's container is untouched

    error, reported = only(delivered)  # the user's callback, once, with the client's arguments
    assert error is None and reported.topic() == topic and reported.offset() == 0
    span = only(publish_spans(only(captured.transactions())))
    assert span["data"]["messaging.message.id"] == f"{topic}/0/0"
    assert span["data"]["messaging.destination.partition.id"] == "0"
    assert span["data"]["messaging.message.body.size"] == 1
    assert (span["op"], span["status"], span["origin"]) == ("queue.publish", "ok", "auto.queue.busprop.kafka")

    message = only(read_raw(kafka_bootstrap, topic, 1))
    assert message.value() == b"v"
    assert trace_of(message) == (head.trace_id, span["span_id"])
    assert f"sentry-trace_id={head.trace_id}".encode() in only(values_of(message, "baggage"))
    user = [(name, value) for name, value in message.headers() if name not in ("sentry-trace", "baggage")]
    expected_user = (
        list(given_headers.items()) if isinstance(given_headers, dict) else list(given_headers or [])
    )
    assert user == [pair for pair in expected_user if pair[0] != "sentry-trace"]


def test_callback_wins_over_on_delivery_and_either_over_the_configured_one_as_in_the_client(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    """confluent-kafka calls ``callback`` when both are given (``on_delivery`` is its alias), and
    the producer's configured ``on_delivery`` only for a record given neither."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    called: list[str] = []
    producer = configured_producer("in the dict", kafka_bootstrap, lambda *_: called.append("configured"))
    with sentry_sdk.start_transaction(name="head"):
        producer.produce(
            topic,
            b"v",
            callback=lambda *_: called.append("callback"),
            on_delivery=lambda *_: called.append("on_delivery"),
        )
        producer.produce(
            topic, b"v", None, -1, lambda *_: called.append("fifth"), lambda *_: called.append("sixth")
        )
        producer.produce(topic, b"v")
        producer.flush(10)
    assert called == ["callback", "fifth", "configured"]
    spans = publish_spans(only(captured.transactions()))  # busprop watched the callback that ran
    assert [span["data"]["messaging.message.id"] for span in spans] == [f"{topic}/0/{n}" for n in range(3)]


def test_serializing_producer_traces_each_record_once_in_its_own_argument_order(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    """``SerializingProducer`` subclasses the C Producer and orders ``key`` before ``value``."""
    plain = SerializingProducer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "key.serializer": StringSerializer(),
            "value.serializer": StringSerializer(),
        }
    )
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    patched = SerializingProducer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "key.serializer": StringSerializer(),
            "value.serializer": StringSerializer(),
        }
    )
    delivered: list[Any] = []
    with sentry_sdk.start_transaction(name="head") as head:
        patched.produce(
            topic, "key-1", "value-1", headers={"a": b"1"}, on_delivery=lambda *a: delivered.append(a)
        )
        patched.flush(10)
        busprop.kafka.traced_producer(plain).produce(topic, "key-2", "value-2")
        plain.flush(10)
    spans = publish_spans(only(captured.transactions()))
    assert len(spans) == 2  # one each: the C produce underneath is not traced again
    assert len(delivered) == 1  # the user's callback, once; busprop's report on the span first
    assert spans[0]["data"]["messaging.message.id"] == f"{topic}/0/0"
    messages = read_raw(kafka_bootstrap, topic, 2)
    assert [(m.key(), m.value()) for m in messages] == [(b"key-1", b"value-1"), (b"key-2", b"value-2")]
    assert [trace_of(m) for m in messages] == [(head.trace_id, span["span_id"]) for span in spans]
    assert messages[0].headers()[0] == ("a", b"1")


@pytest.mark.parametrize("rate", [1.0, 0.0], ids=["sampled", "unsampled"])
def test_delivery_failure_is_reported_in_the_sends_trace(sentry_init: SentryInit, rate: float) -> None:
    """An unsampled send has no span to describe: its delivery callback still reports a failure
    (without a callback nothing watches the send, as documented)."""
    captured = sentry_init(traces_sample_rate=rate)
    unreachable = busprop.kafka.traced_producer(
        producer_of("127.0.0.1:9", **{"message.timeout.ms": 300, "log_level": 0})
    )
    reported: list[Any] = []
    with sentry_sdk.start_transaction(name="head") as head:
        unreachable.produce("doomed", b"lost", on_delivery=lambda error, message: reported.append(error))
        unreachable.flush(10)
    error = only(reported)  # the user's callback still runs, once, with the client's error
    assert error is not None and error.code() == confluent_kafka.KafkaError._MSG_TIMED_OUT
    event = only([event for event in captured.errors() if "exception" in event])
    value = event["exception"]["values"][-1]
    assert value["type"] == "KafkaException"
    assert value["mechanism"] == {"type": "busprop.kafka.delivery", "handled": True}
    assert event["contexts"]["trace"]["trace_id"] == head.trace_id
    if rate == 0.0:
        assert captured.transactions() == []
        assert event["contexts"]["trace"]["span_id"] == head.span_id  # the send's current span
        return
    span = only(publish_spans(only(captured.transactions())))
    assert span["status"] == "internal_error"
    assert event["contexts"]["trace"]["span_id"] == span["span_id"]


@pytest.mark.parametrize(
    ("form", "wrapped"), [(form, False) for form in CONFIGURED_FORMS] + [("in the dict", True)]
)
def test_a_produce_without_a_callback_is_watched_through_the_configured_on_delivery(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
    form: str,
    wrapped: bool,
) -> None:
    """The client calls the producer's configured ``on_delivery`` for a record produced without a
    callback: busprop reports through it (the id on the span), and it runs once, as before; also
    through ``traced_producer`` around such a producer."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    delivered: list[tuple[Any, Any]] = []
    producer = configured_producer(form, kafka_bootstrap, lambda *report: delivered.append(report))
    with sentry_sdk.start_transaction(name="head") as head:
        (busprop.kafka.traced_producer(producer) if wrapped else producer).produce(topic, value=b"v")
        assert producer.flush(10) == 0
    error, message = only(delivered)
    assert error is None and (message.topic(), message.offset()) == (topic, 0)
    span = only(publish_spans(only(captured.transactions())))
    assert span["data"]["messaging.message.id"] == f"{topic}/0/0"
    assert span["status"] == "ok"
    assert trace_of(only(read_raw(kafka_bootstrap, topic, 1))) == (head.trace_id, span["span_id"])


@pytest.mark.parametrize("rate", [1.0, 0.0], ids=["sampled", "unsampled"])
def test_a_failure_reaches_the_configured_on_delivery_and_is_reported_in_the_sends_trace(
    sentry_init: SentryInit, integration: type[busprop.kafka.KafkaIntegration], rate: float
) -> None:
    captured = sentry_init(traces_sample_rate=rate, integrations=[integration()])
    reported: list[Any] = []
    unreachable = configured_producer(
        "in the dict",
        "127.0.0.1:9",
        lambda error, message: reported.append(error),
        **{"message.timeout.ms": 300, "log_level": 0},
    )
    with sentry_sdk.start_transaction(name="head") as head:
        unreachable.produce("doomed", b"lost")
        unreachable.flush(10)
    assert only(reported).code() == confluent_kafka.KafkaError._MSG_TIMED_OUT
    event = only([event for event in captured.errors() if "exception" in event])
    assert event["exception"]["values"][-1]["mechanism"] == {
        "type": "busprop.kafka.delivery",
        "handled": True,
    }
    assert event["contexts"]["trace"]["trace_id"] == head.trace_id
    if rate == 1.0:
        span = only(publish_spans(only(captured.transactions())))
        assert (span["status"], event["contexts"]["trace"]["span_id"]) == ("internal_error", span["span_id"])


def test_a_producer_made_before_the_integration_keeps_its_configured_on_delivery_unwatched(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    """Its configuration was never seen: busprop gives its records no callback (one would silence
    the configured one), so the client calls that one, and the span has no id."""
    called: list[Any] = []
    early = producer_of(kafka_bootstrap, on_delivery=lambda error, message: called.append(message.offset()))
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    with sentry_sdk.start_transaction(name="head"):
        busprop.kafka.traced_producer(early).produce(topic, b"v")
        early.flush(10)
    assert called == [0]
    span = only(publish_spans(only(captured.transactions())))
    assert "messaging.message.id" not in span["data"]


def test_traced_producer_without_tracing_carries_the_scopes_trace_into_the_loop_body(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=None)
    topic = new_topic()
    producer = busprop.kafka.traced_producer(producer_of(kafka_bootstrap))
    producer.produce(topic, b"x")
    assert producer.flush(10) == 0
    trace_id = sentry_sdk.get_current_scope().get_active_propagation_context().trace_id
    with assigned(kafka_bootstrap, topic) as consumer:
        for message in busprop.kafka.traced_consumer(consumer):
            inside = sentry_sdk.get_current_scope().get_active_propagation_context()
            assert (inside.trace_id, inside.parent_span_id) == trace_of(message)  # not the outer context
            break
    assert trace_of(message)[0] == trace_id
    assert f"sentry-trace_id={trace_id}".encode() in only(values_of(message, "baggage"))
    assert captured.transactions() == []


def test_destination_outside_propagation_targets_gets_no_headers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=["^payments$"])
    topic = new_topic()
    producer = busprop.kafka.traced_producer(producer_of(kafka_bootstrap))
    with sentry_sdk.start_transaction(name="head"):
        producer.produce(topic, b"x", headers=[("kept", b"1")])
        assert producer.flush(10) == 0
    assert only(read_raw(kafka_bootstrap, topic, 1)).headers() == [("kept", b"1")]
    span = only(publish_spans(only(captured.transactions())))  # the send itself is still traced
    assert span["data"]["messaging.destination.name"] == topic


# --- consumer: poll() under the integration, the wrappers on existing consumers --------------------


def produce_traced(bootstrap: str, topic: str, values: list[bytes]) -> tuple[str, list[str]]:
    """Send ``values`` inside one sampled transaction; its trace id and the publish span ids."""
    producer = busprop.kafka.traced_producer(producer_of(bootstrap))
    with sentry_sdk.start_transaction(name="head") as head:
        for value in values:
            producer.produce(topic, value, key=b"k")
        producer.flush(10)
    return head.trace_id, [trace_of(message)[1] for message in read_raw(bootstrap, topic, len(values))]


def test_poll_continues_each_records_trace_until_the_next_poll(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"one", b"two"])
    seen = []
    with assigned(
        kafka_bootstrap, topic, confluent_kafka.Consumer, **{"enable.partition.eof": True}
    ) as consumer:
        while len(seen) < 2:
            message = consumer.poll(0.2)
            if message is None:  # a timeout: nothing continued
                assert sentry_sdk.get_current_span() is None
                continue
            seen.append((message.value(), *in_body()))
        assert len(processed_records(captured)) == 1  # the second one's ends at the next poll
        while (message := consumer.poll(0.2)) is None:
            pass
        assert message.error() is not None  # the end-of-partition event: nothing continued for it
        assert sentry_sdk.get_current_span() is None
        assert len(processed_records(captured)) == 2
    processed = processed_records(captured)
    assert [event["contexts"]["trace"]["parent_span_id"] for event in processed] == publish_span_ids
    assert seen == [
        (b"one", trace_id, publish_span_ids[0], process_span(processed[0])["span_id"]),
        (b"two", trace_id, publish_span_ids[1], process_span(processed[1])["span_id"]),
    ]
    data = test_kafka.process_span(processed[0])["data"]
    assert data["messaging.message.id"] == f"{topic}/0/0"
    assert (data["messaging.kafka.offset"], data["messaging.message.body.size"]) == (0, 3)
    assert 0 <= data["messaging.message.receive.latency"] < 60_000
    assert sentry_sdk.get_current_span() is None  # close() left nothing open


def test_traced_consumer_on_a_consumer_created_before_init(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    with assigned(kafka_bootstrap, topic, **{"enable.partition.eof": True}) as consumer:
        captured = sentry_init(traces_sample_rate=1.0)
        trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"one", b"two"])
        seen = []
        with busprop.kafka.traced_consumer(consumer, group_id="billing") as messages:
            for message in messages:
                if message.error() is not None:  # the end-of-partition event: yielded, not traced
                    assert sentry_sdk.get_current_span() is None
                    break
                seen.append(in_body())
    processed = processed_records(captured)
    assert seen == [
        (trace_id, span_id, process_span(event)["span_id"])
        for span_id, event in zip(publish_span_ids, processed, strict=True)
    ]
    assert test_kafka.process_span(processed[0])["data"]["messaging.consumer.group.name"] == "billing"


def test_consume_lists_through_traced_records_and_process_batch(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"1", b"2", b"3"])
    with assigned(
        kafka_bootstrap, topic, confluent_kafka.Consumer, **{"enable.partition.eof": True}
    ) as consumer:
        first = poll_messages(consumer, 1)  # traced by the integration until the next call
        batch: list[Any] = []
        while not any(message.error() is not None for message in batch):
            batch += consumer.consume(10, timeout=1)
        assert len(processed_records(captured)) == 1  # consume() ended the poll()'s record, began none
        assert sentry_sdk.get_current_span() is None
        seen = []
        for message in busprop.kafka.traced_records(batch, consumer=consumer):
            if message.error() is None:
                seen.append(in_body()[:2])
            else:
                assert sentry_sdk.get_current_span() is None
        with busprop.kafka.process_batch(batch, name="settle") as records:
            assert len(list(records)) == len(batch)
    assert first[0].value() == b"1"
    assert seen == [(trace_id, span_id) for span_id in publish_span_ids[1:]]
    batch_event = only([event for event in captured.transactions() if event["transaction"] == "settle"])
    assert batch_event["contexts"]["trace"]["data"]["messaging.batch.message_count"] == 2  # not the event
    spans = [span for span in batch_event["spans"] if span["op"] == "queue.process"]
    assert [span["data"]["busprop.link.span_id"] for span in spans] == publish_span_ids[1:]


def test_loop_body_exception_marks_failed_and_propagates_unchanged(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"v"])
    failure = LookupError("no such order")
    with assigned(kafka_bootstrap, topic) as consumer:
        with pytest.raises(LookupError) as raised, busprop.kafka.traced_consumer(consumer) as records:
            for _message in records:
                raise failure
        assert sentry_sdk.get_current_span() is None  # ended at the block's end, not at close()
    assert raised.value is failure
    transaction = only(processed_records(captured))
    trace = transaction["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == (trace_id, publish_span_ids[0])
    assert trace["status"] == "internal_error"
    error = only([event for event in captured.errors() if "exception" in event])
    assert error["exception"]["values"][-1]["value"] == "no such order"
    assert error["exception"]["values"][-1]["mechanism"] == {"type": "busprop.kafka", "handled": False}
    assert error["contexts"]["trace"]["trace_id"] == trace_id
    assert error["contexts"]["trace"]["span_id"] == process_span(transaction)["span_id"]


@pytest.mark.filterwarnings("ignore:.*send_default_pii.* deprecated")
@pytest.mark.parametrize(("options", "collected"), test_kafka.KEY_COLLECTION)
def test_record_key_only_with_send_default_pii(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    options: dict[str, Any],
    collected: bool,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, **options)
    topic = new_topic()
    raw = producer_of(kafka_bootstrap)
    raw.produce(topic, b"v", key=b"customer-7")
    assert raw.flush(10) == 0
    with assigned(kafka_bootstrap, topic) as consumer:
        for _message in busprop.kafka.traced_consumer(consumer):
            break
    data = test_kafka.process_span(only(processed_records(captured)))["data"]
    assert data.get("messaging.kafka.message.key") == ("customer-7" if collected else None)


@pytest.mark.parametrize("route", ["wrappers", "integration"])
def test_an_empty_consume_creates_no_transaction(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
    route: str,
) -> None:
    """A consumer polling an idle topic must not send one empty transaction per ``consume()``."""
    if route == "integration":
        captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    else:
        captured = sentry_init(traces_sample_rate=1.0)
    with assigned(kafka_bootstrap, new_topic(), confluent_kafka.Consumer) as consumer:
        batch = consumer.consume(num_messages=10, timeout=0.2)
        assert batch == []
        with busprop.kafka.process_batch(batch, consumer=consumer) as records:
            assert sentry_sdk.get_current_span() is None  # no transaction, not even an unsent one
            assert list(records) == []
        assert list(busprop.kafka.traced_records(batch, consumer=consumer)) == []
        assert sentry_sdk.get_current_span() is None
    assert captured.transactions() == []
    assert captured.errors() == []


def test_deserializing_consumer_poll_is_traced_once(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"text"])
    with assigned(
        kafka_bootstrap, topic, DeserializingConsumer, **{"value.deserializer": StringDeserializer()}
    ) as consumer:
        message = None
        while message is None:
            message = consumer.poll(0.2)
        assert message.value() == "text"
        assert in_body()[:2] == (trace_id, publish_span_ids[0])
    assert len(processed_records(captured)) == 1


async def test_consumer_decorator_sync_and_async_handlers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    producer = busprop.kafka.traced_producer(producer_of(kafka_bootstrap))
    with sentry_sdk.start_transaction(name="head") as head:
        for value in (b"sync", b"async", b"bad"):
            producer.produce(topic, value)
        assert producer.flush(10) == 0
    messages = read_raw(kafka_bootstrap, topic, 3)
    seen: list[tuple[str, str | None, str]] = []

    @busprop.kafka.consumer
    def handle(message: Any) -> str:
        seen.append(in_body())
        return "handled"

    class Handlers:
        @busprop.kafka.consumer(group_id="async-group")
        async def handle(self, message: Any) -> None:  # after self: the decorator finds the record
            await asyncio.sleep(0)
            seen.append(in_body())
            if message.value() == b"bad":
                raise ValueError("bad record")

    assert handle(messages[0]) == "handled"
    await Handlers().handle(messages[1])
    with pytest.raises(ValueError, match="bad record"):
        await Handlers().handle(messages[2])
    parents = [trace_of(message)[1] for message in messages]
    test_kafka.check_decorated_handlers(captured, head.trace_id, parents, seen, topic)


def test_batch_mode_exception_fails_the_batch_and_an_unsampled_batch_delivers_every_record(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    raw = producer_of(kafka_bootstrap)
    for value in (b"ok", b"poison", b"never"):
        raw.produce(topic, value)
    assert raw.flush(10) == 0
    # sentry-sdk's DedupeIntegration keeps the last exception it saw in a context variable, and with
    # it this frame: without this, the producer would outlive the session's broker and log its retries.
    del raw
    with assigned(kafka_bootstrap, topic) as consumer:
        batch: list[Any] = []
        while len(batch) < 3:
            batch += consumer.consume(3, timeout=1)
        test_kafka.check_batch_failure_then_unsampled_delivery(
            sentry_init, batch, topic, consumer, lambda message: message.value()
        )


# --- the asyncio consumer (confluent_kafka.aio) --------------------------------------------------


@contextlib.asynccontextmanager
async def aio_assigned(bootstrap: str, topic: str, kind: Any = None, **config: Any) -> Any:
    """An ``AIOConsumer`` (or ``kind``) reading ``topic`` from the beginning, without joining a group."""
    from confluent_kafka.aio import AIOConsumer

    consumer = (kind or AIOConsumer)(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}", **config}
    )
    if inspect.isawaitable(consumer):  # AsyncDeserializingConsumer is constructed with ``await``
        consumer = await consumer
    await consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        yield consumer
    finally:
        await consumer.close()


async def aio_poll_message(consumer: Any) -> Any:
    """The next message or event, ``None`` polls left out (each asserted to start nothing)."""
    for _ in range(200):
        message = await consumer.poll(0.1)
        if message is not None:
            return message
        assert sentry_sdk.get_current_span() is None
    raise AssertionError("nothing arrived")


async def test_aio_consumer_poll_runs_each_body_in_its_messages_trace_in_the_awaiting_task(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    """``AIOConsumer`` runs ``Consumer.poll`` on an executor thread: the message's processing is
    started in the task that awaited ``poll()``, once (the wrapped consumer's poll passes through),
    and lasts until that task's next ``poll()``; an end-of-partition event starts nothing."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"one", b"two"])
    seen = []
    async with aio_assigned(kafka_bootstrap, topic, **{"enable.partition.eof": True}) as consumer:
        for _ in range(2):
            message = await aio_poll_message(consumer)
            await asyncio.sleep(0)  # the body may await: still the message's trace
            seen.append((message.value(), *in_body()))
        assert len(processed_records(captured)) == 1  # the second one's ends at the next poll
        event = await aio_poll_message(consumer)
        assert event.error() is not None and sentry_sdk.get_current_span() is None
        assert len(processed_records(captured)) == 2
    processed = processed_records(captured)
    assert len(processed) == 2  # once each, not again on the executor thread
    assert [event["contexts"]["trace"]["parent_span_id"] for event in processed] == publish_span_ids
    assert seen == [
        (b"one", trace_id, publish_span_ids[0], process_span(processed[0])["span_id"]),
        (b"two", trace_id, publish_span_ids[1], process_span(processed[1])["span_id"]),
    ]
    assert test_kafka.process_span(processed[0])["data"]["messaging.message.id"] == f"{topic}/0/0"


async def test_aio_consumers_in_concurrent_tasks_never_mix_traces(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topics = [new_topic(), new_topic()]
    heads = [produce_traced(kafka_bootstrap, topic, [b"a", b"b", b"c"])[0] for topic in topics]

    async def read(topic: str) -> list[str]:
        trace_ids = []
        async with aio_assigned(kafka_bootstrap, topic) as consumer:
            while len(trace_ids) < 3:
                message = await aio_poll_message(consumer)
                assert message.error() is None
                trace_id = in_body()[0]
                for _ in range(3):
                    await asyncio.sleep(0.01)  # the other task polls and processes meanwhile
                    assert in_body()[0] == trace_id
                trace_ids.append(trace_id)
        return trace_ids

    results = await asyncio.gather(*(read(topic) for topic in topics))
    assert results == [[heads[0]] * 3, [heads[1]] * 3]
    assert sorted(event["contexts"]["trace"]["trace_id"] for event in processed_records(captured)) == sorted(
        heads * 3
    )
    assert sentry_sdk.get_current_span() is None


async def test_async_deserializing_consumer_and_an_aio_consumer_made_before_init_trace_once(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    from confluent_kafka.aio import AsyncDeserializingConsumer

    topic = new_topic()
    async with aio_assigned(kafka_bootstrap, topic) as made_before:
        captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
        trace_id, publish_span_ids = produce_traced(kafka_bootstrap, topic, [b"text"])
        await aio_poll_message(made_before)  # its class's poll is patched in place
        assert in_body()[:2] == (trace_id, publish_span_ids[0])
    assert sentry_sdk.get_current_span() is None  # close() ended it
    assert len(processed_records(captured)) == 1
    async with aio_assigned(
        kafka_bootstrap, topic, AsyncDeserializingConsumer, **{"value.deserializer": StringDeserializer()}
    ) as deserializing:
        message = await aio_poll_message(deserializing)
        assert message.value() == "text"
        assert in_body()[:2] == (trace_id, publish_span_ids[0])
    assert len(processed_records(captured)) == 2  # once per consumer


async def test_aio_consumer_patches_are_removed_on_uninstall(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    from confluent_kafka.aio import AIOConsumer

    originals = {name: AIOConsumer.__dict__[name] for name in ("__init__", "poll", "consume", "close")}
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert all(AIOConsumer.__dict__[name] is not original for name, original in originals.items())
    integration.uninstall()
    assert {name: AIOConsumer.__dict__[name] for name in originals} == originals
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    produce_traced(kafka_bootstrap, topic, [b"plain"])
    async with aio_assigned(kafka_bootstrap, topic) as consumer:
        await aio_poll_message(consumer)
        assert sentry_sdk.get_current_span() is None
    assert processed_records(captured) == []


# --- what arrives: junk, duplicated and generated trace headers, unsampled heads ------------------


def test_junk_and_duplicated_trace_headers(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    first = "4f1c3a2b9d8e7f6a5b4c3d2e1f0a9b8c-1a2b3c4d5e6f7a8b-1"
    duplicated = [
        ("sentry-trace", None),
        ("sentry-trace", b"junk"),
        ("sentry-trace", first.encode()),
        ("sentry-trace", b"0" * 32),
    ]
    cases = {**JUNK_HEADERS, "duplicated": duplicated}
    raw = producer_of(kafka_bootstrap)
    for name, headers in cases.items():
        raw.produce(topic, name.encode(), headers=headers)
    raw.flush(10)
    delivered = []
    with assigned(kafka_bootstrap, topic) as consumer:
        for message in busprop.kafka.traced_consumer(consumer):
            delivered.append(message.value().decode())
            if len(delivered) == len(cases):
                break
    assert delivered == list(cases)
    *junk, last = processed_records(captured)
    assert len({event["contexts"]["trace"]["trace_id"] for event in junk}) == len(JUNK_HEADERS)
    assert all(event["contexts"]["trace"].get("parent_span_id") is None for event in junk)
    trace = last["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == tuple(first.split("-")[:2])


def test_generated_trace_headers_from_the_broker(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Hypothesis: records with generated (malformed, duplicated) trace headers, through confluent-kafka."""
    captured = sentry_init(traces_sample_rate=1.0)
    topic = new_topic()
    producer = producer_of(kafka_bootstrap, **{"linger.ms": 5})
    expectations: list[tuple[Expected, Seen]] = []
    message = st.tuples(pair_lists(trace_pair(wire_values), valid_pair(str.encode)), st.binary(max_size=300))
    keys = itertools.count()

    with assigned(kafka_bootstrap, topic) as consumer:

        @BROKER_SETTINGS
        @given(st.lists(message, min_size=BATCH // 2, max_size=BATCH))
        def check(batch: list[tuple[list[tuple[str, Any]], bytes]]) -> None:
            pending = {str(next(keys)).encode(): sent for sent in batch}
            for key, (headers, value) in pending.items():
                producer.produce(topic, value, key=key, headers=headers)
            producer.flush(10)
            deadline = time.monotonic() + 20
            for record in busprop.kafka.traced_consumer(consumer):
                assert time.monotonic() < deadline, f"{len(pending)} records never arrived"
                if record.error() is not None or record.key() not in pending:
                    continue  # left over from an example hypothesis stopped early
                headers, value = pending.pop(record.key())
                headers = [(key.split("\x00")[0], data) for key, data in headers]  # C strings
                seen = seen_now(record.value())
                assert seen.payload == value and (record.headers() or []) == headers
                expected = expected_trace(headers)
                check_trace(seen, expected, headers)
                expectations.append((expected, seen))
                if not pending:
                    break

        check()
    assert len(expectations) >= BROKER_BATCHES
    check_sent(captured, expectations, topic)


def test_unsampled_head_no_transaction_minus_zero_forwarded_and_http_carries_the_decision(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    hop_server: Any,
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    head = make_head(UNSAMPLED)
    first, second = new_topic(), new_topic()
    raw = producer_of(kafka_bootstrap)  # before init: the head's headers as given
    raw.produce(first, b"order", headers=head.kafka_headers)
    raw.flush(10)
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    producer = producer_of(kafka_bootstrap, confluent_kafka.Producer)
    with assigned(kafka_bootstrap, first, confluent_kafka.Consumer) as consumer:
        message = poll_messages(consumer, 1)[0]
        span = sentry_sdk.get_current_span()  # a never-sampled transaction carries the head's "no"
        assert span is not None and span.sampled is False and span.trace_id == head.trace_id
        seen = hop(hop_server.url("confluent"))
        producer.produce(second, message.value())
        producer.flush(10)
    forwarded = only(values_of(only(read_raw(kafka_bootstrap, second, 1)), "sentry-trace")).decode()
    assert forwarded.startswith(f"{head.trace_id}-") and forwarded.endswith("-0")
    assert_hop(hop_server, "confluent", seen, head, captured.transactions())
    assert captured.transactions() == []


# --- the integration: which objects, isinstance, uninstall, a client missing ------------------------


def test_integration_swaps_the_classes_keeps_isinstance_and_uninstall_restores(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    from confluent_kafka import Producer as imported_before  # the caveat: not reached

    before = producer_of(kafka_bootstrap, confluent_kafka.Producer)
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert confluent_kafka.Producer is not cimpl.Producer and confluent_kafka.Consumer is not cimpl.Consumer
    after = producer_of(kafka_bootstrap, confluent_kafka.Producer)
    old_name = producer_of(kafka_bootstrap, imported_before)
    for producer in (before, after, old_name, SerializingProducer({"bootstrap.servers": kafka_bootstrap})):
        assert isinstance(producer, confluent_kafka.Producer) and isinstance(producer, cimpl.Producer)
    assert issubclass(SerializingProducer, confluent_kafka.Producer)

    topic = new_topic()
    with sentry_sdk.start_transaction(name="head"):
        for producer in (before, old_name, after, busprop.kafka.traced_producer(before)):
            producer.produce(topic, b"v")
            producer.flush(10)
    traced = [bool(values_of(message, "sentry-trace")) for message in read_raw(kafka_bootstrap, topic, 4)]
    assert traced == [False, False, True, True]  # objects from the swapped name, and the wrapper
    assert len(publish_spans(only(captured.transactions()))) == 2

    integration.uninstall()
    assert confluent_kafka.Producer is cimpl.Producer and confluent_kafka.Consumer is cimpl.Consumer
    assert SerializingProducer.__dict__["produce"] is ORIGINAL_SERIALIZING_PRODUCE
    assert DeserializingConsumer.__dict__["poll"] is ORIGINAL_DESERIALIZING_POLL
    captured = sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="head"):
        after.produce(topic, b"plain")  # made while installed: its patch is switched off
        after.flush(10)
    assert values_of(read_raw(kafka_bootstrap, topic, 5)[-1], "sentry-trace") == []
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])  # can be installed again
    assert confluent_kafka.Producer is not cimpl.Producer


def test_integration_twice_and_with_the_wrappers_traces_once(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    swapped = (confluent_kafka.Producer, confluent_kafka.Consumer)
    assert swapped != (cimpl.Producer, cimpl.Consumer)
    busprop.kafka.install()
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert (confluent_kafka.Producer, confluent_kafka.Consumer) == swapped  # not a subclass of a subclass
    topic = new_topic()
    patched = producer_of(kafka_bootstrap, confluent_kafka.Producer)
    wrapped = busprop.kafka.traced_producer(patched)
    with sentry_sdk.start_transaction(name="head") as head:
        wrapped.produce(topic, b"wrapper")
        patched.produce(topic, b"patched")
        wrapped.produce(topic, b"wrapper again")
        assert patched.flush(10) == 0
    spans = publish_spans(only(captured.transactions()))
    assert len(spans) == 3  # one per produce: the wrapper's call passes the patch through
    messages = read_raw(kafka_bootstrap, topic, 3)
    assert [message.value() for message in messages] == [b"wrapper", b"patched", b"wrapper again"]
    assert [len(values_of(message, "sentry-trace")) for message in messages] == [1, 1, 1]
    assert [trace_of(message) for message in messages] == [(head.trace_id, span["span_id"]) for span in spans]
    with assigned(kafka_bootstrap, topic, confluent_kafka.Consumer) as consumer:
        for _message in busprop.kafka.traced_consumer(consumer):
            break
    assert len(processed_records(captured)) == 1  # not 2: the wrapper bypasses the patched poll()


def test_a_client_without_the_integration_sends_untouched_while_the_patches_are_installed(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    """The patched ``produce`` asks whether the current client has KafkaIntegration in the lookup
    it makes for the trace anyway; a scope bound to another client gets the library's own call."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    producer = producer_of(kafka_bootstrap, confluent_kafka.Producer)
    topic = new_topic()
    other = sentry_sdk.Client(LOCAL_DSN, transport=CapturingTransport, traces_sample_rate=1.0)
    with sentry_sdk.isolation_scope() as scope:
        scope.set_client(other)
        with sentry_sdk.start_transaction(name="elsewhere"):
            producer.produce(topic, b"plain", headers=[("kept", b"1")])
    with sentry_sdk.start_transaction(name="head"):
        producer.produce(topic, b"traced", headers=[("kept", b"2")])
    producer.flush(10)
    plain, traced = read_raw(kafka_bootstrap, topic, 2)
    assert plain.headers() == [("kept", b"1")]
    assert [name for name, _ in traced.headers()] == ["kept", "sentry-trace", "baggage"]
    elsewhere, head = captured.transactions()
    assert elsewhere["transaction"] == "elsewhere" and elsewhere["spans"] == []
    assert [span["op"] for span in head["spans"]] == ["queue.publish"]


ORIGINAL_SERIALIZING_PRODUCE = SerializingProducer.__dict__["produce"]
ORIGINAL_DESERIALIZING_POLL = DeserializingConsumer.__dict__["poll"]


def test_a_client_too_old_is_skipped_with_a_debug_log(
    sentry_init: SentryInit,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    monkeypatch.setattr(confluent_kafka, "__version__", "1.9.2")
    for name in ("confluent-kafka", "confluent-kafka serializing"):
        monkeypatch.delitem(_integration._PATCHES, name, raising=False)
    with caplog.at_level(logging.DEBUG, logger="busprop"):
        sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert confluent_kafka.Producer is cimpl.Producer
    assert SerializingProducer.__dict__["produce"] is ORIGINAL_SERIALIZING_PRODUCE
    assert "confluent-kafka not patched: confluent_kafka 1.9.2 is older than 2.2" in caplog.text
    assert "confluent-kafka serializing not patched: confluent_kafka 1.9.2" in caplog.text
    integration.uninstall()
    for name in ("confluent-kafka", "confluent-kafka serializing"):
        _integration._PATCHES.pop(name, None)  # built again, at today's version, by the next install


def test_a_missing_client_is_skipped_with_a_debug_log(
    sentry_init: SentryInit,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    for name in ("confluent-kafka", "confluent-kafka serializing"):
        monkeypatch.delitem(_integration._PATCHES, name, raising=False)
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import confluent_kafka raises ImportError
    with caplog.at_level(logging.DEBUG, logger="busprop"):
        captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    assert confluent_kafka.Producer is cimpl.Producer and confluent_kafka.Consumer is cimpl.Consumer
    assert SerializingProducer.__dict__["produce"] is ORIGINAL_SERIALIZING_PRODUCE
    assert DeserializingConsumer.__dict__["poll"] is ORIGINAL_DESERIALIZING_POLL
    assert "confluent-kafka not patched: import of confluent_kafka halted" in caplog.text
    assert "confluent-kafka serializing not patched: import of confluent_kafka halted" in caplog.text
    producer = producer_of("127.0.0.1:9", confluent_kafka.Producer, log_level=0)
    with sentry_sdk.start_transaction(name="head"):
        producer.produce("untraced", b"v")  # the library's own produce: no span
    producer.purge()
    assert only(captured.transactions())["spans"] == []
    integration.uninstall()
    for name in ("confluent-kafka", "confluent-kafka serializing"):
        _integration._PATCHES.pop(name, None)  # built again, with the library importable, by the next install


# --- threads, separate processes, Sentry's Node SDK, OpenTelemetry --------------------------------


def test_threads_sharing_a_producer_and_each_polling_never_mix_traces(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    producer = producer_of(kafka_bootstrap, confluent_kafka.Producer, **{"linger.ms": 5})
    threads, per_thread = 4, 10
    topics = [new_topic() for _ in range(threads)]
    heads: dict[int, str] = {}
    seen: dict[int, list[tuple[str, str | None]]] = {}
    errors: list[BaseException] = []

    def produce(index: int) -> None:
        with sentry_sdk.start_transaction(name=f"head-{index}") as head:
            heads[index] = head.trace_id
            for number in range(per_thread):
                producer.produce(topics[index], f"{index}:{number}".encode())

    def consume(index: int) -> None:
        try:
            with assigned(kafka_bootstrap, topics[index], confluent_kafka.Consumer) as consumer:
                seen[index] = []
                while len(seen[index]) < per_thread:
                    message = consumer.poll(0.2)
                    if message is not None and message.error() is None:
                        assert message.value().decode().startswith(f"{index}:")
                        seen[index].append(in_body()[:2])
        except BaseException as error:
            errors.append(error)

    for target in (produce, consume):
        workers = [threading.Thread(target=target, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        if target is produce:
            for worker in workers:
                worker.join()
            producer.flush(10)
        else:
            for worker in workers:
                worker.join(60)
    assert errors == []
    spans_of = {
        event["contexts"]["trace"]["trace_id"]: {span["span_id"] for span in publish_spans(event)}
        for event in captured.transactions()
        if event["transaction"].startswith("head-")
    }
    for index in range(threads):
        assert len(seen[index]) == per_thread
        assert {trace_id for trace_id, _ in seen[index]} == {heads[index]}
        assert {parent for _, parent in seen[index]} == spans_of[heads[index]]


def test_many_traces_across_processes_in_a_consumer_group(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    traces, per_trace = 20, 10
    topic, group = new_topic(), f"group-{uuid.uuid4().hex[:8]}"
    consumer_capture, producer_capture = tmp_path / "consumer.json", tmp_path / "producer.json"
    consumer = start_app(
        "confluent_consumer", kafka_bootstrap, topic, group, str(traces * per_trace), str(consumer_capture)
    )
    try:
        run_app(
            "confluent_producer", kafka_bootstrap, topic, str(traces), str(per_trace), str(producer_capture)
        )
        stdout, stderr = consumer.communicate(timeout=90)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, stderr

    trace_of_span, trace_of_head = {}, {}
    for head in read_captured(producer_capture)["transactions"]:
        spans = publish_spans(head)
        assert len(spans) == per_trace
        assert all(span["data"]["messaging.message.id"].startswith(f"{topic}/0/") for span in spans)
        trace_of_head[head["transaction"]] = head["contexts"]["trace"]["trace_id"]
        trace_of_span.update({span["span_id"]: span["trace_id"] for span in spans})
    assert len(trace_of_head) == traces

    processed = read_captured(consumer_capture)["transactions"]
    assert len(processed) == traces * per_trace
    parent_of_process_span = {}
    for event in processed:
        trace = event["contexts"]["trace"]
        assert is_processed(event)
        assert trace["trace_id"] == trace_of_span[trace["parent_span_id"]]
        assert event["_dsc"]["trace_id"] == trace["trace_id"]  # the head's frozen baggage
        parent_of_process_span[process_span(event)["span_id"]] = trace["parent_span_id"]
    assert sorted(parent_of_process_span.values()) == sorted(trace_of_span)  # each record once

    seen = json.loads(stdout)
    assert len(seen) == traces * per_trace
    for value, trace_id, span_id in seen:  # the loop body ran inside the record's queue.process span
        assert trace_id == trace_of_head[f"order-{value.split(':')[0]}"]
        assert trace_of_span[parent_of_process_span[span_id]] == trace_id


def test_records_from_sentrys_node_sdk_are_continued(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    topic = new_topic()
    run_node("kafka_producer.mjs", kafka_bootstrap, topic, str(tmp_path / "node.json"))
    node_spans = read_captured(tmp_path / "node.json")["spans"]
    node_publish = only([span for span in node_spans if span["op"] == "queue.publish"])
    node_head = only([span for span in node_spans if span["name"] == "node-head"])

    captured = sentry_init(traces_sample_rate=0.0, integrations=[integration()])  # the head's decision wins
    with assigned(kafka_bootstrap, topic, confluent_kafka.Consumer) as consumer:
        message = poll_messages(consumer, 1)[0]
        assert message.value() == b"from-node"
        assert dict(message.headers())["x-other"] == b"kept"
    event = only(processed_records(captured))
    assert event["contexts"]["trace"]["trace_id"] == node_head["trace_id"]
    assert event["contexts"]["trace"]["parent_span_id"] == node_publish["span_id"]
    assert event["_dsc"]["transaction"] == "node-head"  # Node's frozen baggage travels on


def test_records_from_busprop_are_continued_by_sentrys_node_sdk(
    sentry_init: SentryInit,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    integration: type[busprop.kafka.KafkaIntegration],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    topic = new_topic()
    producer = producer_of(kafka_bootstrap, confluent_kafka.Producer)
    with sentry_sdk.start_transaction(name="python-head") as head:
        producer.produce(topic, b"from-python", headers={"sentry-trace": b"stale"})
        producer.flush(10)
    publish_span = only(publish_spans(only(captured.transactions())))
    group = f"node-{uuid.uuid4().hex[:8]}"
    seen = json.loads(
        run_node("kafka_consumer.mjs", kafka_bootstrap, topic, group, "1", str(tmp_path / "n.json"))
    )
    assert seen == [
        {"value": "from-python", "trace_id": head.trace_id, "parent_span_id": publish_span["span_id"]}
    ]


def test_opentelemetry_traceparent_only_records_are_continued_and_write_traceparent_writes_one(
    sentry_init: SentryInit, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    captured = sentry_init(traces_sample_rate=0.0)  # the traceparent's sampled flag must win
    busprop.configure(write_traceparent=True)
    topic = new_topic()
    otel_trace_id, otel_span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    raw = producer_of(kafka_bootstrap)
    raw.produce(topic, b"otel", headers=[("traceparent", f"00-{otel_trace_id}-{otel_span_id}-01".encode())])
    producer = busprop.kafka.traced_producer(raw)
    stale = ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")
    with sentry_sdk.start_transaction(name="head", sampled=True) as head:
        producer.produce(topic, b"busprop", headers=[stale])
        assert producer.flush(10) == 0
    with assigned(kafka_bootstrap, topic) as consumer:
        messages = []
        for message in busprop.kafka.traced_consumer(consumer):
            messages.append(message)
            if len(messages) == 2:
                break
    head_event = only([event for event in captured.transactions() if event["transaction"] == "head"])
    publish_span = only(publish_spans(head_event))
    assert trace_of(messages[1]) == (head.trace_id, publish_span["span_id"])
    traceparent = only(values_of(messages[1], "traceparent")).decode()  # replaced, not appended
    assert traceparent == f"00-{head.trace_id}-{publish_span['span_id']}-01"
    traces = [event["contexts"]["trace"] for event in processed_records(captured)]
    assert [(trace["trace_id"], trace["parent_span_id"]) for trace in traces] == [
        (otel_trace_id, otel_span_id),
        (head.trace_id, publish_span["span_id"]),
    ]


def test_a_poll_that_raises_propagates_unchanged(
    sentry_init: SentryInit, kafka_bootstrap: str, integration: type[busprop.kafka.KafkaIntegration]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, integrations=[integration()])
    consumer = confluent_kafka.Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "closed"})
    consumer.close()
    with pytest.raises(RuntimeError):
        consumer.poll(0)
    with pytest.raises(RuntimeError):
        consumer.consume(1, timeout=0)
    assert captured.transactions() == []
