"""Throughput of aio-pika publishing and consuming, bare and with busprop, against the real RabbitMQ.

Each variant publishes N messages (publisher confirms on, one at a time, each inside the request
transaction an application would already have) and then consumes them with a callback consumer
(prefetch 100, one ack per message). The bare variant uses aio-pika alone; the busprop variants use
``busprop.amqp.traced_exchange`` and ``@busprop.amqp.consumer`` with ``traces_sample_rate`` 1.0,
0.0 and None. The sentry-sdk alone variants (``bench/sdk_alone.py``) do by hand around bare
aio-pika the sentry-sdk work busprop asks for per message, with the Queues data busprop gives an
aio-pika message, at the same three rates: what that work costs by itself, so that busprop's own
cost reads as the difference. Envelopes go to a transport that drops them, so the SDK's
serialisation is counted but no network. Ratios are against the bare run measured in the same
invocation. Besides throughput (wall clock) the table gives this process's CPU time per message,
which other load on a shared machine disturbs much less than throughput.

Usage: python bench/bench_amqp.py [--messages N] [--rounds R]   (AMQP_URL as for the tests)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import sdk_alone  # bench/ is on the path of every bench script
import sentry_sdk
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import busprop.amqp
from busprop.demo import brokers
from busprop.testing import LOCAL_DSN

UNSET = object()
#: (name, traces_sample_rate, with busprop, sentry-sdk alone). The second row is the SDK's own
#: cost of a sampled request transaction, which an application with tracing on pays with or
#: without busprop.
VARIANTS: list[tuple[str, object, bool, bool]] = [
    ("bare aio-pika", UNSET, False, False),
    ("aio-pika, SDK at 1.0, no busprop", 1.0, False, False),
    ("busprop, traces_sample_rate=1.0", 1.0, True, False),
    ("busprop, traces_sample_rate=0.0", 0.0, True, False),
    ("busprop, traces_sample_rate=None", None, True, False),
    ("sentry-sdk alone, traces_sample_rate=1.0", 1.0, False, True),
    ("sentry-sdk alone, traces_sample_rate=0.0", 0.0, False, True),
    ("sentry-sdk alone, traces_sample_rate=None", None, False, True),
]
#: sentry-sdk alone's mode for a ``traces_sample_rate``.
MODES: dict[object, str] = {None: "off", 0.0: "unsampled", 1.0: "sampled"}
ORIGIN = "auto.queue.busprop.aio_pika"


class DroppingTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        pass


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process)


def timer() -> Callable[[], Timing]:
    wall, cpu = time.perf_counter(), time.process_time()
    return lambda: (time.perf_counter() - wall, time.process_time() - cpu)


async def publish_all(
    channel: AbstractChannel, queue: str, count: int, traced: bool, sdk_mode: str | None = None
) -> Timing:
    """``sdk_mode``: sentry-sdk alone's (:data:`MODES`), or ``None`` for aio-pika's own publish."""
    exchange: Any = channel.default_exchange
    if traced:
        exchange = busprop.amqp.traced_exchange(exchange)
    body = b'{"order": 42, "items": ["book", "pen"], "total": 17.5}'
    elapsed = timer()
    for _ in range(count):
        with sentry_sdk.start_transaction(op="http.server", name="POST /orders"):
            if sdk_mode is None:
                await exchange.publish(aio_pika.Message(body), routing_key=queue)
            else:
                with sdk_alone.publishing(
                    f"/{queue}", len(body), "rabbitmq", ORIGIN, {sdk_alone.ROUTING_KEY: queue}
                ) as headers:
                    await exchange.publish(aio_pika.Message(body, headers=headers), routing_key=queue)
    return elapsed()


async def consume_all(
    channel: AbstractChannel, queue_name: str, count: int, traced: bool, sdk_mode: str | None = None
) -> Timing:
    """``sdk_mode``: the callback's body inside sentry-sdk alone's processing in that mode."""
    queue = await channel.get_queue(queue_name)
    done = asyncio.Event()
    consumed = 0

    async def handle(message: AbstractIncomingMessage) -> None:
        nonlocal consumed
        await message.ack()
        consumed += 1
        if consumed == count:
            done.set()

    callback: Callable[..., Any] = handle
    if traced:
        callback = busprop.amqp.consumer(handle)
    elif sdk_mode is not None:
        callback = sdk_alone_callback(handle, sdk_mode)
    elapsed = timer()
    tag = await queue.consume(callback)
    await asyncio.wait_for(done.wait(), timeout=600)
    timing = elapsed()
    await queue.cancel(tag)
    return timing


def sdk_alone_callback(
    handle: Callable[[AbstractIncomingMessage], Awaitable[None]], mode: str
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """``handle`` run inside sentry-sdk alone's processing of each message, in ``mode``."""
    published_at = time.time()  # the messages carry no publish time of their own: this stands in

    async def processed(message: AbstractIncomingMessage) -> None:
        headers = {key: str(value) for key, value in (message.headers or {}).items()}
        destination = f"{message.exchange}/{message.routing_key}"
        data = (
            sdk_alone.amqp_data(
                destination,
                message.message_id,  # aiormq gives every message one
                len(message.body),
                bool(message.redelivered),
                published_at,
                message.routing_key or "",
                message.delivery_tag or 0,
            )
            if mode == "sampled"
            else None
        )
        with sdk_alone.processing(headers, destination, mode, data, origin=ORIGIN):
            await handle(message)

    return processed


async def run_variant(
    url: str, rate: object, traced: bool, count: int, *, sdk_alone: bool = False
) -> tuple[Timing, Timing]:
    """Publish then consume ``count`` messages with Sentry at ``rate`` (``UNSET``: no tracing
    option), traced by busprop (``traced``) or by sentry-sdk alone's work (``sdk_alone``, in the
    mode of ``rate``: see :data:`MODES`), or neither. Sentry is initialised the same way for all,
    so that only the work around the messages differs."""
    options: dict[str, Any] = {"dsn": LOCAL_DSN, "transport": DroppingTransport}
    if rate is not UNSET:
        options["traces_sample_rate"] = rate
    sentry_sdk.init(**options)
    sdk_mode = MODES[rate] if sdk_alone else None
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await channel.declare_queue(f"busprop-bench-{uuid.uuid4().hex[:8]}", exclusive=True)
        publishing = await publish_all(channel, queue.name, count, traced, sdk_mode)
        consuming = await consume_all(channel, queue.name, count, traced, sdk_mode)
    sentry_sdk.get_client().close()
    return publishing, consuming


async def main(count: int, rounds: int) -> None:
    url = brokers.amqp_url()
    if not brokers.reachable(url):
        raise SystemExit(f"RabbitMQ is not reachable at AMQP_URL={url}")
    await run_variant(
        url, UNSET, False, min(count, 500)
    )  # warm-up: connections, imports, the broker's caches
    results: dict[str, list[tuple[Timing, Timing]]] = {name: [] for name, *_ in VARIANTS}
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits every variant alike
        for name, rate, traced, alone in VARIANTS:
            results[name].append(await run_variant(url, rate, traced, count, sdk_alone=alone))
    print(f"aio-pika {aio_pika.__version__}, {count} messages, median of {rounds} round(s)\n")
    print(
        "| variant | publish msg/s | vs bare | CPU µs/msg | vs bare | consume msg/s | vs bare | CPU µs/msg | vs bare |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    bare = summary(results["bare aio-pika"], count)
    for name, runs in results.items():
        cells = []
        for phase in (0, 1):
            rate, cpu = summary(runs, count)[phase]
            bare_rate, bare_cpu = bare[phase]
            cells.append(f"{rate:,.0f} | {rate / bare_rate:.2f}x | {cpu:,.0f} | {bare_cpu / cpu:.2f}x")
        print(f"| {name} | {' | '.join(cells)} |")


def summary(runs: list[tuple[Timing, Timing]], count: int) -> list[tuple[float, float]]:
    """Per phase: median messages per second, and median CPU microseconds per message."""
    return [
        (
            statistics.median(count / run[phase][0] for run in runs),
            statistics.median(run[phase][1] / count * 1e6 for run in runs),
        )
        for phase in (0, 1)
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per variant (issue: 20000)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all variants; medians reported")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.rounds))
