"""A command-line chat client: each line you send starts its own trace, carried to every reader.

    python examples/websocket_chat/client.py ws://127.0.0.1:8765/chat --user ada
    python examples/websocket_chat/client.py ws://127.0.0.1:8765/chat --user ada --message hi --message bye

Interactively, type lines; with ``--message`` the client sends each one, waits until the server
has broadcast it back, and exits. Each message is sent inside a ``chat.send`` transaction; each
message received is handled inside the trace it carries. ``SENTRY_DSN``, ``--spotlight`` and
``BUSPROP_CAPTURE`` work as for ``server.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import sentry_sdk

from busprop import websockets as traced_websockets


async def send(ws: traced_websockets.TracedConnection, user: str, text: str) -> str:
    """Send one chat line in its own trace; returns the trace id."""
    with sentry_sdk.start_transaction(op="chat.send", name="chat message") as transaction:
        await ws.send(json.dumps({"user": user, "message": text}))
    print(f"> {text}    (trace {transaction.trace_id})", flush=True)
    return transaction.trace_id


def show(raw: str | bytes) -> dict[str, object]:
    body = json.loads(raw)
    trace = (sentry_sdk.get_traceparent() or "").split("-")[0]
    print(f"< {body.get('user')}: {body.get('message')}    (handled in trace {trace})", flush=True)
    return body  # type: ignore[no-any-return]


async def send_and_wait(ws: traced_websockets.TracedConnection, user: str, messages: list[str]) -> None:
    for text in messages:
        await send(ws, user, text)
        while True:
            body = show(await ws.recv())
            if body.get("user") == user and body.get("message") == text:
                break


async def interactive(ws: traced_websockets.TracedConnection, user: str) -> None:
    async def receive() -> None:
        async for raw in ws:
            show(raw)

    receiver = asyncio.create_task(receive())
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip():
            await send(ws, user, line.rstrip("\n"))
    receiver.cancel()


async def main(url: str, user: str, messages: list[str]) -> None:
    async with traced_websockets.connect(url) as ws:
        if messages:
            await send_and_wait(ws, user, messages)
        else:
            await interactive(ws, user)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8765/chat")
    parser.add_argument("--user", default="cli")
    parser.add_argument("--message", action="append", default=[], help="send this and exit (repeatable)")
    parser.add_argument("--spotlight", action="store_true")
    arguments = parser.parse_args()
    capture_path = os.environ.get("BUSPROP_CAPTURE")
    if capture_path:
        from busprop.testing import init_capturing

        init_capturing(traces_sample_rate=1.0)
    else:
        sentry_sdk.init(
            dsn=os.environ.get("SENTRY_DSN"), traces_sample_rate=1.0, spotlight=arguments.spotlight or None
        )
    asyncio.run(main(arguments.url, arguments.user, arguments.message))
    if capture_path:
        from busprop.testing import dump_captured

        dump_captured(capture_path)
    sentry_sdk.flush()
