"""A chat server: each message is broadcast to everyone connected, every hop in the sender's trace.

It serves the chat page on ``/`` and the WebSocket on ``/chat``, on one port. Each message
received is processed inside the trace it carries (its ``queue.process`` span) and each copy
broadcast to a peer is a ``queue.publish`` span inside it, so each peer's handling of that copy
continues the same trace.

    python examples/websocket_chat/server.py --port 8765 [--spotlight]

``SENTRY_DSN`` sends the traces to Sentry; ``--spotlight`` to a local Spotlight; with
``BUSPROP_CAPTURE=path`` the server keeps what it would send and writes it to ``path`` as JSON when
it stops (the example's tests use that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from http import HTTPStatus
from pathlib import Path

import sentry_sdk
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from busprop import websockets as traced_websockets

PAGE = Path(__file__).with_name("index.html")
PEERS: set[traced_websockets.TracedConnection] = set()


async def chat(ws: traced_websockets.TracedConnection) -> None:
    """One connection: every JSON message ``{"user", "message"}`` goes to every peer."""
    PEERS.add(ws)
    try:
        async for raw in ws:
            try:
                body = json.loads(raw)
                outgoing = json.dumps({"user": str(body["user"]), "message": str(body["message"])})
            except (ValueError, KeyError, TypeError):
                await ws.send(json.dumps({"error": 'send {"user": ..., "message": ...}'}))
                continue
            with sentry_sdk.start_span(op="chat.broadcast", name=f"broadcast to {len(PEERS)} peers"):
                await asyncio.gather(*(deliver(peer, outgoing) for peer in list(PEERS)))
    finally:
        PEERS.discard(ws)


async def deliver(peer: traced_websockets.TracedConnection, message: str) -> None:
    try:
        await peer.send(message)  # busprop adds "metadata": {"sentryTrace", "baggage"}
    except ConnectionClosed:
        PEERS.discard(peer)


def page_or_websocket(connection: ServerConnection, request: Request) -> Response | None:
    """Serve the chat page over plain HTTP; let ``/chat`` through to the WebSocket handshake."""
    path = request.path.split("?", 1)[0]
    if path == "/chat":
        return None
    if path in ("/", "/index.html"):
        response = connection.respond(HTTPStatus.OK, PAGE.read_text(encoding="utf-8"))
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        return response
    return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")


def init_sentry(spotlight: bool) -> str | None:
    capture = os.environ.get("BUSPROP_CAPTURE")
    if capture:
        from busprop.testing import init_capturing

        init_capturing(traces_sample_rate=1.0)
    else:
        sentry_sdk.init(dsn=os.environ.get("SENTRY_DSN"), traces_sample_rate=1.0, spotlight=spotlight or None)
    return capture


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    handler = traced_websockets.traced_handler(chat)
    async with serve(handler, host, port, process_request=page_or_websocket) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"chat on http://{host}:{bound}/ (WebSocket ws://{host}:{bound}/chat)", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--spotlight", action="store_true", help="send traces to a local Spotlight")
    arguments = parser.parse_args()
    capture_path = init_sentry(arguments.spotlight)
    asyncio.run(main(arguments.host, arguments.port))
    if capture_path:
        from busprop.testing import dump_captured

        dump_captured(capture_path)
    sentry_sdk.flush()
