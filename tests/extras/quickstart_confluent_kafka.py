"""confluent-kafka quick start, as ``pip install "busprop[confluent-kafka]"`` alone must run it.

Produces a message inside a ``checkout`` transaction and polls it back with ``traced_consumer``:
the loop body runs in the checkout's trace. What Sentry would receive goes to ``$BUSPROP_CAPTURE``
(tests/test_extras.py reads it). The broker is ``$KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import os
import uuid

import sentry_sdk
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

import busprop.kafka
from busprop.testing import dump_captured, init_capturing

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TOPIC = f"quickstart-confluent-{uuid.uuid4().hex[:8]}"

init_capturing(traces_sample_rate=1.0)  # in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0)

producer = busprop.kafka.traced_producer(Producer({"bootstrap.servers": BOOTSTRAP}))
with sentry_sdk.start_transaction(name="checkout") as checkout:
    producer.produce(TOPIC, b"order 42")
    assert producer.flush(10) == 0, "the record was not delivered"
print("produced", checkout.trace_id)

consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "quickstart"})
partitions = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in partitions])  # no group join
with busprop.kafka.traced_consumer(consumer) as messages:
    for message in messages:
        if message.error() is not None:
            continue  # an event, not a record
        print("consumed", sentry_sdk.get_traceparent())  # the checkout's trace
        break
consumer.close()
dump_captured(os.environ["BUSPROP_CAPTURE"])
