"""Echo round trips over WebSockets: bare ``websockets`` against busprop, measured in one run.

A server and its clients share one event loop on loopback; each client sends a small JSON chat
message and waits for the server's echo. Bare: plain ``websockets`` connections. busprop: the
server wrapped with ``traced_handler`` and the client opened with ``busprop.websockets.connect``,
so every message carries the trace, the server processes each one in a transaction (sampled or
not) and the client each echo, with ``traces_sample_rate`` 1.0, 0.0 and None. The client sends
outside any transaction (the trace's head is its propagation context), so what is measured is
busprop's work, not the client's own transactions. A transport that drops envelopes stands in for
the network. Run: ``python bench/bench_websockets.py [--round-trips N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sentry_sdk
from sentry_sdk.transport import Transport
from websockets.asyncio.client import connect as bare_connect
from websockets.asyncio.server import ServerConnection, serve

import busprop
from busprop import websockets as traced_websockets

MESSAGE = json.dumps({"user": "bench", "message": "hello there, how is the weather today?", "room": "lobby"})
CONCURRENT = 50


class DroppingTransport(Transport):
    def capture_envelope(self, envelope: Any) -> None:
        pass


async def bare_echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def traced_echo(ws: traced_websockets.TracedConnection) -> None:
    async for message in ws:
        await ws.send(message)


Opener = Callable[[str], Any]


async def echo_round_trips(ws: Any, round_trips: int) -> None:
    for _ in range(round_trips):
        await ws.send(MESSAGE)
        await ws.recv()


async def measure(traced: bool, connections: int, round_trips: int) -> float:
    """Round trips per second over ``connections`` concurrent connections (handshakes not timed)."""
    handler: Callable[[Any], Awaitable[None]] = (
        traced_websockets.traced_handler(traced_echo) if traced else bare_echo
    )
    opener: Opener = traced_websockets.connect if traced else bare_connect
    per_connection = max(1, round_trips // connections)
    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/echo"
        clients = [await opener(url) for _ in range(connections)]
        start = time.perf_counter()
        await asyncio.gather(*(echo_round_trips(ws, per_connection) for ws in clients))
        elapsed = time.perf_counter() - start
        for ws in clients:
            await ws.close()
    return per_connection * connections / elapsed


def per_message_costs(messages: int = 5000) -> list[tuple[str, float]]:
    """Microseconds per message of the adapter's JSON work and of the core calls it makes (rate None)."""
    init(None)
    carrier: dict[str, Any] = {}
    busprop.inject(carrier, destination="ws://bench/echo", keys=traced_websockets.METADATA_KEYS)
    traced_message = json.dumps({**json.loads(MESSAGE), "metadata": carrier})

    def splice() -> None:
        outgoing = traced_websockets._Outgoing.of(MESSAGE, None)
        assert outgoing is not None
        outgoing.metadata.update(carrier)
        outgoing.render()

    def parse() -> None:
        traced_websockets._metadata(traced_websockets._received_object(traced_message))

    def inject() -> None:
        busprop.inject({}, destination="ws://bench/echo", keys=traced_websockets.METADATA_KEYS)

    def continue_trace() -> None:
        with busprop.continue_trace(
            carrier, system="websocket", destination="ws://bench/echo", keys=traced_websockets.METADATA_KEYS
        ):
            pass

    costs = []
    for name, work in [
        ("adapter: parse + splice metadata into an outgoing message", splice),
        ("adapter: find metadata in an incoming message", parse),
        ("core: busprop.inject (sentry-sdk's trace values)", inject),
        ("core: busprop.continue_trace, nothing sampled", continue_trace),
    ]:
        start = time.perf_counter()
        for _ in range(messages):
            work()
        costs.append((name, (time.perf_counter() - start) / messages * 1e6))
    return costs


def init(rate: float | None) -> None:
    sentry_sdk.init(dsn="http://public@127.0.0.1/1", transport=DroppingTransport, traces_sample_rate=rate)


CONFIGURATIONS: list[tuple[str, bool, float | None]] = [
    ("bare websockets", False, None),
    ("busprop, traces_sample_rate=1.0", True, 1.0),
    ("busprop, traces_sample_rate=0.0", True, 0.0),
    ("busprop, traces_sample_rate=None", True, None),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--round-trips", type=int, default=1000, help="per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="best of, interleaved")
    arguments = parser.parse_args()
    scenarios = [("1 connection", 1), (f"{CONCURRENT} connections", CONCURRENT)]
    best: dict[tuple[str, str], float] = {}
    for _ in range(arguments.repeats):
        for scenario, connections in scenarios:
            for name, traced, rate in CONFIGURATIONS:
                init(rate)
                rate_per_second = asyncio.run(measure(traced, connections, arguments.round_trips))
                key = (scenario, name)
                best[key] = max(best.get(key, 0.0), rate_per_second)
    costs = per_message_costs()
    sentry_sdk.init()
    print(f"Echo round trips of a {len(MESSAGE)}-byte JSON message, best of {arguments.repeats}\n")
    print(f"| {'scenario':<14} | {'configuration':<34} | {'round trips/s':>13} | {'vs bare':>7} |")
    print(f"| {'-' * 14} | {'-' * 34} | {'-' * 13}: | {'-' * 6}: |")
    for scenario, _ in scenarios:
        bare = best[(scenario, CONFIGURATIONS[0][0])]
        for name, _, _ in CONFIGURATIONS:
            value = best[(scenario, name)]
            print(f"| {scenario:<14} | {name:<34} | {value:>13,.0f} | {value / bare:>6.2f}x |")
    print("\nWhere a message's cost goes (traces_sample_rate=None), per message:\n")
    for name, microseconds in costs:
        print(f"  {microseconds:6.1f} µs  {name}")


if __name__ == "__main__":
    main()
