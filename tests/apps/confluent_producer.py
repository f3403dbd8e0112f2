"""Produce ``traces`` x ``per_trace`` records with unchanged confluent-kafka code under KafkaIntegration.

Usage: confluent_producer.py BOOTSTRAP TOPIC TRACES PER_TRACE CAPTURE_PATH. Each trace is its own
sampled transaction; record values are ``"<trace index>:<record index>"``; what this process would
send to Sentry goes to CAPTURE_PATH.
"""

from __future__ import annotations

import sys

import sentry_sdk

import busprop.kafka
from busprop.testing import dump_captured, init_capturing


def main(bootstrap: str, topic: str, traces: int, per_trace: int, capture_path: str) -> None:
    init_capturing(traces_sample_rate=1.0, integrations=[busprop.kafka.KafkaIntegration()])
    from confluent_kafka import Producer  # after init: the integration's instrumented class

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures = []
    for trace in range(traces):
        with sentry_sdk.start_transaction(op="function", name=f"order-{trace}"):
            for index in range(per_trace):
                producer.produce(
                    topic,
                    f"{trace}:{index}".encode(),
                    key=f"{index}".encode(),
                    on_delivery=lambda error, _message: failures.append(error) if error else None,
                )
            producer.flush(30)  # inside the transaction: the delivery reports land on its spans
    if failures:
        raise SystemExit(f"undelivered: {failures[:3]}")
    dump_captured(capture_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
