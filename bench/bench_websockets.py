"""Echo round trips over WebSockets: bare ``websockets``, busprop and sentry-sdk alone, in one run.

A server and its clients share one event loop on loopback; each client sends a small JSON chat
message and waits for the server's echo. Bare: plain ``websockets`` connections. busprop: the
server wrapped with ``traced_handler`` and the client opened with ``busprop.websockets.connect``,
so every message carries the trace, the server processes each one in a transaction (sampled or
not) and the client each echo, with ``traces_sample_rate`` 1.0, 0.0 and None. The client sends
outside any transaction (the trace's head is its propagation context), so what is measured is
busprop's work, not the client's own transactions. A transport that drops envelopes stands in for
the network.

sentry-sdk alone (``measure(..., sdk_alone=True)``, with ``traces_sample_rate`` 0.0 or None): the
same echo over bare connections, each end doing by hand what busprop asks of sentry-sdk per
message (``bench/sdk_alone.py``) with the same JSON work, and no busprop code. busprop's WebSocket
tracing is per connection (``traced_handler``, ``connect``: no Integration, nothing patched), so
the same ``init`` leaves these connections untraced and all three configurations share one SDK
set-up. Timed beside busprop in the same run, it tells the SDK's own per-message cost from
busprop's: busprop's is the difference. ``bench/instructions.py`` counts the same code (and, with
``mode="recipe"``, Sentry's "Instrument Queues" recipe in the same echo), so the counts and the
timings are of one copy.

Run: ``python bench/bench_websockets.py [--round-trips N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import pydantic_core
import sdk_alone
import sentry_sdk
from sentry_sdk.transport import Transport
from websockets.asyncio.client import ClientConnection
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
#: A client's part of the echo: ``round_trips`` round trips over one open connection.
ClientLoop = Callable[[Any, int], Awaitable[None]]
#: A hand-written end's send of a JSON object, the trace written into its ``metadata``.
Send = Callable[[Any, dict[str, Any]], Awaitable[None]]
#: A hand-written end's processing of a received message (the message, its object, its number).
Processing = Callable[[str | bytes, dict[str, Any], int], AbstractContextManager[None]]
#: The destination the hand-written ends give each message (they read no handshake).
DESTINATION = "ws://127.0.0.1/echo"


async def echo_round_trips(ws: Any, round_trips: int) -> None:
    for _ in range(round_trips):
        await ws.send(MESSAGE)
        await ws.recv()


async def measure(traced: bool, connections: int, round_trips: int, *, sdk_alone: bool = False) -> float:
    """Round trips per second over ``connections`` concurrent connections (handshakes not timed).

    ``sdk_alone``: bare connections with sentry-sdk alone at both ends (:func:`handwritten_ends`),
    in the mode the SDK's ``traces_sample_rate`` gives (:func:`sdk_alone_mode`); ``traced`` must be
    False then."""
    if sdk_alone:
        if traced:
            raise ValueError("sdk_alone is sentry-sdk without busprop: traced must be False")
        return await measure_handwritten(sdk_alone_mode(), connections, round_trips)
    handler: Callable[[Any], Awaitable[None]] = (
        traced_websockets.traced_handler(traced_echo) if traced else bare_echo
    )
    opener: Opener = traced_websockets.connect if traced else bare_connect
    return await _measure(handler, opener, echo_round_trips, connections, round_trips)


async def measure_handwritten(mode: str, connections: int, round_trips: int) -> float:
    """:func:`measure` over bare connections with the tracing of both ends written by hand
    (:func:`handwritten_ends`'s ``mode``)."""
    handler, client = handwritten_ends(mode)
    return await _measure(handler, bare_connect, client, connections, round_trips)


async def _measure(
    handler: Callable[[Any], Awaitable[None]],
    opener: Opener,
    client: ClientLoop,
    connections: int,
    round_trips: int,
) -> float:
    per_connection = max(1, round_trips // connections)
    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/echo"
        clients = [await opener(url) for _ in range(connections)]
        start = time.perf_counter()
        await asyncio.gather(*(client(ws, per_connection) for ws in clients))
        elapsed = time.perf_counter() - start
        for ws in clients:
            await ws.close()
    return per_connection * connections / elapsed


def sdk_alone_mode() -> str:
    """``bench/sdk_alone.py``'s mode for the initialised SDK: ``off`` (``traces_sample_rate=None``)
    or ``unsampled`` (0.0). A sampled head would need the sampled ends' spans, not written here."""
    rate = sentry_sdk.get_client().options.get("traces_sample_rate")
    if rate is None:
        return "off"
    if rate == 0.0:
        return "unsampled"
    raise ValueError(f"sentry-sdk alone is written for traces_sample_rate 0.0 and None, not {rate}")


def handwritten_ends(mode: str) -> tuple[Callable[[ServerConnection], Awaitable[None]], ClientLoop]:
    """The server's handler and the client's loop of :func:`measure`'s echo, the tracing written by
    hand around bare connections, in the way busprop's traced connections carry it: the trace read
    from and written into each JSON message's ``metadata`` (parsed and written with pydantic_core,
    busprop's JSON library; a received message sent back is not parsed again), and each received
    message processed until the next receive, so that each end sends from inside the message it
    processes (the client's first send is outside any, as :func:`measure`'s traced client's).

    ``mode`` ``off`` or ``unsampled``: sentry-sdk alone, what busprop asks of sentry-sdk per message
    (``sdk_alone.processing`` around each received message; each send asks the current scope for
    the two values, the baggage with its third-party members, as busprop's send does: not
    ``sdk_alone.publishing``, whose ``sentry_sdk.get_baggage()`` leaves them out). ``recipe``:
    Sentry's "Instrument Queues" recipe (``bench/bench_peers.py``), a ``queue.publish`` span around
    each send and a transaction with its ``queue.process`` span around each message (sampled; for
    ``bench/instructions.py``)."""
    send: Send
    processing: Processing
    if mode == "recipe":
        send, processing = _recipe_ends()
    else:
        send, processing = _sdk_alone_ends(mode)

    async def echo(ws: ServerConnection) -> None:
        index = 0
        async for message in ws:
            index += 1
            body = pydantic_core.from_json(message)
            with processing(message, body, index):
                await send(ws, body)

    async def round_trips(ws: ClientConnection, count: int) -> None:
        await send(ws, pydantic_core.from_json(MESSAGE))
        for index in range(count):
            message = await ws.recv()
            with processing(message, pydantic_core.from_json(message), index + 1):
                if index < count - 1:
                    await send(ws, pydantic_core.from_json(MESSAGE))

    return echo, round_trips


def _sdk_alone_ends(mode: str) -> tuple[Send, Processing]:
    if mode not in ("off", "unsampled"):
        raise ValueError(f"sentry-sdk alone's WebSocket ends are written for off and unsampled, not {mode}")

    async def send(ws: Any, body: dict[str, Any]) -> None:
        scope = sentry_sdk.get_current_scope()
        baggage = scope.get_baggage()
        body["metadata"] = {
            "sentryTrace": scope.get_traceparent(),
            "baggage": baggage.serialize(include_third_party=True) if baggage is not None else None,
        }
        await ws.send(pydantic_core.to_json(body).decode())

    def processing(message: str | bytes, body: dict[str, Any], index: int) -> AbstractContextManager[None]:
        return sdk_alone.processing(_trace_of(body), DESTINATION, mode)

    return send, processing


def _trace_of(body: dict[str, Any]) -> dict[str, Any]:
    """The two trace values a message's ``metadata`` carries, under their header names."""
    metadata = body.get("metadata") or {}
    return {"sentry-trace": metadata.get("sentryTrace"), "baggage": metadata.get("baggage")}


def _recipe_ends() -> tuple[Send, Processing]:
    from bench_peers import recipe_process, recipe_publish

    async def send(ws: Any, body: dict[str, Any]) -> None:
        with recipe_publish(DESTINATION, MESSAGE.encode()) as headers:
            body["metadata"] = {"sentryTrace": headers["sentry-trace"], "baggage": headers.get("baggage")}
            await ws.send(pydantic_core.to_json(body).decode())

    def processing(message: str | bytes, body: dict[str, Any], index: int) -> AbstractContextManager[None]:
        size = message.encode() if isinstance(message, str) else message
        return recipe_process(_trace_of(body), DESTINATION, size, str(index), None)

    return send, processing


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


#: (name, busprop's traced ends, traces_sample_rate, sentry-sdk alone's hand-written ends)
CONFIGURATIONS: list[tuple[str, bool, float | None, bool]] = [
    ("bare websockets", False, None, False),
    ("busprop, traces_sample_rate=1.0", True, 1.0, False),
    ("sentry-sdk alone, traces_sample_rate=0.0", False, 0.0, True),
    ("busprop, traces_sample_rate=0.0", True, 0.0, False),
    ("sentry-sdk alone, traces_sample_rate=None", False, None, True),
    ("busprop, traces_sample_rate=None", True, None, False),
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
            for name, traced, rate, alone in CONFIGURATIONS:
                init(rate)
                measuring = measure(traced, connections, arguments.round_trips, sdk_alone=alone)
                key = (scenario, name)
                best[key] = max(best.get(key, 0.0), asyncio.run(measuring))
    costs = per_message_costs()
    sentry_sdk.init()
    width = max(len(name) for name, *_ in CONFIGURATIONS)
    print(f"Echo round trips of a {len(MESSAGE)}-byte JSON message, best of {arguments.repeats}\n")
    print(f"| {'scenario':<14} | {'configuration':<{width}} | {'round trips/s':>13} | {'vs bare':>7} |")
    print(f"| {'-' * 14} | {'-' * width} | {'-' * 13}: | {'-' * 6}: |")
    for scenario, _ in scenarios:
        bare = best[(scenario, CONFIGURATIONS[0][0])]
        for name, *_ in CONFIGURATIONS:
            value = best[(scenario, name)]
            print(f"| {scenario:<14} | {name:<{width}} | {value:>13,.0f} | {value / bare:>6.2f}x |")
    print("\nWhere a message's cost goes (traces_sample_rate=None), per message:\n")
    for name, microseconds in costs:
        print(f"  {microseconds:6.1f} µs  {name}")


if __name__ == "__main__":
    main()
