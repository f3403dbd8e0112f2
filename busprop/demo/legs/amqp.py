"""The AMQP leg: RabbitMQ through aio-pika, a callback consumer, an RPC call and an iterator loop.

The demo publishes an order; the orders callback asks an RPC server for the price and publishes
an email; an ``async for`` loop sends it. Every hop continues the demo's trace through the message
headers alone. Needs RabbitMQ at ``AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``);
the queues are exclusive to the leg's connection and vanish with it.
"""

from __future__ import annotations

import asyncio
import uuid

from busprop.demo import brokers

TITLE = "RabbitMQ (aio-pika): callback, RPC, iterator"
ORDER = 30


async def _pipeline(url: str) -> None:
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage

    from busprop import amqp

    suffix = uuid.uuid4().hex[:8]
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        orders = await channel.declare_queue(f"demo-orders-{suffix}", exclusive=True)
        emails = await channel.declare_queue(f"demo-emails-{suffix}", exclusive=True)
        exchange = amqp.traced_exchange(channel.default_exchange)
        rpc = await amqp.TracedRPC.create(channel)

        async def price(*, order: str) -> int:
            return 42

        await rpc.register(f"demo-price-{suffix}", price, exclusive=True)

        @amqp.consumer
        async def handle_order(message: AbstractIncomingMessage) -> None:
            async with message.process():
                await rpc.call(f"demo-price-{suffix}", kwargs={"order": message.body.decode()})
                await exchange.publish(aio_pika.Message(b"receipt"), routing_key=emails.name)

        await orders.consume(handle_order)
        await exchange.publish(aio_pika.Message(b"order 42"), routing_key=orders.name)
        async with amqp.traced_iterator(emails.iterator()) as messages:
            async for message in messages:
                async with message.process():
                    await asyncio.sleep(0.001)  # the email is "sent"
                break
        await rpc.close()


def run() -> str | None:
    try:
        import aio_pika  # noqa: F401
    except ImportError:
        return "aio-pika is not installed (pip install 'busprop[amqp]')"
    url = brokers.amqp_url()
    if not brokers.reachable(url):
        return f"RabbitMQ is not reachable at AMQP_URL={url}"
    asyncio.run(asyncio.wait_for(_pipeline(url), timeout=10))  # a failure raises: the leg failed
    return None
