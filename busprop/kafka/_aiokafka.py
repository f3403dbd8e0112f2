"""aiokafka: where it keeps what busprop's Kafka core reads and writes.

A ``ConsumerRecord`` (a dataclass) has kafka-python's attributes: topic, partition, offset, key,
headers (a tuple of ``(str, bytes)``, empty when none), ``serialized_value_size`` and
``timestamp`` (ms). ``AIOKafkaProducer.send(topic, value, key, partition, timestamp_ms, headers)``
is a coroutine returning an ``asyncio.Future`` of the record's metadata; ``send_and_wait`` awaits
``self.send(...)``, so it is traced through ``send``, once. A consumer returns records from the
coroutine ``getone()``, which its ``__anext__`` awaits (so ``async for`` is traced through
``getone``, once). KafkaIntegration patches ``send``, ``getone`` and ``stop``. aiokafka is
imported only when one of those is asked for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from busprop.kafka._client import (
    ANEXT,
    CLOSE,
    PRODUCE,
    Delivery,
    KafkaClient,
    methods_in,
    types_in,
)

__all__ = ["CLIENT"]

#: The oldest aiokafka KafkaIntegration patches (the first with ``ConsumerRecord`` as a dataclass
#: carrying headers as this module reads them).
MINIMUM_VERSION = (0, 11)


def _group_id(consumer: Any) -> Any:
    # Private: an AIOKafkaConsumer does not tell its group id publicly (tests/test_seam.py).
    return consumer._group_id


def _watch_future(future: Any, delivery: Delivery) -> None:
    """The record's id when the broker acknowledges it, or the failure the future ends with."""

    def done(result: asyncio.Future[Any]) -> None:
        if result.cancelled():
            return  # the caller gave up waiting: not a failure of the send
        error = result.exception()
        if error is not None:
            delivery.failed(error)
            return
        if not delivery.describes:
            return
        metadata = result.result()
        delivery.sent(partition=metadata.partition)
        delivery.delivered(metadata.topic, metadata.partition, metadata.offset)

    future.add_done_callback(done)


CLIENT = KafkaClient(
    name="aiokafka",
    library="aiokafka",
    record_types=types_in("aiokafka.structs", "ConsumerRecord"),
    producer_types=types_in("aiokafka", "AIOKafkaProducer"),
    consumer_types=types_in("aiokafka", "AIOKafkaConsumer"),
    group_id=_group_id,
    produce_method="send",
    produce_parameters=("topic", "value", "key", "partition", "timestamp_ms", "headers"),
    produce_is_async=True,
    produce_callers=("send_and_wait",),
    async_records=lambda consumer: consumer.__aiter__(),
    watch_result=_watch_future,
    patch_points=methods_in(
        "aiokafka",
        MINIMUM_VERSION,
        ("AIOKafkaProducer", "send", PRODUCE),
        ("AIOKafkaConsumer", "getone", ANEXT),
        ("AIOKafkaConsumer", "stop", CLOSE),
    ),
)
