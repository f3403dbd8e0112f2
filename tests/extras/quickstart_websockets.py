"""websockets quick start, as ``pip install "busprop[websockets]"`` alone must run it.

A client sends a message inside a ``checkout`` transaction to a server wrapped with
``traced_handler``; the server handles it in the checkout's trace. What Sentry would receive goes
to ``$BUSPROP_CAPTURE`` (tests/test_extras.py reads it).
"""

from __future__ import annotations

import asyncio
import json
import os

import sentry_sdk
from websockets.asyncio.server import serve

from busprop import websockets as traced_websockets
from busprop.testing import dump_captured, init_capturing


async def chat(ws):  # type: ignore[no-untyped-def]
    async for message in ws:  # each message is processed in the trace it carries
        print("consumed", sentry_sdk.get_traceparent())
        await ws.send(json.dumps({"echo": json.loads(message)["message"]}))


async def main() -> None:
    async with serve(traced_websockets.traced_handler(chat), "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with sentry_sdk.start_transaction(name="checkout") as checkout:
            async with traced_websockets.connect(f"ws://127.0.0.1:{port}/chat") as ws:
                await ws.send(json.dumps({"message": "order 42"}))
                await ws.recv()
        print("produced", checkout.trace_id)


init_capturing(traces_sample_rate=1.0)  # in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0)
asyncio.run(asyncio.wait_for(main(), timeout=30))
dump_captured(os.environ["BUSPROP_CAPTURE"])
