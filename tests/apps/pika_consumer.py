"""Consumes COUNT messages with plain pika code under AMQPIntegration and reports, for each, the
trace id its headers carry and the one its processing code saw.

Usage: pika_consumer.py AMQP_URL QUEUE COUNT MODE CAPTURE_PATH REPORT_PATH
MODE is ``callback`` (``basic_consume`` and ``start_consuming``) or ``generator``
(``for ... in channel.consume(queue)``). Prints ``ready`` once consuming.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pika
import sentry_sdk

from busprop.amqp import AMQPIntegration
from busprop.testing import dump_captured, init_capturing


def current_trace_id() -> str:
    return (sentry_sdk.get_traceparent() or "")[:32]


def main(url: str, queue: str, count: int, mode: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)

    def handle(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        header = str((properties.headers or {}).get("sentry-trace", ""))[:32]
        seen[body.decode()] = {"header": header, "seen": current_trace_id(), "headers": properties.headers}
        channel.basic_ack(method.delivery_tag)
        if len(seen) >= count:
            channel.stop_consuming()

    if mode == "callback":
        channel.basic_consume(queue, handle)
        print("ready", flush=True)
        channel.start_consuming()
    else:
        print("ready", flush=True)
        for method, properties, body in channel.consume(queue, inactivity_timeout=30):
            if method is None:
                raise SystemExit("no message within 30 s")
            handle(channel, method, properties, body)
            if len(seen) >= count:
                break
        channel.cancel()
    after = current_trace_id()
    connection.close()
    return {"seen": seen, "after": after}


if __name__ == "__main__":
    url, queue, count, mode, capture, report_path = sys.argv[1:7]
    init_capturing(traces_sample_rate=1.0, integrations=[AMQPIntegration()])
    report = main(url, queue, int(count), mode)
    dump_captured(capture)
    with open(report_path, "w", encoding="utf-8") as file:
        json.dump(report, file, default=str)
