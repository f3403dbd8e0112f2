"""kafka-python: where it keeps what busprop's Kafka core reads and writes.

A ``ConsumerRecord`` is a namedtuple: topic, partition, offset, key, headers (a list of
``(str, bytes)``), ``serialized_value_size`` and ``timestamp`` (ms) are attributes.
``KafkaProducer.send(topic, value, key, headers, partition, timestamp_ms)`` takes headers as a
list and returns a future that calls back with the record's metadata or errs back with the error.
A ``KafkaConsumer`` is its own iterator; KafkaIntegration patches ``send``, ``__next__`` and
``close``. kafka-python is imported only when one of those classes is asked for.
"""

from __future__ import annotations

from typing import Any

from busprop.kafka._client import CLOSE, NEXT, PRODUCE, Delivery, KafkaClient, methods_in, types_in

__all__ = ["CLIENT"]


def _group_id(consumer: Any) -> Any:
    return consumer.config.get("group_id")


def _watch_future(future: Any, delivery: Delivery) -> None:
    """The send's size and partition now, its offset (or failure) when the broker answers; only
    a failure for a send with no span to describe."""
    if delivery.describes:
        # Private: kafka-python exposes a send's partition only once acknowledged (tests/test_seam.py).
        delivery.sent(body_size=future.args[4], partition=future._produce_future.topic_partition.partition)
        future.add_callback(
            lambda metadata: delivery.delivered(metadata.topic, metadata.partition, metadata.offset)
        )
    future.add_errback(delivery.failed)


CLIENT = KafkaClient(
    name="kafka-python",
    library="kafka",
    record_types=types_in("kafka.consumer.fetcher", "ConsumerRecord"),
    producer_types=types_in("kafka", "KafkaProducer"),
    consumer_types=types_in("kafka", "KafkaConsumer"),
    group_id=_group_id,
    produce_method="send",
    produce_parameters=("topic", "value", "key", "headers", "partition", "timestamp_ms"),
    watch_result=_watch_future,
    patch_points=methods_in(
        "kafka",
        (),
        ("KafkaProducer", "send", PRODUCE),
        ("KafkaConsumer", "__next__", NEXT),
        ("KafkaConsumer", "close", CLOSE),
    ),
)
