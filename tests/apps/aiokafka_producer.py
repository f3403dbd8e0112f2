"""Produce ``traces`` x ``per_trace`` records with unchanged aiokafka code under KafkaIntegration.

Usage: aiokafka_producer.py BOOTSTRAP TOPIC TRACES PER_TRACE CAPTURE_PATH. Each trace is its own
sampled transaction; record values are ``"<trace index>:<record index>"``; what this process would
send to Sentry goes to CAPTURE_PATH.
"""

from __future__ import annotations

import asyncio
import sys

import sentry_sdk
from aiokafka import AIOKafkaProducer

import busprop.kafka
from busprop.testing import dump_captured, init_capturing


async def produce(bootstrap: str, topic: str, traces: int, per_trace: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for trace in range(traces):
            with sentry_sdk.start_transaction(op="function", name=f"order-{trace}"):
                sent = [
                    await producer.send(topic, f"{trace}:{index}".encode(), key=f"{index}".encode())
                    for index in range(per_trace)
                ]
                await asyncio.gather(*sent)  # acknowledged inside the transaction: ids on the spans
    finally:
        await producer.stop()


def main(bootstrap: str, topic: str, traces: int, per_trace: int, capture_path: str) -> None:
    init_capturing(traces_sample_rate=1.0, integrations=[busprop.kafka.KafkaIntegration()])
    asyncio.run(produce(bootstrap, topic, traces, per_trace))
    dump_captured(capture_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
