"""kafka-python quick start, as ``pip install "busprop[kafka-python]"`` alone must run it.

Sends a record inside a ``checkout`` transaction and reads it back with ``traced_consumer``: the
loop body runs in the checkout's trace. What Sentry would receive goes to ``$BUSPROP_CAPTURE``
(tests/test_extras.py reads it). The broker is ``$KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import os
import uuid

import sentry_sdk
from kafka import KafkaConsumer, KafkaProducer

import busprop.kafka
from busprop.testing import dump_captured, init_capturing

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TOPIC = f"quickstart-kafka-python-{uuid.uuid4().hex[:8]}"

init_capturing(traces_sample_rate=1.0)  # in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0)

producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=BOOTSTRAP))
with sentry_sdk.start_transaction(name="checkout") as checkout:
    producer.send(TOPIC, b"order 42").get(timeout=10)
producer.close()
print("produced", checkout.trace_id)

consumer = KafkaConsumer(TOPIC, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest")
with busprop.kafka.traced_consumer(consumer) as records:
    for _record in records:
        print("consumed", sentry_sdk.get_traceparent())  # the checkout's trace
        break
consumer.close()
dump_captured(os.environ["BUSPROP_CAPTURE"])
