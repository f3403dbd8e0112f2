"""Publishes COUNT messages with plain pika code under AMQPIntegration, each in its own transaction.

Usage: pika_publisher.py AMQP_URL QUEUE COUNT CAPTURE_PATH
Every third message reuses one ``BasicProperties`` object (with a user header), every third has
none, the rest have properties without headers: each must still carry its own trace.
"""

from __future__ import annotations

import sys

import pika
import sentry_sdk

from busprop.amqp import AMQPIntegration
from busprop.testing import dump_captured, init_capturing


def main(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    shared = pika.BasicProperties(headers={"x-app": "publisher"})
    for number in range(count):
        properties = [shared, None, pika.BasicProperties(message_id=f"m{number}")][number % 3]
        with sentry_sdk.start_transaction(op="task", name=f"publish {number}"):
            channel.basic_publish("", queue, str(number).encode(), properties)
    assert shared.headers == {"x-app": "publisher"}, shared.headers  # the caller's object is never changed
    connection.close()


if __name__ == "__main__":
    url, queue, count, capture = sys.argv[1:5]
    init_capturing(traces_sample_rate=1.0, integrations=[AMQPIntegration()])
    main(url, queue, int(count))
    dump_captured(capture)
