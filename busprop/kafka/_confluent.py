"""confluent-kafka: where it keeps what busprop's Kafka core reads and writes.

A consumed ``Message`` answers through methods: ``topic()``, ``partition()``, ``offset()``,
``key()``, ``headers()`` (a list of ``(str, bytes | None)``, or ``None``), ``len()`` and
``timestamp()`` (``(type, ms)``); ``error()`` is set on the error and event messages ``poll()``
and ``consume()`` also return. ``Producer.produce(topic, value, key, partition, callback,
on_delivery, timestamp, headers)`` takes headers as a list or a dict and reports delivery to
``callback`` (``on_delivery`` is its alias; ``callback`` wins when both are given) from
``poll()``/``flush()``; a record produced with neither goes to the ``on_delivery`` of the
producer's configuration, which only the constructor's arguments tell. The pure-Python
``SerializingProducer.produce`` orders its parameters ``topic, key, value, ...`` and has no
``callback``: it is described as a client of its own.

``Producer``, ``Consumer`` and ``Message`` are C types that take no patches: KafkaIntegration
patches the producer's ``__init__`` and ``produce`` and the consumer's ``poll``, ``consume`` and
``close`` on subclasses it puts in place of ``confluent_kafka.Producer`` and
``confluent_kafka.Consumer``, and ``SerializingProducer.__init__``/``produce`` and
``DeserializingConsumer.poll``/``consume``/``close`` in place (they call the C methods of the
original classes, so a record is traced once). The asyncio ``AIOConsumer`` runs its ``Consumer``'s
calls on executor threads: its own ``poll``, ``consume`` and ``close`` are patched in place, and the
``Consumer`` it creates passes its calls through. confluent-kafka is imported only when needed.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from busprop.kafka._client import (
    ANEXT,
    CLOSE,
    CONFIGURES,
    POLL,
    PRODUCE,
    WRAPS,
    Delivery,
    KafkaClient,
    PatchPoint,
    import_library,
    methods_in,
    types_in,
)

__all__ = ["CLIENT", "SERIALIZING"]

#: The oldest confluent-kafka KafkaIntegration patches: the oldest whose librdkafka the test broker
#: accepts (2.0 and 2.1 fail its API-versions exchange), so the oldest that is tested.
MINIMUM_VERSION = (2, 2)
#: How long one ``poll()`` of :func:`_records` waits: between polls signals (Ctrl+C) are delivered.
POLL_SECONDS = 1.0


def _reporting(callback: Callable[[Any, Any], Any], delivery: Delivery) -> Callable[[Any, Any], Any]:
    """``callback`` (called as before, its exception propagating to ``poll()``), after reporting."""

    def on_delivery(error: Any, message: Any) -> Any:
        if error is None:
            delivery.sent(partition=message.partition())
            delivery.delivered(message.topic(), message.partition(), message.offset())
        else:
            from confluent_kafka import KafkaException

            delivery.failed(KafkaException(error))
        return callback(error, message)

    return on_delivery


def _configured_callback(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The ``on_delivery`` of a producer constructed with ``(args, kwargs)``, as the client reads
    its configuration: a dict, updated with the keyword arguments, then with its
    ``default.topic.config``; older releases match the name in any case, the last match winning."""
    configuration = dict(args[0]) if args and isinstance(args[0], dict) else {}
    configuration.update(kwargs)
    topic_defaults = configuration.get("default.topic.config")
    if isinstance(topic_defaults, dict):
        configuration.update(topic_defaults)
    found = None
    for name, value in configuration.items():
        if isinstance(name, str) and name.lower() == "on_delivery":
            found = value
    return found


def _records(consumer: Any) -> Iterator[Any]:
    """``poll()`` results for ``traced_consumer``: messages and error events, never ``None``."""
    while True:
        message = consumer.poll(POLL_SECONDS)
        if message is not None:
            yield message


def _library() -> ModuleType:
    return import_library("confluent_kafka", MINIMUM_VERSION)


def _patch_points() -> list[PatchPoint]:
    cimpl = _library().cimpl
    return [
        (cimpl.Producer, "__init__", CONFIGURES),
        (cimpl.Producer, "produce", PRODUCE),
        (cimpl.Consumer, "poll", POLL),
        (cimpl.Consumer, "consume", CLOSE),  # a list is the caller's to trace: the last poll() ends
        (cimpl.Consumer, "close", CLOSE),
        *_asyncio_patch_points(),
    ]


def _asyncio_patch_points() -> list[PatchPoint]:
    """``AIOConsumer`` (and its subclass ``AsyncDeserializingConsumer``, whose methods call its
    own): a polled message belongs to the awaiting task, not to the executor thread that ran the
    wrapped ``Consumer.poll``. Absent before confluent-kafka had an asyncio API: nothing to patch."""
    try:
        consumer = importlib.import_module("confluent_kafka.aio").AIOConsumer
    except (ImportError, AttributeError):
        return []
    return [
        (consumer, "__init__", WRAPS),
        (consumer, "poll", ANEXT),
        (consumer, "consume", CLOSE),
        (consumer, "close", CLOSE),
    ]


def _replaced_classes() -> list[tuple[ModuleType, str]]:
    library = _library()
    return [(library, "Producer"), (library, "Consumer")]


CLIENT = KafkaClient(
    name="confluent-kafka",
    library="confluent_kafka",
    record_types=types_in("confluent_kafka.cimpl", "Message"),
    producer_types=types_in("confluent_kafka.cimpl", "Producer"),
    consumer_types=types_in("confluent_kafka.cimpl", "Consumer"),
    topic=lambda message: message.topic(),
    partition=lambda message: message.partition(),
    offset=lambda message: message.offset(),
    key=lambda message: message.key(),
    headers=lambda message: message.headers(),
    value_size=len,  # the value's size
    timestamp_ms=lambda message: message.timestamp()[1],
    # A Consumer does not tell its group id: pass ``group_id=`` to the wrappers to record it.
    group_id=lambda consumer: None,
    produce_method="produce",
    produce_parameters=(
        "topic",
        "value",
        "key",
        "partition",
        "callback",
        "on_delivery",
        "timestamp",
        "headers",
    ),
    mapping_headers=True,
    delivery_callbacks=("callback", "on_delivery"),
    report_delivery=_reporting,
    configured_callback=_configured_callback,
    records=_records,
    is_error=lambda message: message.error() is not None,
    patch_points=_patch_points,
    replaced_classes=_replaced_classes,
)

SERIALIZING = dataclasses.replace(
    CLIENT,
    name="confluent-kafka serializing",
    producer_types=types_in("confluent_kafka", "SerializingProducer"),
    consumer_types=types_in("confluent_kafka", "DeserializingConsumer"),
    produce_parameters=("topic", "key", "value", "partition", "on_delivery", "timestamp", "headers"),
    delivery_callbacks=("on_delivery",),
    patch_points=methods_in(
        "confluent_kafka",
        MINIMUM_VERSION,
        ("SerializingProducer", "__init__", CONFIGURES),
        ("SerializingProducer", "produce", PRODUCE),
        ("DeserializingConsumer", "poll", POLL),
        ("DeserializingConsumer", "consume", CLOSE),
        ("DeserializingConsumer", "close", CLOSE),
    ),
    replaced_classes=lambda: [],
)
