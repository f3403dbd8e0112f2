"""pika quick start, as ``pip install "busprop[pika]"`` alone must run it.

With ``AMQPIntegration``, plain pika code publishes inside a ``checkout`` transaction and its
consumer callback runs in the checkout's trace. What Sentry would receive goes to
``$BUSPROP_CAPTURE`` (tests/test_extras.py reads it). RabbitMQ is ``$AMQP_URL``.
"""

from __future__ import annotations

import os

import pika
import sentry_sdk

from busprop.amqp import AMQPIntegration
from busprop.testing import dump_captured, init_capturing

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

# in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0, integrations=[AMQPIntegration()])
init_capturing(traces_sample_rate=1.0, integrations=[AMQPIntegration()])

connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
channel = connection.channel()
queue = channel.queue_declare("", exclusive=True).method.queue

with sentry_sdk.start_transaction(name="checkout") as checkout:
    channel.basic_publish("", queue, b"order 42")
print("produced", checkout.trace_id)


def handle(channel, method, properties, body):  # type: ignore[no-untyped-def]
    print("consumed", sentry_sdk.get_traceparent())  # the checkout's trace
    channel.basic_ack(method.delivery_tag)
    channel.stop_consuming()


channel.basic_consume(queue, handle)
channel.start_consuming()
connection.close()
dump_captured(os.environ["BUSPROP_CAPTURE"])
