"""Produce ``traces`` x ``per_trace`` records, each trace inside its own sampled transaction.

Usage: kafka_producer.py BOOTSTRAP TOPIC TRACES PER_TRACE CAPTURE_PATH. Record values are
``"<trace index>:<record index>"``; what this process would send to Sentry goes to CAPTURE_PATH.
"""

from __future__ import annotations

import sys

import sentry_sdk
from kafka import KafkaProducer

import busprop.kafka
from busprop.testing import dump_captured, init_capturing


def main(bootstrap: str, topic: str, traces: int, per_trace: int, capture_path: str) -> None:
    init_capturing(traces_sample_rate=1.0)
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5))
    for trace in range(traces):
        with sentry_sdk.start_transaction(op="function", name=f"order-{trace}"):
            for index in range(per_trace):
                producer.send(topic, f"{trace}:{index}".encode(), key=f"{index}".encode())
    producer.flush()
    producer.close()
    dump_captured(capture_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
