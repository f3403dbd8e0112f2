"""The WebSocket leg: a chat message to an in-process server and its reply, one trace end to end.

The client connects inside the demo's trace (the handshake carries it), sends a chat message in
the format of Sentry's docs, and the server replies from inside the message's processing; the
client's handling of the reply is the last hop. No service is needed: the server listens on a
free loopback port for the duration of the leg.
"""

from __future__ import annotations

import asyncio
import json

TITLE = "WebSocket chat (websockets)"
ORDER = 10


async def _chat() -> None:
    from websockets.asyncio.server import serve

    from busprop import websockets as traced_websockets

    async def handler(ws: traced_websockets.TracedConnection) -> None:
        async for message in ws:
            text = json.loads(message)["message"]
            await ws.send(json.dumps({"message": f"echo: {text}", "from": "server"}))

    async with serve(traced_websockets.traced_handler(handler), "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with traced_websockets.connect(f"ws://127.0.0.1:{port}/chat") as ws:
            await ws.send(json.dumps({"message": "hello", "from": "demo"}))
            await ws.recv()


def run() -> str | None:
    try:
        import websockets  # noqa: F401
    except ImportError:
        return "the websockets package is not installed (pip install 'busprop[websockets]')"
    asyncio.run(asyncio.wait_for(_chat(), timeout=10))  # a failure raises: the leg failed
    return None
