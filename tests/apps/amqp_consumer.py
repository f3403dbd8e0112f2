"""Consumes COUNT messages with busprop, as a callback consumer or an iterator loop, and reports
what each message's processing saw as its trace.

Usage: amqp_consumer.py AMQP_URL QUEUE COUNT MODE PREFETCH CAPTURE_PATH REPORT_PATH
MODE is ``callback`` (``@busprop.amqp.consumer``, concurrent up to PREFETCH) or ``iterator``
(``busprop.amqp.traced_iterator``). Prints ``ready`` once consuming. For every message the report
records the trace id in its headers and the trace ids the processing code saw before and after
yielding to the event loop (a leak between concurrent messages shows as a difference).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

import aio_pika
import sentry_sdk
from aio_pika.abc import AbstractIncomingMessage

import busprop.amqp
from busprop.testing import dump_captured, init_capturing


class Report:
    def __init__(self, count: int) -> None:
        self.count = count
        self.seen: dict[str, dict[str, Any]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.done = asyncio.Event()

    async def process(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            before = current_trace_id()
            await asyncio.sleep(random.uniform(0, 0.004))
            after = current_trace_id()
            self.in_flight -= 1
        header = str(message.headers.get("sentry-trace", ""))[:32]
        self.seen[message.body.decode()] = {"header": header, "before": before, "after": after}
        if len(self.seen) >= self.count:
            self.done.set()


def current_trace_id() -> str:
    return (sentry_sdk.get_traceparent() or "")[:32]


async def main(url: str, queue_name: str, count: int, mode: str, prefetch: int) -> Report:
    report = Report(count)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name)
        if mode == "callback":
            await queue.consume(busprop.amqp.consumer(report.process))
            print("ready", flush=True)
            await asyncio.wait_for(report.done.wait(), timeout=60)
        else:
            async with busprop.amqp.traced_iterator(queue.iterator()) as messages:
                print("ready", flush=True)
                async for message in messages:
                    await report.process(message)
                    if report.done.is_set():
                        break
    return report


if __name__ == "__main__":
    url, queue, count, mode, prefetch, capture, report_path = sys.argv[1:8]
    init_capturing(traces_sample_rate=1.0)
    result = asyncio.run(main(url, queue, int(count), mode, int(prefetch)))
    dump_captured(capture)
    with open(report_path, "w", encoding="utf-8") as file:
        json.dump({"seen": result.seen, "max_in_flight": result.max_in_flight}, file)
