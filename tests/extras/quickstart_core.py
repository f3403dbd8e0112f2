"""The core quick start, as ``pip install busprop`` (no extra) must run it on every Python it claims.

A producer and a consumer decorated with ``busprop.producer``/``busprop.consumer`` over a stdlib
queue: the consumer runs in the trace of the ``checkout`` transaction that produced the message.
What Sentry would receive goes to ``$BUSPROP_CAPTURE`` (tests/test_extras.py reads it).
"""

from __future__ import annotations

import os
import queue
from typing import Any

import sentry_sdk

import busprop
from busprop.testing import dump_captured, init_capturing

init_capturing(traces_sample_rate=1.0)  # in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0)
bus: queue.Queue[dict[str, Any]] = queue.Queue()


@busprop.producer(system="custom", destination="orders", headers=lambda message: message["headers"])
def send(message: dict[str, Any]) -> None:
    bus.put(message)


@busprop.consumer(system="custom", destination="orders", headers=lambda message: message["headers"])
def handle(message: dict[str, Any]) -> None:
    print("consumed", sentry_sdk.get_traceparent())  # the checkout's trace


with sentry_sdk.start_transaction(name="checkout") as checkout:
    send({"headers": {}, "body": "order 42"})
print("produced", checkout.trace_id)
handle(bus.get())
dump_captured(os.environ["BUSPROP_CAPTURE"])
