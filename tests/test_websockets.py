"""busprop.websockets: per-message traces over real ``websockets`` connections on loopback.

Every test runs a real ``websockets.asyncio`` server on a free loopback port in this process and
asserts on what Sentry would receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as bare_connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidURI

import busprop
import busprop.sdk
from busprop import websockets as traced_ws
from tests.conftest import IN_CI, Captured, tool_missing
from tests.processes import ROOT, read_captured

Init = Callable[..., Captured]
Handler = Callable[[Any], Awaitable[None]]


def new_trace(flag: str = "1") -> tuple[str, str, str]:
    """A fresh (trace_id, span_id, sentry-trace) triple."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"{trace_id}-{span_id}-{flag}"


def current_trace_id() -> str:
    return (sentry_sdk.get_traceparent() or "").split("-")[0]


@asynccontextmanager
async def running(handler: Handler, *, wrap: bool = True, **options: Any) -> AsyncIterator[str]:
    """A server on a free loopback port; yields its ``ws://`` URL (path ``/chat``)."""
    served = traced_ws.traced_handler(handler) if wrap else handler
    async with serve(served, "127.0.0.1", 0, **options) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/chat"


def processes(captured: Captured) -> list[dict[str, Any]]:
    """The messages' transactions, each checked to hold its one ``queue.process`` span."""
    events = [t for t in captured.transactions() if t["contexts"]["trace"]["op"] == busprop.sdk.OP_TASK]
    for event in events:
        process_span(event)
    return events


def process_span(event: dict[str, Any]) -> dict[str, Any]:
    """A message's transaction's one ``queue.process`` span, checked against the transaction.

    It is the transaction's child, named after the destination, with the message's Queues data (the
    transaction does not repeat it) and the transaction's origin, and ends with the transaction's
    status (``ok``, or ``internal_error``).
    """
    trace = event["contexts"]["trace"]
    assert trace["op"] == busprop.sdk.OP_TASK
    (span,) = [span for span in event["spans"] if span["op"] == busprop.sdk.OP_PROCESS]
    assert (span["trace_id"], span["parent_span_id"]) == (trace["trace_id"], trace["span_id"])
    assert span["description"] == span["data"]["messaging.destination.name"]
    assert span["origin"] == trace["origin"] == traced_ws.ORIGIN
    assert not [key for key in trace["data"] if key.startswith("messaging.")]
    assert span["status"] == trace["status"] and span["status"] in ("ok", "internal_error")
    return span


def body_spans(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans a message's handling made, in the order they started: all under its ``queue.process`` span."""
    process = process_span(event)
    spans = [span for span in event["spans"] if span["span_id"] != process["span_id"]]
    by_id = {span["span_id"]: span for span in spans}
    for span in spans:
        top = span
        while top["parent_span_id"] in by_id:
            top = by_id[top["parent_span_id"]]
        assert top["parent_span_id"] == process["span_id"]
    return spans


def spans_by_id(captured: Captured) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for t in captured.transactions() for span in t["spans"]}


# Continuity ---------------------------------------------------------------------------------------


async def test_client_to_server_message_continues_the_senders_trace(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    seen: list[tuple[str, str]] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            seen.append((message, current_trace_id()))

    async with running(handler) as url, bare_connect(url) as bare:
        client = traced_ws.traced(bare)
        with sentry_sdk.start_transaction(name="client") as transaction:
            await client.send(json.dumps({"message": "hi"}))
    (message, server_trace), *_ = seen
    body = json.loads(message)
    assert body["message"] == "hi"
    assert body["metadata"]["sentryTrace"].startswith(transaction.trace_id)
    assert "sentry-trace_id=" + transaction.trace_id in body["metadata"]["baggage"]
    assert server_trace == transaction.trace_id

    (client_event,) = [t for t in captured.transactions() if t["transaction"] == "client"]
    (publish,) = client_event["spans"]
    assert publish["op"] == "queue.publish"
    assert publish["description"] == url
    assert publish["data"]["messaging.system"] == "websocket"
    assert publish["data"]["messaging.destination.name"] == url
    assert publish["data"]["messaging.message.body.size"] == len(message)
    assert publish["data"]["messaging.message.id"] == "1"  # the connection's first frame
    assert publish["status"] == "ok"
    (process,) = processes(captured)
    trace = process["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == (transaction.trace_id, publish["span_id"])
    assert trace["origin"] == "auto.queue.busprop.websockets"
    assert process_span(process)["status"] == "ok"
    assert process_span(process)["data"]["messaging.message.id"] == "1"  # the first frame received
    assert body_spans(process) == []
    assert process["transaction"] == url
    data = process_span(process)["data"]
    assert data["messaging.system"] == "websocket"
    assert data["messaging.destination.name"] == url
    assert data["messaging.operation.type"] == "process"
    assert data["messaging.message.body.size"] == len(message)
    assert process["_dsc"]["trace_id"] == transaction.trace_id
    assert process["_dsc"]["transaction"] == "client"


async def test_server_to_client_reply_continues_the_servers_processing(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            await ws.send(json.dumps({"reply": json.loads(message)["message"]}))

    async with running(handler) as url:
        with sentry_sdk.start_transaction(name="client") as transaction:
            async with traced_ws.connect(url) as ws:
                await ws.send('{"message": "ping"}')
                reply = await ws.recv()
                reply_trace = sentry_sdk.get_traceparent()
    assert json.loads(reply)["reply"] == "ping"
    assert reply_trace is not None and reply_trace.startswith(transaction.trace_id)
    by_parent = {t["contexts"]["trace"].get("parent_span_id"): t for t in processes(captured)}
    spans = spans_by_id(captured)
    (client_publish,) = [
        s
        for s in spans.values()
        if s["op"] == "queue.publish"
        and s["trace_id"] == transaction.trace_id
        and s["parent_span_id"] == transaction.span_id
    ]
    server_process = by_parent[client_publish["span_id"]]
    (server_publish,) = body_spans(server_process)
    assert server_publish["op"] == "queue.publish"
    assert server_publish["parent_span_id"] == process_span(server_process)["span_id"]  # sent from the body
    client_process = by_parent[server_publish["span_id"]]
    assert client_process["contexts"]["trace"]["trace_id"] == transaction.trace_id
    assert (
        reply_trace.split("-")[1] == process_span(client_process)["span_id"]
    )  # recv() runs in the reply's span
    for span in (client_publish, process_span(server_process), server_publish, process_span(client_process)):
        assert span["data"]["messaging.message.id"] == "1"  # each end's first frame each way


async def test_seed_format_from_a_plain_client_is_continued_and_metadata_merged(sentry_init: Init) -> None:
    """What a browser following Sentry's docs sends; other metadata and third-party baggage survive."""
    captured = sentry_init(traces_sample_rate=1.0)
    trace_id, span_id, sentry_trace = new_trace()
    replies: list[str] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            await ws.send(message)  # relayed: the trace is replaced, everything else kept

    async with running(handler) as url, bare_connect(url) as browser:
        sent = {
            "message": "Your data here",
            "metadata": {
                "sentryTrace": sentry_trace,
                "baggage": "vendor=acme,sentry-trace_id=" + trace_id,
                "room": 7,
            },
        }
        await browser.send(json.dumps(sent))
        replies.append(await browser.recv())
    (process,) = processes(captured)
    assert (process["contexts"]["trace"]["trace_id"], process["contexts"]["trace"]["parent_span_id"]) == (
        trace_id,
        span_id,
    )
    reply = json.loads(replies[0])
    (publish,) = body_spans(process)
    assert reply["message"] == "Your data here"
    assert reply["metadata"]["room"] == 7
    assert reply["metadata"]["sentryTrace"] == f"{trace_id}-{publish['span_id']}-1"
    assert reply["metadata"]["baggage"].startswith("vendor=acme,")


# Many connections ---------------------------------------------------------------------------------


async def test_100_connections_of_20_messages_each_keep_their_own_traces(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            await asyncio.sleep(0)  # let the other connections interleave inside this processing
            await ws.send(json.dumps({"n": json.loads(message)["n"], "seen": current_trace_id()}))

    async def client(url: str, index: int) -> list[tuple[str, str, str]]:
        results = []
        async with traced_ws.connect(url) as ws:
            for n in range(20):
                # each task forks its scopes, as an app serving concurrent requests does
                with (
                    sentry_sdk.isolation_scope(),
                    sentry_sdk.start_transaction(name=f"c{index}.{n}") as transaction,
                ):
                    await ws.send(json.dumps({"n": n}))
                    reply = json.loads(await ws.connection.recv())  # the server's side is under test
                    assert reply["n"] == n
                    results.append((transaction.trace_id, transaction.span_id, reply["seen"]))
        return results

    async with running(handler) as url:
        results = await asyncio.gather(*(client(url, index) for index in range(100)))
    flat = [row for rows in results for row in rows]
    assert len(flat) == 2000
    assert len({sent for sent, _, _ in flat}) == 2000
    for sent, _, seen_by_server in flat:
        assert sent == seen_by_server
    events = processes(captured)
    assert len(events) == 2000
    senders = {
        event["contexts"]["trace"]["trace_id"]: event
        for event in captured.transactions()
        if event["transaction"].startswith("c")
    }
    for event in events:
        trace = event["contexts"]["trace"]
        (publish,) = senders[trace["trace_id"]]["spans"]
        assert trace["parent_span_id"] == publish["span_id"]
    assert {event["contexts"]["trace"]["trace_id"] for event in events} == {sent for sent, _, _ in flat}


# Handshake ----------------------------------------------------------------------------------------


async def test_handshake_headers_give_the_connection_its_trace_and_metadata_wins(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    seen: list[tuple[str, str]] = []
    headers: dict[str, str] = {}

    raw_headers = Headers()

    async def handler(ws: traced_ws.TracedConnection) -> None:
        headers.update(ws.request.headers)
        raw_headers.update(ws.request.headers)
        await ws.send(json.dumps({"welcome": current_trace_id()}))
        async for message in ws:
            seen.append((message, current_trace_id()))

    _, _, other_trace = new_trace()
    async with running(handler) as url:
        with sentry_sdk.start_transaction(name="connect") as transaction:
            ws = await traced_ws.connect(url, additional_headers={"Baggage": "vendor=acme", "X-Other": "1"})
        welcome = json.loads(await ws.recv())
        await ws.connection.send("no metadata at all")
        await ws.connection.send(json.dumps({"metadata": {"sentryTrace": other_trace}}))
        await ws.close()
    assert headers["sentry-trace"].startswith(transaction.trace_id + "-" + transaction.span_id)
    assert headers["baggage"].startswith("vendor=acme,sentry-trace_id=" + transaction.trace_id)
    assert len(raw_headers.get_all("baggage")) == 1
    assert headers["x-other"] == "1"
    assert welcome["welcome"] == transaction.trace_id
    assert seen[0] == ("no metadata at all", transaction.trace_id)
    assert seen[1][1] == other_trace.split("-")[0]
    by_size = {process_span(t)["data"]["messaging.message.body.size"]: t for t in processes(captured)}
    bare_process = by_size[len("no metadata at all")]
    own_process = by_size[len(json.dumps({"metadata": {"sentryTrace": other_trace}}))]
    assert bare_process["contexts"]["trace"]["trace_id"] == transaction.trace_id
    assert bare_process["_dsc"]["transaction"] == "connect"
    assert own_process["contexts"]["trace"]["trace_id"] == other_trace.split("-")[0]
    assert own_process["contexts"]["trace"]["parent_span_id"] == other_trace.split("-")[1]
    assert own_process["_dsc"].get("transaction") != "connect"  # the handshake's baggage is not mixed in


async def test_connections_without_handshake_trace_each_start_their_own(sentry_init: Init) -> None:
    """A browser cannot send handshake headers: each connection is still its own trace."""
    sentry_init(traces_sample_rate=1.0)
    welcomes: list[str] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        await ws.send(json.dumps({"welcome": True}))

    async with running(handler) as url:
        with sentry_sdk.start_transaction(name="serve-time"):  # the server's own context is not a parent
            for _ in range(3):
                async with bare_connect(url) as browser:
                    welcomes.append(json.loads(await browser.recv())["metadata"]["sentryTrace"].split("-")[0])
    assert len(set(welcomes)) == 3


async def test_propagation_targets_switch_off_handshake_and_messages(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=[r"^ws://elsewhere/"])
    received: list[Any] = []

    async def handler(connection: ServerConnection) -> None:
        received.append(dict(connection.request.headers))
        async for message in connection:
            received.append(message)

    async with running(handler, wrap=False) as url:
        with sentry_sdk.start_transaction(name="client"):
            async with traced_ws.connect(url) as ws:
                await ws.send('{"a": 1}')
    assert "sentry-trace" not in received[0]
    assert received[1] == '{"a": 1}'


# What send() and recv() do with every kind of message ---------------------------------------------


SEND_UNCHANGED: list[tuple[Any, bool | None]] = [
    ("plain text", None),
    ("[1, 2]", None),
    ('"a string"', None),
    ('{"metadata": "not an object"}', None),
    ('{"metadata": null}', None),
    ('{"broken": ', None),
    ('{"a": 1}', False),  # str forced into a binary frame
    (b'{"a": 1}', None),  # bytes: a binary frame
    (b"\xff\xfe binary", None),
]


@pytest.mark.parametrize(("message", "text"), SEND_UNCHANGED)
async def test_send_passes_what_is_not_a_json_object_text_frame_unchanged(
    sentry_init: Init, message: Any, text: bool | None
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    received: list[Any] = []

    async def handler(connection: ServerConnection) -> None:
        received.append(await connection.recv())

    async with running(handler, wrap=False) as url:
        with sentry_sdk.start_transaction(name="client"):
            async with traced_ws.connect(url) as ws:
                await ws.send(message, text=text)
                await ws.connection.wait_closed()
    expected = message.encode() if text is False else message
    assert received == [expected]
    (client,) = captured.transactions()
    assert [span["op"] for span in client["spans"]] == ["queue.publish"]


@pytest.mark.parametrize(
    ("message", "text", "expected_prefix"),
    [
        ('{"a": 1, "b": [1.5, "x"]}  \n', None, '{"a": 1, "b": [1.5, "x"],"metadata":{'),
        ("{}", None, '{"metadata":{'),
        (b'{"a":1}', True, b'{"a":1,"metadata":{'),
        ('{"metadata": {"k": "v"}, "a": NaN}', None, '{"metadata":{"k":"v","sentryTrace":'),
    ],
)
async def test_send_writes_metadata_into_json_object_text_frames(
    sentry_init: Init, message: Any, text: bool | None, expected_prefix: Any
) -> None:
    sentry_init(traces_sample_rate=1.0)
    received: list[Any] = []

    async def handler(connection: ServerConnection) -> None:
        received.append(await connection.recv(decode=isinstance(message, str)))

    async with running(handler, wrap=False) as url:
        with sentry_sdk.start_transaction(name="client") as transaction:
            async with traced_ws.connect(url) as ws:
                await ws.send(message, text=text)
                await ws.connection.wait_closed()
    (got,) = received
    assert type(got) is type(message)
    assert got.startswith(expected_prefix)
    if isinstance(message, str) and message.endswith("\n"):
        assert got.endswith("}}  \n")  # trailing whitespace kept
    if isinstance(message, str) and "NaN" in message:
        assert got.endswith(',"a":NaN}')
    else:
        body = json.loads(got)
        metadata = body.pop("metadata")
        assert body == json.loads(message)
        assert metadata["sentryTrace"].startswith(transaction.trace_id)


BAD_INPUTS: list[Any] = [
    "not json",
    '{"metadata": "not an object"}',
    '{"metadata": ["sentryTrace", "x"]}',
    '{"metadata": {"sentryTrace": 5, "baggage": ["x"]}}',
    '{"metadata": {"sentryTrace": "771a43a4192642f0b136d5159a501700"}}',
    '{"metadata": {"sentryTrace": "00000000000000000000000000000000-b2bd6e9b3e4c5a1f-1"}}',
    json.dumps({"metadata": {"sentryTrace": "a" * 1_000_000, "baggage": "b" * 100}}),
    json.dumps({"metadata": {f"k{i}": "v" * 10 for i in range(60_000)}}),
    b'\xff\xfe{"metadata": {"sentryTrace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"}}',
    '{"metadata": {"sentryTrace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"}',  # truncated
    "[]",
    "",
    b"",
]


async def test_each_end_parses_a_frame_once_and_a_frame_without_metadata_never(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per traced echo round trip: one parse per send and per receive on each end, with
    ``strip_metadata`` too, except the server's send of the frame it received, which reuses that
    parse; a received frame without the text ``"metadata"`` is not parsed."""
    sentry_init(traces_sample_rate=1.0)
    parsed: list[str | bytes] = []
    parse = traced_ws._json_object

    def counting(message: str | bytes) -> dict[str, Any] | None:
        parsed.append(message)
        return parse(message)

    monkeypatch.setattr(traced_ws, "_json_object", counting)

    async def echo(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with running(echo) as url, traced_ws.connect(url, strip_metadata=True) as ws:
        for index in range(3):
            await ws.send(json.dumps({"n": index}))
            assert json.loads(await ws.recv()) == {"n": index}
    assert len(parsed) == 3 * 3  # client send, server recv, client recv
    assert all(message.startswith('{"n"') for message in parsed[::3])  # what the client sent
    parsed.clear()
    async with running(echo, wrap=False) as url, traced_ws.connect(url) as ws:
        await ws.connection.send('{"n": 1}')  # echoed untraced: received without metadata
        assert await ws.recv() == '{"n": 1}'
    assert parsed == []


async def test_a_relayed_frame_carries_each_sends_own_trace_and_is_never_changed(sentry_init: Init) -> None:
    """A server that sends what it received three times (``send``, ``broadcast``, ``send``)
    writes each send's trace into a copy of that frame: the received text and every other key
    stay as they were."""
    captured = sentry_init(traces_sample_rate=1.0)
    received: list[str | bytes] = []

    async def relay(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            received.append(message)
            before = str(message)
            await ws.send(message)
            traced_ws.broadcast([ws], message)
            await ws.send(message)
            assert message == before

    async with running(relay) as url, traced_ws.connect(url) as ws:
        await ws.send('{"n": 1, "metadata": {"room": "lobby"}}')
        echoes = [json.loads(await ws.recv()) for _ in range(3)]
    (sent,) = received
    assert json.loads(sent)["metadata"]["room"] == "lobby"
    publishes = [span for span in spans_by_id(captured).values() if span["op"] == "queue.publish"]
    parents = [echo["metadata"]["sentryTrace"].split("-")[1] for echo in echoes]
    assert len(set(parents)) == 3  # each send its own span, in the order sent
    assert {span["span_id"] for span in publishes} >= set(parents)
    for echo in echoes:
        assert echo["n"] == 1 and echo["metadata"]["room"] == "lobby"
        assert set(echo["metadata"]) == {"room", "sentryTrace", "baggage"}
    (server_process,) = [
        event
        for event in processes(captured)
        if event["contexts"]["trace"].get("parent_span_id") not in parents
    ]
    assert {echo["metadata"]["sentryTrace"].split("-")[0] for echo in echoes} == {
        server_process["contexts"]["trace"]["trace_id"]
    }


async def test_a_message_with_metadata_keeps_integers_over_64_bits_and_nan_when_traced(
    sentry_init: Init,
) -> None:
    """Writing the trace into an existing ``metadata`` object re-serialises the body: every value
    a Python or JavaScript peer may send survives it exactly (a JSON library that turned large
    integers into floats, or refused ``NaN``, would alter or drop the message)."""
    sentry_init(traces_sample_rate=1.0)
    received: list[str] = []

    async def handler(connection: ServerConnection) -> None:
        received.append(await connection.recv())

    message = '{"id": 123456789012345678901234567890, "x": NaN, "metadata": {"k": "v"}}'
    async with running(handler, wrap=False) as url:
        with sentry_sdk.start_transaction(name="client"):
            async with traced_ws.connect(url) as ws:
                await ws.send(message)
                await ws.connection.wait_closed()
    (got,) = received
    body = json.loads(got)
    assert body["id"] == 123456789012345678901234567890
    assert body["x"] != body["x"]  # NaN
    assert body["metadata"]["k"] == "v" and "sentryTrace" in body["metadata"]


async def test_bad_inputs_arrive_unchanged_under_fresh_traces_and_keep_the_connection(
    sentry_init: Init,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    received: list[tuple[Any, str]] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            received.append((message, current_trace_id()))
            await ws.send("ok")

    async with running(handler, max_size=4 * 2**20) as url, bare_connect(url, max_size=4 * 2**20) as browser:
        for message in BAD_INPUTS:
            await browser.send(message)
            assert await browser.recv() == "ok"
        assert browser.state.name == "OPEN"
    assert [message for message, _ in received] == BAD_INPUTS
    assert all(type(got) is type(sent) for (got, _), sent in zip(received, BAD_INPUTS, strict=True))
    trace_ids = [trace_id for _, trace_id in received]
    assert len(set(trace_ids)) == len(BAD_INPUTS)
    assert "771a43a4192642f0b136d5159a501700" not in trace_ids
    events = processes(captured)
    assert len(events) == len(BAD_INPUTS)
    assert {event["contexts"]["trace"]["trace_id"] for event in events} == set(trace_ids)
    message_ids = {process_span(event)["data"]["messaging.message.id"] for event in events}
    assert message_ids == {str(n) for n in range(1, len(BAD_INPUTS) + 1)}  # every frame counted


async def test_strip_metadata_returns_the_message_without_the_trace(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    received: list[Any] = []
    _, _, sentry_trace = new_trace()

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            received.append((message, current_trace_id()))

    handler_with_strip = traced_ws.traced_handler(handler, strip_metadata=True)
    async with running(handler_with_strip, wrap=False) as url, bare_connect(url) as browser:
        await browser.send(json.dumps({"message": "a", "metadata": {"sentryTrace": sentry_trace}}))
        await browser.send(json.dumps({"message": "b", "metadata": {"sentryTrace": sentry_trace, "room": 1}}))
        await browser.send(b'{"message": "c", "metadata": {"baggage": "x=1"}}')
        await browser.send('{"message": "untouched" }')
    assert [message for message, _ in received] == [
        '{"message":"a"}',
        '{"message":"b","metadata":{"room":1}}',
        b'{"message":"c"}',
        '{"message": "untouched" }',
    ]
    assert received[0][1] == received[1][1] == sentry_trace.split("-")[0]


# Errors and closes --------------------------------------------------------------------------------


async def close_behaviour(wrap: Callable[[Any], Any], code: int, reason: str) -> tuple[Any, ...]:
    async def handler(connection: ServerConnection) -> None:
        await connection.send("last")
        await connection.close(code, reason)

    async with running(handler, wrap=False) as url, bare_connect(url) as connection:
        ws = wrap(connection)
        messages = []
        try:
            async for message in ws:
                messages.append(message)
            outcome: Any = "ended"
        except ConnectionClosed as error:
            outcome = (
                type(error),
                error.rcvd.code if error.rcvd else None,
                error.rcvd.reason if error.rcvd else None,
            )
        try:
            await ws.send("after close")
            after: Any = None
        except ConnectionClosed as error:
            after = type(error)
        return messages, outcome, after, ws.close_code, ws.close_reason


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "going away"), (4001, "bye")])
async def test_closes_propagate_as_without_busprop(sentry_init: Init, code: int, reason: str) -> None:
    sentry_init(traces_sample_rate=1.0)
    bare = await close_behaviour(lambda connection: connection, code, reason)
    traced = await close_behaviour(traced_ws.traced, code, reason)
    assert traced == bare
    if code == 4001:
        assert bare[1] == (ConnectionClosedError, 4001, "bye")
    else:
        assert bare[1] == "ended" and bare[2] is ConnectionClosedOK


async def test_connection_errors_propagate_as_without_busprop(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    async with running(lambda ws: asyncio.sleep(0)) as url:
        port = url.split(":")[2].split("/")[0]
    url = f"ws://127.0.0.1:{port}/chat"
    with pytest.raises(OSError) as bare_error:
        await bare_connect(url, open_timeout=2)
    with sentry_sdk.start_transaction(name="client"), pytest.raises(OSError) as traced_error:
        await traced_ws.connect(url, open_timeout=2)
    assert type(traced_error.value) is type(bare_error.value)
    with pytest.raises(InvalidURI):
        await bare_connect("http://not-a-websocket-uri")
    with pytest.raises(InvalidURI):
        await traced_ws.connect("http://not-a-websocket-uri")


async def test_send_type_errors_are_the_connections(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        await ws.connection.wait_closed()

    async with running(handler) as url, traced_ws.connect(url) as ws:
        with pytest.raises(TypeError):
            await ws.send({"a": 1})
        with pytest.raises(TypeError):
            await ws.send(42)


async def test_an_exception_in_the_handler_fails_that_messages_processing(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            raise RuntimeError(f"cannot handle {message}")

    _, _, sentry_trace = new_trace()
    async with running(handler) as url, bare_connect(url) as browser:
        await browser.send(json.dumps({"metadata": {"sentryTrace": sentry_trace}}))
        with pytest.raises(ConnectionClosedError) as closed:
            await browser.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011  # as websockets does it
    (process,) = processes(captured)
    assert process["contexts"]["trace"]["status"] == "internal_error"
    assert process_span(process)["status"] == "internal_error"
    assert process["contexts"]["trace"]["trace_id"] == sentry_trace.split("-")[0]
    (error,) = captured.errors()
    assert error["exception"]["values"][-1]["type"] == "RuntimeError"
    assert error["exception"]["values"][-1]["mechanism"]["type"] == "busprop.websockets"
    assert error["contexts"]["trace"]["trace_id"] == sentry_trace.split("-")[0]
    assert error["contexts"]["trace"]["span_id"] == process_span(process)["span_id"]


async def test_an_exception_in_a_client_loop_fails_the_processing_under_async_with(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        await ws.send('{"n": 1}')
        await ws.connection.wait_closed()

    async with running(handler) as url:
        with pytest.raises(KeyError):
            async with traced_ws.connect(url) as ws:
                async for message in ws:
                    raise KeyError(message)
    (client_process,) = processes(captured)  # the server's handler receives nothing
    assert client_process["contexts"]["trace"]["status"] == "internal_error"
    assert process_span(client_process)["status"] == "internal_error"


# Sampling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1.0, 0.0, None])
async def test_unsampled_head_and_tracing_off_still_propagate(sentry_init: Init, rate: float | None) -> None:
    captured = sentry_init(traces_sample_rate=rate)
    trace_id, _, sentry_trace = new_trace("0")
    replies: list[dict[str, Any]] = []

    inside: list[str | None] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for _message in ws:
            inside.append(sentry_sdk.get_traceparent())  # what sentry-sdk's own integrations send
            await ws.send("{}")

    async with running(handler) as url, bare_connect(url) as browser:
        await browser.send(
            json.dumps(
                {
                    "metadata": {
                        "sentryTrace": sentry_trace,
                        "baggage": f"sentry-trace_id={trace_id},sentry-sampled=false",
                    }
                }
            )
        )
        replies.append(json.loads(await browser.recv()))
    metadata = replies[0]["metadata"]
    assert metadata["sentryTrace"].startswith(trace_id) and metadata["sentryTrace"].endswith("-0")
    assert "sentry-sampled=false" in metadata["baggage"]
    # With tracing on, sentry-sdk's own propagation (its HTTP integrations) says the head's "no" too;
    # with it off the SDK leaves the decision out of its value, as it does everywhere.
    (own,) = inside
    assert own == (
        metadata["sentryTrace"] if rate is not None else metadata["sentryTrace"].removesuffix("-0")
    )
    assert captured.transactions() == []


# examples/websocket_chat: the server with the Python client and with the page in headless Chromium


EXAMPLE = ROOT / "examples" / "websocket_chat"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chat_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The example's server on a free port, capturing; yields (port, capture file) and stops it."""
    capture = tmp_path / "server.json"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "BUSPROP_CAPTURE": str(capture)}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "server.py"), "--port", "0"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"server did not start: {line}{process.stderr.read() if process.stderr else ''}"
        yield int(match.group(1)), capture
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr


def test_example_python_client_against_the_chat_server(tmp_path: Path) -> None:
    client_capture = tmp_path / "client.json"
    with chat_server(tmp_path) as (port, server_capture):
        output = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE / "client.py"),
                f"ws://127.0.0.1:{port}/chat",
                "--user",
                "ada",
                "--message",
                "hello",
                "--message",
                "bye",
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT), "BUSPROP_CAPTURE": str(client_capture)},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=True,
        ).stdout
    assert "< ada: hello" in output and "< ada: bye" in output
    client = read_captured(client_capture)["transactions"]
    server = read_captured(server_capture)["transactions"]
    sends = [t for t in client if t["transaction"] == "chat message"]
    assert len(sends) == 2 and len(server) == 2
    for send, process in zip(sends, server, strict=True):
        (publish,) = send["spans"]
        trace = process["contexts"]["trace"]
        assert (trace["trace_id"], trace["parent_span_id"]) == (
            send["contexts"]["trace"]["trace_id"],
            publish["span_id"],
        )
        assert f"(trace {trace['trace_id']})" in output
        broadcast, peer_publish = body_spans(process)
        assert (broadcast["op"], peer_publish["op"]) == ("chat.broadcast", "queue.publish")
        assert broadcast["parent_span_id"] == process_span(process)["span_id"]
        assert peer_publish["parent_span_id"] == broadcast["span_id"]
        (handled,) = [
            t for t in client if t["contexts"]["trace"].get("parent_span_id") == peer_publish["span_id"]
        ]
        assert handled["contexts"]["trace"]["op"] == busprop.sdk.OP_TASK
        assert handled["contexts"]["trace"]["trace_id"] == trace["trace_id"]
        assert process_span(handled)["status"] == "ok"


class HeadlessChromium:
    """Chromium driven over the DevTools protocol on a pipe (fd 3 in, fd 4 out, NUL-separated JSON).

    Waiting on the page's state, instead of ``--dump-dom`` with a virtual time budget, keeps the
    test independent of how fast a loaded machine answers.
    """

    def __init__(self, chromium: str, url: str, profile: Path) -> None:
        to_chrome, self._commands = os.pipe()
        self._events, from_chrome = os.pipe()
        wiring = f'exec "$0" "$@" 3<&{to_chrome} 4>&{from_chrome} {to_chrome}<&- {from_chrome}>&-'
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                wiring,
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                url,
            ],
            pass_fds=(to_chrome, from_chrome),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._last_id = 0
        self._session: str | None = None

    def __enter__(self) -> HeadlessChromium:
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(target for target in targets if target["type"] == "page")
        self._session = self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})[
            "sessionId"
        ]
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._events)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20) -> dict[str, Any]:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._last_id:
                    assert "error" not in reply, reply
                    return reply["result"]  # type: ignore[no-any-return]
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"chromium did not answer {method}"
            ready, _, _ = select.select([self._events], [], [], remaining)
            if ready:
                chunk = os.read(self._events, 65536)
                assert chunk, "chromium exited"
                self._buffer += chunk

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get(
            "value"
        )

    def wait_for(self, expression: str, expected: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (value := self.evaluate(expression)) != expected:
            assert time.monotonic() < deadline, f"{expression} is {value!r}, not {expected!r}"
            time.sleep(0.05)


def test_example_browser_page_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "chromium is not installed (apt-get install chromium; dev.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with chat_server(tmp_path) as (port, server_capture):
        url = f"http://127.0.0.1:{port}/?auto=hello%20from%20chromium"
        with HeadlessChromium(chromium, url, tmp_path / "profile") as browser:
            browser.wait_for("document.getElementById('status').textContent", "round trip done")
            dom = browser.evaluate("document.documentElement.outerHTML")
    assert '<p id="status">round trip done</p>' in dom, dom
    sent = re.search(r'data-direction="sent" data-sentry-trace="([0-9a-f]{32})-([0-9a-f]{16})-1"', dom)
    received = re.search(
        r'data-direction="received" data-sentry-trace="([0-9a-f]{32})-([0-9a-f]{16})-1"', dom
    )
    assert sent and received, dom
    page_trace, page_span = sent.groups()
    (process,) = read_captured(server_capture)["transactions"]
    trace = process["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"], trace["op"]) == (
        page_trace,
        page_span,
        busprop.sdk.OP_TASK,
    )
    assert process_span(process)["status"] == "ok"
    assert process["_dsc"]["environment"] == "browser"  # the page's frozen baggage is continued
    assert process["_dsc"]["trace_id"] == page_trace
    _broadcast, publish = body_spans(process)
    assert received.groups() == (page_trace, publish["span_id"])  # the copy the page got is that span's child


# Sentry's Node SDK following the docs -------------------------------------------------------------


async def test_node_sdk_client_following_the_docs_interoperates_both_ways(
    sentry_init: Init, tmp_path: Path
) -> None:
    """@sentry/node 11: getTraceData() into the message, continueTrace() from the reply."""
    node = shutil.which("node")
    if node is None or not (ROOT / "tests" / "node" / "node_modules" / "@sentry" / "node").is_dir():
        message = "node and tests/node/node_modules are needed (./dev.sh test installs them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    captured = sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            await ws.send(json.dumps({"reply": json.loads(message)["message"]}))

    output = tmp_path / "node.json"
    async with running(handler) as url:
        process = await asyncio.create_subprocess_exec(
            node,
            "--experimental-websocket",
            "websockets_seed_client.mjs",
            url,
            str(output),
            cwd=ROOT / "tests" / "node",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(output.read_text())
    node_trace, node_span, _ = result["sent"]["sentry-trace"].split("-")

    (process_event,) = processes(captured)
    trace = process_event["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == (node_trace, node_span)
    dsc = process_event["_dsc"]
    assert (dsc["release"], dsc["transaction"]) == ("node-client@1.0", "node chat send")  # Node's frozen DSC
    (publish,) = body_spans(process_event)

    assert result["reply"]["reply"] == "hello from node"
    assert result["reply"]["metadata"]["sentryTrace"] == f"{node_trace}-{publish['span_id']}-1"
    assert result["reply"]["metadata"]["baggage"] == result["sent"]["baggage"]  # passed on as received
    (receive,) = [span for span in result["spans"] if span["name"] == "node chat receive"]
    assert (receive["trace_id"], receive["parent_span_id"]) == (node_trace, publish["span_id"])


async def test_the_wrapper_leaves_everything_else_to_the_connection(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)

    paths: list[str] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        paths.append(ws.request.path)
        async for message in ws:
            await ws.send(message)

    async with running(handler) as url:
        async with traced_ws.connect(url + "?token=secret") as ws:
            assert traced_ws.traced(ws) is ws
            assert ws.destination == url  # no query string
            assert isinstance(await ws.ping(), asyncio.Future)
            assert ws.remote_address[0] == "127.0.0.1"
            await ws.send(b"\x00\x01", text=False)
            fragments = [fragment async for fragment in ws.recv_streaming()]
            assert b"".join(fragments) == b"\x00\x01"
        async for reconnecting in traced_ws.connect(url):
            assert isinstance(reconnecting, traced_ws.TracedConnection)
            await reconnecting.send("{}")
            assert json.loads(await reconnecting.recv())["metadata"]["sentryTrace"]
            break
        opened = await traced_ws.connect(url)
        assert isinstance(opened, traced_ws.TracedConnection)
        await opened.close()
        assert opened.close_code == 1000
    assert paths[0] == "/chat?token=secret"


async def test_broadcast_writes_the_trace_once_in_one_publish_span(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    peers: list[traced_ws.TracedConnection] = []
    ready = asyncio.Event()

    async def handler(ws: traced_ws.TracedConnection, room: str) -> None:
        peers.append(ws)
        if len(peers) == 3:
            ready.set()
        async for message in ws:
            traced_ws.broadcast(peers, json.dumps({"room": room, "message": message}))

    async def with_room(connection: ServerConnection) -> None:
        await traced_ws.traced_handler(handler)(connection, room="lobby")

    _, span_id, sentry_trace = new_trace()
    async with running(with_room, wrap=False) as url:
        clients = [await bare_connect(url) for _ in range(3)]
        await ready.wait()
        await clients[0].send(json.dumps({"metadata": {"sentryTrace": sentry_trace}}))
        received = [await client.recv() for client in clients]
        for client in clients:
            await client.close()
    assert len(set(received)) == 1
    body = json.loads(received[0])
    assert body["room"] == "lobby"
    (process,) = processes(captured)
    assert process["contexts"]["trace"]["parent_span_id"] == span_id
    (publish,) = body_spans(process)
    assert publish["op"] == "queue.publish"
    assert publish["parent_span_id"] == process_span(process)["span_id"]
    assert publish["data"]["messaging.batch.message_count"] == 3
    assert publish["data"]["messaging.destination.name"] == url
    assert body["metadata"]["sentryTrace"] == f"{sentry_trace.split('-')[0]}-{publish['span_id']}-1"


async def test_each_loop_body_runs_in_its_own_messages_transaction(sentry_init: Init) -> None:
    """Spans and errors of the loop body belong to the message; it ends when the next is asked for."""
    captured = sentry_init(traces_sample_rate=1.0)

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            with sentry_sdk.start_span(op="work", name=json.loads(message)["name"]):
                pass
            if json.loads(message)["name"] == "second":
                sentry_sdk.capture_message("handled second")

    traces = [new_trace() for _ in range(3)]
    async with running(handler) as url, bare_connect(url) as browser:
        for (_, _, sentry_trace), name in zip(traces, ["first", "second", "third"], strict=True):
            await browser.send(json.dumps({"name": name, "metadata": {"sentryTrace": sentry_trace}}))
    events = sorted(processes(captured), key=lambda event: event["start_timestamp"])
    assert [event["contexts"]["trace"]["trace_id"] for event in events] == [trace for trace, _, _ in traces]
    assert [[span["description"] for span in body_spans(event)] for event in events] == [
        ["first"],
        ["second"],
        ["third"],
    ]
    for event in events:
        (work,) = body_spans(event)
        assert work["parent_span_id"] == process_span(event)["span_id"]
    for earlier, later in itertools.pairwise(events):
        assert earlier["timestamp"] <= later["start_timestamp"]
    assert [process_span(event)["data"]["messaging.message.id"] for event in events] == ["1", "2", "3"]
    (error,) = captured.errors()
    assert error["contexts"]["trace"]["trace_id"] == traces[1][0]
    assert error["contexts"]["trace"]["span_id"] == process_span(events[1])["span_id"]


# Properties of the message handling (no connection needed) ----------------------------------------

EXAMPLES = int(os.environ.get("BUSPROP_HYPOTHESIS_EXAMPLES", "200"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(
    st.text(max_size=10).filter(lambda key: key != "metadata"), json_values, max_size=6
)
TRACE_VALUES = {
    "sentryTrace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1",
    "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700",
}


@settings(max_examples=EXAMPLES, deadline=None)
@given(json_objects, st.sampled_from([None, 0, 2]), st.sampled_from(["", " ", "\n", " \r\n\t"]))
def test_splicing_metadata_keeps_every_other_byte(
    body: dict[str, Any], indent: int | None, trailing: str
) -> None:
    text = json.dumps(body, indent=indent) + trailing
    outgoing = traced_ws._Outgoing.of(text, None)
    assert outgoing is not None
    outgoing.metadata.update(TRACE_VALUES)
    rendered = outgoing.render()
    assert json.loads(rendered) == {**body, "metadata": TRACE_VALUES}
    splice_at = len(text.rstrip(" \t\r\n")) - 1
    assert rendered.startswith(text[:splice_at]) and rendered.endswith("}" + trailing)
    received = traced_ws._received_object(rendered)
    assert received is not None
    assert json.loads(traced_ws._without_trace(rendered, received)) == body


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.one_of(st.text(max_size=300), st.binary(max_size=300), json_objects.map(json.dumps)),
    st.sampled_from([None, True, False]),
)
def test_any_message_is_either_left_alone_or_a_json_object(message: Any, text: bool | None) -> None:
    outgoing = traced_ws._Outgoing.of(message, text)
    if outgoing is not None:
        assert isinstance(json.loads(message), dict)
    received = traced_ws._received_object(message)
    assert received is None or isinstance(received, dict)


async def test_tls_connections_are_wss_urls_on_both_sides(sentry_init: Init, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        tool_missing("openssl is needed to make a certificate")
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certificate, key)
    client_tls = ssl.create_default_context(cafile=str(certificate))
    captured = sentry_init(traces_sample_rate=1.0)
    destinations: list[str] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        destinations.append(ws.destination)
        async for _message in ws:
            pass

    async with running(handler, ssl=server_tls) as url:
        secure_url = url.replace("ws://", "wss://")
        with sentry_sdk.start_transaction(name="client") as transaction:
            async with traced_ws.connect(secure_url, ssl=client_tls) as ws:
                destinations.append(ws.destination)
                await ws.send("{}")
    assert destinations == [secure_url, secure_url]
    (process,) = processes(captured)
    assert process["contexts"]["trace"]["trace_id"] == transaction.trace_id
    assert process_span(process)["data"]["messaging.destination.name"] == secure_url
