"""aiokafka quick start, as ``pip install "busprop[aiokafka]"`` alone must run it.

Sends a record inside a ``checkout`` transaction and reads it back with ``async for`` over
``traced_consumer``: the loop body runs in the checkout's trace. What Sentry would receive goes to
``$BUSPROP_CAPTURE`` (tests/test_extras.py reads it). The broker is ``$KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import sentry_sdk
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import busprop.kafka
from busprop.testing import dump_captured, init_capturing

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TOPIC = f"quickstart-aiokafka-{uuid.uuid4().hex[:8]}"


async def main() -> None:
    producer = busprop.kafka.traced_producer(AIOKafkaProducer(bootstrap_servers=BOOTSTRAP))
    await producer.start()
    with sentry_sdk.start_transaction(name="checkout") as checkout:
        await producer.send_and_wait(TOPIC, b"order 42")
    await producer.stop()
    print("produced", checkout.trace_id)

    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest")
    await consumer.start()
    async for _record in busprop.kafka.traced_consumer(consumer):
        print("consumed", sentry_sdk.get_traceparent())  # the checkout's trace
        break
    await consumer.stop()


init_capturing(traces_sample_rate=1.0)  # in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0)
asyncio.run(asyncio.wait_for(main(), timeout=60))
dump_captured(os.environ["BUSPROP_CAPTURE"])
