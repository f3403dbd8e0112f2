"""Publishes COUNT messages to a queue, each in its own transaction (its own trace), with busprop.

Usage: amqp_publisher.py AMQP_URL QUEUE COUNT CAPTURE_PATH
"""

from __future__ import annotations

import asyncio
import sys

import aio_pika
import sentry_sdk

import busprop.amqp
from busprop.testing import dump_captured, init_capturing


async def main(url: str, queue: str, count: int) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = busprop.amqp.traced_exchange(channel.default_exchange)
        for number in range(count):
            with sentry_sdk.start_transaction(op="task", name=f"publish {number}"):
                await exchange.publish(aio_pika.Message(str(number).encode()), routing_key=queue)


if __name__ == "__main__":
    url, queue, count, capture = sys.argv[1:5]
    init_capturing(traces_sample_rate=1.0)
    asyncio.run(main(url, queue, int(count)))
    dump_captured(capture)
