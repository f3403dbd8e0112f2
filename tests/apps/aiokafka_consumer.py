"""Consume COUNT records in consumer group GROUP with unchanged ``async for`` under KafkaIntegration.

Usage: aiokafka_consumer.py BOOTSTRAP TOPIC GROUP COUNT CAPTURE_PATH. Prints, as JSON, what the
loop body saw for each record (value, trace id and span id of the current span: the record's
``queue.process`` span); what this process would send to Sentry goes to CAPTURE_PATH.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import sentry_sdk
from aiokafka import AIOKafkaConsumer

import busprop.kafka
from busprop.testing import dump_captured, init_capturing


async def consume(bootstrap: str, topic: str, group: str, count: int) -> list[list[Any]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    seen: list[list[Any]] = []
    try:
        async for record in consumer:
            await asyncio.sleep(0)  # the body may await: it stays in the record's trace
            span = sentry_sdk.get_current_span()
            seen.append([record.value.decode(), span and span.trace_id, span and span.span_id])
            if len(seen) == count:
                break
    finally:
        await consumer.stop()
    return seen


def main(bootstrap: str, topic: str, group: str, count: int, capture_path: str) -> None:
    init_capturing(traces_sample_rate=1.0, integrations=[busprop.kafka.KafkaIntegration()])
    seen = asyncio.run(asyncio.wait_for(consume(bootstrap, topic, group, count), 80))
    dump_captured(capture_path)
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
