"""Throughput of aio-pika publishing and consuming, bare and with busprop, against the real RabbitMQ.

Each variant publishes N messages (publisher confirms on, one at a time, each inside the request
transaction an application would already have) and then consumes them with a callback consumer
(prefetch 100, one ack per message). The bare variant uses aio-pika alone; the busprop variants use
``busprop.amqp.traced_exchange`` and ``@busprop.amqp.consumer`` with ``traces_sample_rate`` 1.0,
0.0 and None. Envelopes go to a transport that drops them, so the SDK's serialisation is counted
but no network. Ratios are against the bare run measured in the same invocation.

Usage: python bench/bench_amqp.py [--messages N] [--rounds R]   (AMQP_URL as for the tests)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import sentry_sdk
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import busprop.amqp
from busprop.demo import brokers
from busprop.testing import LOCAL_DSN

UNSET = object()
VARIANTS: list[tuple[str, object]] = [
    ("bare aio-pika", UNSET),
    ("busprop, traces_sample_rate=1.0", 1.0),
    ("busprop, traces_sample_rate=0.0", 0.0),
    ("busprop, traces_sample_rate=None", None),
]


class DroppingTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        pass


async def publish_all(channel: AbstractChannel, queue: str, count: int, traced: bool) -> float:
    exchange: Any = channel.default_exchange
    if traced:
        exchange = busprop.amqp.traced_exchange(exchange)
    body = b'{"order": 42, "items": ["book", "pen"], "total": 17.5}'
    started = time.perf_counter()
    for _ in range(count):
        with sentry_sdk.start_transaction(op="http.server", name="POST /orders"):
            await exchange.publish(aio_pika.Message(body), routing_key=queue)
    return time.perf_counter() - started


async def consume_all(channel: AbstractChannel, queue_name: str, count: int, traced: bool) -> float:
    queue = await channel.get_queue(queue_name)
    done = asyncio.Event()
    consumed = 0

    async def handle(message: AbstractIncomingMessage) -> None:
        nonlocal consumed
        await message.ack()
        consumed += 1
        if consumed == count:
            done.set()

    callback: Callable[..., Any] = busprop.amqp.consumer(handle) if traced else handle
    started = time.perf_counter()
    tag = await queue.consume(callback)
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - started
    await queue.cancel(tag)
    return elapsed


async def run_variant(url: str, rate: object, count: int) -> tuple[float, float]:
    options: dict[str, Any] = {"dsn": LOCAL_DSN, "transport": DroppingTransport}
    if rate is not UNSET:
        options["traces_sample_rate"] = rate
    sentry_sdk.init(**options)
    traced = rate is not UNSET
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await channel.declare_queue(f"busprop-bench-{uuid.uuid4().hex[:8]}", exclusive=True)
        publish_seconds = await publish_all(channel, queue.name, count, traced)
        consume_seconds = await consume_all(channel, queue.name, count, traced)
    sentry_sdk.get_client().close()
    return count / publish_seconds, count / consume_seconds


async def main(count: int, rounds: int) -> None:
    url = brokers.amqp_url()
    if not brokers.reachable(url):
        raise SystemExit(f"RabbitMQ is not reachable at AMQP_URL={url}")
    await run_variant(url, UNSET, min(count, 500))  # warm-up: connections, imports, the broker's caches
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in VARIANTS}
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits every variant alike
        for name, rate in VARIANTS:
            results[name].append(await run_variant(url, rate, count))
    medians = {
        name: (statistics.median(p for p, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in results.items()
    }
    bare_publish, bare_consume = medians["bare aio-pika"]
    print(f"aio-pika {aio_pika.__version__}, {count} messages, median of {rounds} round(s)\n")
    print("| variant | publish msg/s | vs bare | consume msg/s | vs bare |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (publish_rate, consume_rate) in medians.items():
        print(
            f"| {name} | {publish_rate:,.0f} | {publish_rate / bare_publish:.2f}x "
            f"| {consume_rate:,.0f} | {consume_rate / bare_consume:.2f}x |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per variant (issue: 20000)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all variants; medians reported")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.rounds))
