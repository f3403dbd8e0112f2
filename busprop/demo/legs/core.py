"""The core leg: two hops over a stdlib queue with the generic decorators, no broker needed.

checkout publishes to "orders"; the orders consumer (another thread) publishes to "emails"; the
emails consumer sends. The consumers only see the messages, so the trace crosses the threads
through the headers alone.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import busprop

TITLE = "stdlib queue (generic decorators)"
ORDER = 0

Message = dict[str, Any]


def run() -> str | None:
    orders: queue.Queue[Message] = queue.Queue()
    emails: queue.Queue[Message] = queue.Queue()

    @busprop.producer(system="queue", destination="orders", headers=lambda msg: msg["headers"])
    def send_order(msg: Message) -> None:
        orders.put(msg)

    @busprop.producer(system="queue", destination="emails", headers=lambda msg: msg["headers"])
    def send_email(msg: Message) -> None:
        emails.put(msg)

    @busprop.consumer(system="queue", destination="orders", headers=lambda msg: msg["headers"])
    def handle_order(msg: Message) -> None:
        time.sleep(0.002)  # the order is "processed"
        send_email({"headers": {}, "body": f"receipt for {msg['body']}"})

    @busprop.consumer(system="queue", destination="emails", headers=lambda msg: msg["headers"])
    def handle_email(msg: Message) -> None:
        time.sleep(0.001)

    failures: list[BaseException] = []

    def worker() -> None:
        try:
            handle_order(orders.get(timeout=5))
            handle_email(emails.get(timeout=5))
        except BaseException as error:  # re-raised in the demo's thread: the leg failed
            failures.append(error)

    thread = threading.Thread(target=worker, name="demo-consumer")
    thread.start()
    send_order({"headers": {}, "body": "order 42"})
    thread.join(timeout=10)
    if thread.is_alive():
        raise TimeoutError("the queue consumer did not finish in 10 s")
    if failures:
        raise failures[0]
    return None
