"""aio-pika quick start, as ``pip install "busprop[aio-pika]"`` alone must run it.

Publishes a message inside a ``checkout`` transaction through ``traced_exchange``; a
``@busprop.amqp.consumer`` callback handles it in the checkout's trace. What Sentry would receive
goes to ``$BUSPROP_CAPTURE`` (tests/test_extras.py reads it). RabbitMQ is ``$AMQP_URL``.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import aio_pika
import sentry_sdk

import busprop.amqp
from busprop.testing import dump_captured, init_capturing

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
done = asyncio.Event()


@busprop.amqp.consumer
async def handle_order(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    async with message.process():  # inside a queue.process transaction that continues the trace
        print("consumed", sentry_sdk.get_traceparent())
    done.set()


async def main() -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"quickstart-orders-{uuid.uuid4().hex[:8]}", exclusive=True)
        await queue.consume(handle_order)
        exchange = busprop.amqp.traced_exchange(channel.default_exchange)
        with sentry_sdk.start_transaction(name="checkout") as checkout:
            await exchange.publish(aio_pika.Message(b"order 42"), routing_key=queue.name)
        print("produced", checkout.trace_id)
        await done.wait()


init_capturing(traces_sample_rate=1.0)  # in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0)
asyncio.run(asyncio.wait_for(main(), timeout=30))
dump_captured(os.environ["BUSPROP_CAPTURE"])
