"""Consume COUNT records in consumer group GROUP with ``busprop.kafka.traced_consumer``.

Usage: kafka_consumer.py BOOTSTRAP TOPIC GROUP COUNT CAPTURE_PATH. Prints, as JSON, what the loop
body saw for each record (value, trace id and span id of the current span: the record's
``queue.process`` span); what this process would send to Sentry goes to CAPTURE_PATH.
"""

from __future__ import annotations

import json
import sys

import sentry_sdk
from kafka import KafkaConsumer

import busprop.kafka
from busprop.testing import dump_captured, init_capturing


def main(bootstrap: str, topic: str, group: str, count: int, capture_path: str) -> None:
    init_capturing(traces_sample_rate=1.0)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=10000,
        consumer_timeout_ms=30000,
    )
    seen = []
    with busprop.kafka.traced_consumer(consumer) as records:
        for record in records:
            span = sentry_sdk.get_current_span()
            seen.append([record.value.decode(), span and span.trace_id, span and span.span_id])
            if len(seen) == count:
                break
    consumer.close()
    dump_captured(capture_path)
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
