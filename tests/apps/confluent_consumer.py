"""Consume COUNT records in consumer group GROUP with an unchanged ``poll()`` loop under KafkaIntegration.

Usage: confluent_consumer.py BOOTSTRAP TOPIC GROUP COUNT CAPTURE_PATH. Prints, as JSON, what the
loop body saw for each record (value, trace id and span id of the current span: the record's
``queue.process`` span); what this process would send to Sentry goes to CAPTURE_PATH.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import sentry_sdk

import busprop.kafka
from busprop.testing import dump_captured, init_capturing


def main(bootstrap: str, topic: str, group: str, count: int, capture_path: str) -> None:
    init_capturing(traces_sample_rate=1.0, integrations=[busprop.kafka.KafkaIntegration()])
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,  # a group join takes about half of it on Tansu
        }
    )
    consumer.subscribe([topic])
    seen: list[list[Any]] = []
    deadline = time.monotonic() + 80
    while len(seen) < count and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None or message.error() is not None:
            continue
        span = sentry_sdk.get_current_span()
        seen.append([message.value().decode(), span and span.trace_id, span and span.span_id])
    consumer.close()  # ends the last record's processing
    dump_captured(capture_path)
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
