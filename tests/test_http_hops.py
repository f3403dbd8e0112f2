"""An HTTP request made inside a consumer carries the message's trace, sampled or not.

sentry-sdk's own HTTP client integrations (http.client/urllib, requests through urllib3, httpx sync
and async, aiohttp's client) take the outgoing ``sentry-trace`` and ``baggage`` from the current
span or scope. Whatever busprop continued from a message must therefore be what they see: the
head's trace id, its sampling flag (``-1``, or ``-0`` for an unsampled head, for which busprop puts
a never-sampled transaction on the scope), and its frozen ``sentry-*`` baggage, exactly as ``busprop.inject`` and
``sentry_sdk.get_traceparent()`` report them in the same body.

Every test runs a real HTTP server on loopback that records the headers of each request. It is
called by the name ``localhost``: sentry-sdk adds no trace headers to a URL containing the DSN's
host, and the test DSN's host is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import httpx
import pytest
import requests
import sentry_sdk
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from websockets.asyncio.client import connect as bare_connect
from websockets.asyncio.server import serve

import busprop
import busprop.amqp
import busprop.celery
import busprop.kafka
from busprop import websockets as traced_ws
from busprop.amqp import AioPikaIntegration
from busprop.iteration import TracedIterator
from busprop.kafka import KafkaIntegration
from tests.apps.celery_app import create_app
from tests.conftest import Captured
from tests.processes import APPS, ROOT

SentryInit = Callable[..., Captured]


# --- the HTTP server ------------------------------------------------------------------------------


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: HopServer

    def do_GET(self) -> None:
        self.server.record(self.path, list(self.headers.items()))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HopServer(http.server.ThreadingHTTPServer):
    """Records the headers of every request, by path (``/hop/<key>``)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self._lock = threading.Lock()
        self._received: dict[str, list[list[tuple[str, str]]]] = {}

    def record(self, path: str, headers: list[tuple[str, str]]) -> None:
        with self._lock:
            self._received.setdefault(path, []).append(headers)

    def url(self, key: str) -> str:
        # ``localhost``, not 127.0.0.1: the DSN's host, which sentry-sdk never sends trace headers to.
        return f"http://localhost:{self.server_address[1]}/hop/{key}"

    def requests_to(self, key: str) -> list[list[tuple[str, str]]]:
        with self._lock:
            return list(self._received.get(f"/hop/{key}", []))


@pytest.fixture
def hop_server() -> Iterator[HopServer]:
    server = HopServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# --- the heads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """The trace a message arrives with, and what the consumer's HTTP request must carry."""

    case: str
    trace_id: str
    span_id: str
    flag: str | None  # the sampled flag of the incoming sentry-trace: "1", "0" or none (undecided)
    baggage: str
    traces_sample_rate: float | None
    expected_flag: str | None  # the flag the HTTP request must carry; None: not checked
    frozen: bool  # the request's sentry-* baggage must be the head's, as received

    @property
    def sentry_trace(self) -> str:
        return f"{self.trace_id}-{self.span_id}" + (f"-{self.flag}" if self.flag else "")

    @property
    def headers(self) -> dict[str, str]:
        return {"sentry-trace": self.sentry_trace, "baggage": self.baggage}

    @property
    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [(key, value.encode()) for key, value in self.headers.items()]

    @property
    def tracing(self) -> bool:
        return self.traces_sample_rate is not None


SAMPLED, UNSAMPLED, UNDECIDED = "sampled", "unsampled", "undecided"
DISABLED_SAMPLED, DISABLED_UNSAMPLED = "tracing-off-sampled-head", "tracing-off-unsampled-head"
ALL_CASES = [SAMPLED, UNSAMPLED, UNDECIDED, DISABLED_SAMPLED, DISABLED_UNSAMPLED]
BUS_CASES = [SAMPLED, UNSAMPLED]


def make_head(case: str) -> Head:
    """A head of the given case with a fresh trace id, so concurrent messages never share one."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    sampled = (
        f"sentry-trace_id={trace_id},sentry-public_key=public,sentry-sample_rate=1.0,"
        "sentry-sample_rand=0.25,sentry-sampled=true,vendor=acme"
    )
    unsampled = (
        f"sentry-trace_id={trace_id},sentry-public_key=public,sentry-sample_rate=0.5,"
        "sentry-sample_rand=0.75,sentry-sampled=false,vendor=acme"
    )
    undecided = f"sentry-trace_id={trace_id},sentry-public_key=public,vendor=acme"
    heads = {
        SAMPLED: Head(case, trace_id, span_id, "1", sampled, 1.0, "1", True),
        UNSAMPLED: Head(case, trace_id, span_id, "0", unsampled, 1.0, "0", True),
        UNDECIDED: Head(case, trace_id, span_id, None, undecided, 1.0, "1", False),
        # Tracing disabled: sentry-sdk leaves the flag out of its HTTP headers; the ids still travel.
        DISABLED_SAMPLED: Head(case, trace_id, span_id, "1", sampled, None, None, True),
        DISABLED_UNSAMPLED: Head(case, trace_id, span_id, "0", unsampled, None, None, True),
    }
    return heads[case]


# --- what a consumer body does and sees ----------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What busprop and sentry-sdk said about the current trace inside the consumer body."""

    injected: dict[str, str]  # busprop.inject(h, destination="x")
    traceparent: str | None  # sentry_sdk.get_traceparent()


def look_around() -> Seen:
    injected: dict[str, str] = {}
    busprop.inject(injected, destination="x")
    return Seen(injected, sentry_sdk.get_traceparent())


def get_with_urllib(url: str) -> None:
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()


def hop(url: str) -> Seen:
    """The consumer body: note the trace, then make an HTTP request with urllib."""
    seen = look_around()
    get_with_urllib(url)
    return seen


# --- the assertion --------------------------------------------------------------------------------


def _values(request: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in request if key.lower() == name]


def _trace_and_flag(sentry_trace: str) -> tuple[str, str | None]:
    parts = sentry_trace.split("-")
    return parts[0], parts[2] if len(parts) > 2 else None


def sentry_members(baggage: str | None) -> dict[str, str]:
    """The ``sentry-*`` members of a baggage header, values decoded (third-party members ignored)."""
    members = {}
    for member in (baggage or "").split(","):
        key, _, value = member.partition("=")
        if key.strip().startswith("sentry-"):
            members[key.strip()] = urllib.parse.unquote(value.strip())
    return members


def assert_hop(
    server: HopServer,
    key: str,
    seen: Seen,
    head: Head | None,
    transactions: list[dict[str, Any]] | None = None,
) -> None:
    """The one request the consumer made to ``/hop/<key>`` carried the message's trace.

    Against the ``head`` (None for a batch, which is a head of its own): its trace id, the expected
    flag and, for a head whose baggage is frozen, its ``sentry-*`` members as received. Against what
    the same body saw: the trace id and flag of ``busprop.inject`` and ``get_traceparent()`` (when
    tracing is on: sentry-sdk's HTTP headers have no flag when it is off), and the ``sentry-*``
    members of busprop's baggage. With ``transactions`` (what Sentry received): a sampled head's
    consumer reported a transaction in its trace, an unsampled or untraced one reported none.
    """
    received = server.requests_to(key)
    assert len(received) == 1, f"expected one request to /hop/{key}, got {len(received)}"
    request = received[0]
    sentry_traces = _values(request, "sentry-trace")
    assert len(sentry_traces) == 1, (
        f"the HTTP request carried sentry-trace {sentry_traces}; headers: {request}"
    )
    http_trace_id, http_flag = _trace_and_flag(sentry_traces[0])
    http_baggage = sentry_members(",".join(_values(request, "baggage")))
    injected_trace_id, injected_flag = _trace_and_flag(seen.injected["sentry-trace"])

    if head is not None:
        assert http_trace_id == head.trace_id, (sentry_traces[0], head.sentry_trace)
        if head.expected_flag is not None:
            assert http_flag == head.expected_flag, (sentry_traces[0], head.sentry_trace)
        if head.frozen:
            assert http_baggage == sentry_members(head.baggage)
        else:
            assert http_baggage.get("sentry-trace_id") == head.trace_id, http_baggage
            assert "sentry-sample_rand" in http_baggage, http_baggage

    assert http_trace_id == injected_trace_id, (sentry_traces[0], seen.injected)
    if head is None or head.tracing:
        assert http_flag == injected_flag, (sentry_traces[0], seen.injected)
        assert seen.traceparent is not None
        assert _trace_and_flag(seen.traceparent) == (injected_trace_id, injected_flag), (
            seen.traceparent,
            seen.injected,
        )
    assert http_baggage == sentry_members(seen.injected.get("baggage")), (http_baggage, seen.injected)

    if transactions is not None and head is not None:
        in_trace = [
            event for event in transactions if event["contexts"]["trace"]["trace_id"] == head.trace_id
        ]
        if head.tracing and head.expected_flag == "1":
            assert in_trace, f"no transaction of trace {head.trace_id} reached Sentry"
        else:
            assert in_trace == [], [event["transaction"] for event in in_trace]


# --- the core API ---------------------------------------------------------------------------------


# Each client as a coroutine, so one async test body can run them all: the sync clients (urllib,
# requests, httpx.Client) block in it, the async ones (httpx.AsyncClient, aiohttp) await.


async def get_with_requests(url: str) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.get(url, timeout=10).raise_for_status()


async def get_with_httpx(url: str) -> None:
    with httpx.Client(trust_env=False) as client:
        client.get(url, timeout=10).raise_for_status()


async def get_with_httpx_async(url: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        (await client.get(url, timeout=10)).raise_for_status()


async def get_with_aiohttp(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        await response.read()


async def get_with_urllib_in_async_test(url: str) -> None:
    get_with_urllib(url)


HTTP_CLIENTS: dict[str, Callable[[str], Awaitable[None]]] = {
    "urllib": get_with_urllib_in_async_test,
    "requests": get_with_requests,
    "httpx": get_with_httpx,
    "httpx-async": get_with_httpx_async,
    "aiohttp": get_with_aiohttp,
}


@pytest.mark.parametrize("client", list(HTTP_CLIENTS))
@pytest.mark.parametrize("case", ALL_CASES)
async def test_continue_trace_body_http_request_carries_the_heads_trace(
    sentry_init: SentryInit, hop_server: HopServer, case: str, client: str
) -> None:
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    async with busprop.continue_trace(head.headers, system="custom", destination="orders"):
        seen = look_around()
        await HTTP_CLIENTS[client](hop_server.url(head.trace_id))
    assert_hop(hop_server, head.trace_id, seen, head, captured.transactions())


@pytest.mark.parametrize("case", ALL_CASES)
def test_sync_with_continue_trace_body_http_request_carries_the_heads_trace(
    sentry_init: SentryInit, hop_server: HopServer, case: str
) -> None:
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    with busprop.continue_trace(head.headers, system="custom", destination="orders"):
        seen = hop(hop_server.url(head.trace_id))
    assert_hop(hop_server, head.trace_id, seen, head, captured.transactions())


@pytest.mark.parametrize("case", ALL_CASES)
def test_consumer_decorator_sync_handler_http_request_carries_the_heads_trace(
    sentry_init: SentryInit, hop_server: HopServer, case: str
) -> None:
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)

    @busprop.consumer(system="custom", destination="orders", headers=lambda message: message["headers"])
    def handle(message: dict[str, Any]) -> Seen:
        return hop(message["url"])

    seen = handle({"headers": head.headers, "url": hop_server.url(head.trace_id)})
    assert_hop(hop_server, head.trace_id, seen, head, captured.transactions())


@pytest.mark.parametrize("case", ALL_CASES)
async def test_consumer_decorator_async_handler_http_request_carries_the_heads_trace(
    sentry_init: SentryInit, hop_server: HopServer, case: str
) -> None:
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)

    @busprop.consumer(system="custom", destination="orders", headers=lambda message: message["headers"])
    async def handle(message: dict[str, Any]) -> Seen:
        await asyncio.sleep(0)
        seen = look_around()
        await get_with_httpx_async(message["url"])
        return seen

    seen = await handle({"headers": head.headers, "url": hop_server.url(head.trace_id)})
    assert_hop(hop_server, head.trace_id, seen, head, captured.transactions())


@pytest.mark.parametrize("case", ALL_CASES)
def test_traced_iterator_loop_body_http_request_carries_the_heads_trace(
    sentry_init: SentryInit, hop_server: HopServer, case: str
) -> None:
    heads = [make_head(case), make_head(case)]  # two messages of two traces: each body has its own
    captured = sentry_init(traces_sample_rate=heads[0].traces_sample_rate)

    def start(message: dict[str, Any]) -> busprop.MessageProcessing:
        return busprop.continue_trace(message["headers"], system="custom", destination="inbox")

    inbox = [{"headers": head.headers, "url": hop_server.url(head.trace_id)} for head in heads]
    seen = []
    with TracedIterator(inbox, start) as messages:
        for message in messages:
            seen.append(hop(message["url"]))
    for head, body_saw in zip(heads, seen, strict=True):
        assert_hop(hop_server, head.trace_id, body_saw, head, captured.transactions())


# --- Kafka ----------------------------------------------------------------------------------------


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[str]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    name = f"busprop-http-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, 1, 1)])
    yield name
    with contextlib.suppress(Exception):  # a broker without deletion keeps it; names are unique
        admin.delete_topics([name])
    admin.close()


def produce_raw(bootstrap: str, topic: str, heads: list[Head]) -> None:
    """Each head as one record, headers exactly as given (kafka-python's own producer, no busprop)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    try:
        for head in heads:
            producer.send(topic, head.trace_id.encode(), headers=head.kafka_headers).get(timeout=10)
    finally:
        producer.close(timeout=5)


def assigned_consumer(bootstrap: str, topic: str) -> KafkaConsumer:
    """Reads ``topic`` from the beginning without joining a group (a group join costs seconds)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    return consumer


def poll_all(consumer: KafkaConsumer, count: int) -> dict[Any, list[Any]]:
    batch: dict[Any, list[Any]] = {}
    for _attempt in range(50):
        for partition, records in consumer.poll(timeout_ms=200).items():
            batch.setdefault(partition, []).extend(records)
        if sum(len(records) for records in batch.values()) >= count:
            return batch
    raise AssertionError(f"fewer than {count} records arrived")


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
def test_kafka_traced_consumer_loop_body_http_request_carries_the_records_trace(
    sentry_init: SentryInit, hop_server: HopServer, kafka_bootstrap: str, kafka_topic: str, case: str
) -> None:
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    produce_raw(kafka_bootstrap, kafka_topic, [head])
    consumer = assigned_consumer(kafka_bootstrap, kafka_topic)
    with busprop.kafka.traced_consumer(consumer) as records:
        for _record in records:
            seen = hop(hop_server.url(head.trace_id))
            break
    consumer.close()
    assert_hop(hop_server, head.trace_id, seen, head, captured.transactions())


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
def test_kafka_traced_records_of_a_poll_http_request_carries_each_records_trace(
    sentry_init: SentryInit, hop_server: HopServer, kafka_bootstrap: str, kafka_topic: str, case: str
) -> None:
    heads = [make_head(case), make_head(case)]
    captured = sentry_init(traces_sample_rate=1.0)
    produce_raw(kafka_bootstrap, kafka_topic, heads)
    consumer = assigned_consumer(kafka_bootstrap, kafka_topic)
    seen = {}
    with busprop.kafka.traced_records(poll_all(consumer, 2), consumer=consumer) as records:
        for record in records:
            trace_id = record.value.decode()
            seen[trace_id] = hop(hop_server.url(trace_id))
    consumer.close()
    for head in heads:
        assert_hop(hop_server, head.trace_id, seen[head.trace_id], head, captured.transactions())


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
async def test_kafka_consumer_decorator_handler_http_request_carries_the_records_trace(
    sentry_init: SentryInit, hop_server: HopServer, kafka_bootstrap: str, kafka_topic: str, case: str
) -> None:
    heads = [make_head(case), make_head(case)]
    captured = sentry_init(traces_sample_rate=1.0)
    produce_raw(kafka_bootstrap, kafka_topic, heads)

    @busprop.kafka.consumer
    def handle(record: Any) -> Seen:
        return hop(hop_server.url(record.value.decode()))

    @busprop.kafka.consumer(group_id="async-handlers")
    async def handle_async(record: Any) -> Seen:
        await asyncio.sleep(0)
        return hop(hop_server.url(record.value.decode()))

    consumer = assigned_consumer(kafka_bootstrap, kafka_topic)
    first, second = next(consumer), next(consumer)
    consumer.close()
    assert_hop(hop_server, heads[0].trace_id, handle(first), heads[0], captured.transactions())
    assert_hop(hop_server, heads[1].trace_id, await handle_async(second), heads[1], captured.transactions())


@pytest.fixture
def kafka_integration() -> Iterator[type[KafkaIntegration]]:
    yield KafkaIntegration
    KafkaIntegration.uninstall()


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
def test_kafka_integration_plain_for_loop_http_request_carries_the_records_trace(
    sentry_init: SentryInit,
    hop_server: HopServer,
    kafka_bootstrap: str,
    kafka_topic: str,
    kafka_integration: type[KafkaIntegration],
    case: str,
) -> None:
    head = make_head(case)
    # Produced before the integration is on: its patched send() would write this process's trace.
    produce_raw(kafka_bootstrap, kafka_topic, [head])
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate, integrations=[kafka_integration()])
    consumer = assigned_consumer(kafka_bootstrap, kafka_topic)
    for _record in consumer:  # unchanged kafka-python code
        seen = hop(hop_server.url(head.trace_id))
        break
    consumer.close()  # ends the record's transaction
    assert_hop(hop_server, head.trace_id, seen, head, captured.transactions())


@pytest.mark.broker
@pytest.mark.parametrize("batch_rate", [1.0, 0.0], ids=["sampled-batch", "unsampled-batch"])
@pytest.mark.parametrize("case", BUS_CASES)
def test_kafka_process_batch_body_http_request_carries_the_batchs_trace(
    sentry_init: SentryInit,
    hop_server: HopServer,
    kafka_bootstrap: str,
    kafka_topic: str,
    case: str,
    batch_rate: float,
) -> None:
    """A batch is a head of its own: the request carries the batch's trace, as busprop.inject does."""
    head = make_head(case)
    sentry_init(traces_sample_rate=batch_rate)
    produce_raw(kafka_bootstrap, kafka_topic, [head])
    consumer = assigned_consumer(kafka_bootstrap, kafka_topic)
    key = uuid.uuid4().hex
    with busprop.kafka.process_batch(poll_all(consumer, 1), consumer=consumer) as records:
        for _record in records:
            seen = hop(hop_server.url(key))
    consumer.close()
    assert_hop(hop_server, key, seen, None)
    assert _trace_and_flag(seen.injected["sentry-trace"])[1] == ("1" if batch_rate else "0")


# --- AMQP (aio-pika) ------------------------------------------------------------------------------


@pytest.fixture
async def amqp_connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url)
    yield connection
    await connection.close()


async def publish_raw(channel: aio_pika.abc.AbstractChannel, queue: str, head: Head) -> None:
    """The head as one message, headers exactly as given (aio-pika's own publish, no busprop)."""
    message = aio_pika.Message(head.trace_id.encode(), headers=dict(head.headers))
    await channel.default_exchange.publish(message, routing_key=queue)


async def consume_one(queue: aio_pika.abc.AbstractQueue, callback: Callable[..., Any]) -> None:
    """``queue.consume(callback)`` until the callback returned once."""
    done = asyncio.Event()

    async def until_done(message: AbstractIncomingMessage) -> None:
        try:
            await callback(message)
        finally:
            done.set()

    tag = await queue.consume(until_done)
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        await queue.cancel(tag)


async def transactions_when(captured: Captured, head: Head, timeout: float = 5) -> list[dict[str, Any]]:
    """The captured transactions, once a sampled head's consumer has finished its transaction."""
    deadline = time.monotonic() + timeout
    while True:
        events = captured.transactions()
        done = any(event["contexts"]["trace"]["trace_id"] == head.trace_id for event in events)
        if done or head.expected_flag != "1" or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.02)


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
async def test_amqp_consumer_decorator_callback_http_request_carries_the_messages_trace(
    sentry_init: SentryInit, hop_server: HopServer, amqp_connection: AbstractRobustConnection, case: str
) -> None:
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(f"busprop-http-{uuid.uuid4().hex[:10]}", exclusive=True)
    await publish_raw(channel, queue.name, head)
    seen = []

    @busprop.amqp.consumer
    async def handle(message: AbstractIncomingMessage) -> None:
        async with message.process():
            seen.append(hop(hop_server.url(message.body.decode())))

    await consume_one(queue, handle)
    assert_hop(hop_server, head.trace_id, seen[0], head, await transactions_when(captured, head))


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
async def test_amqp_traced_iterator_loop_body_http_request_carries_the_messages_trace(
    sentry_init: SentryInit, hop_server: HopServer, amqp_connection: AbstractRobustConnection, case: str
) -> None:
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(f"busprop-http-{uuid.uuid4().hex[:10]}", exclusive=True)
    await publish_raw(channel, queue.name, head)
    async with busprop.amqp.traced_iterator(queue.iterator()) as messages:
        async for message in messages:
            async with message.process():
                seen = hop(hop_server.url(message.body.decode()))
            break
    assert_hop(hop_server, head.trace_id, seen, head, captured.transactions())


@pytest.fixture
def aio_pika_integration() -> Iterator[type[AioPikaIntegration]]:
    yield AioPikaIntegration
    AioPikaIntegration.uninstall()


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
async def test_amqp_integration_plain_consume_callback_http_request_carries_the_messages_trace(
    sentry_init: SentryInit,
    hop_server: HopServer,
    amqp_connection: AbstractRobustConnection,
    aio_pika_integration: type[AioPikaIntegration],
    case: str,
) -> None:
    head = make_head(case)
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(f"busprop-http-{uuid.uuid4().hex[:10]}", exclusive=True)
    # Published before the integration is on: its patched publish() would write this process's trace.
    await publish_raw(channel, queue.name, head)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate, integrations=[aio_pika_integration()])
    seen = []

    async def handle(message: AbstractIncomingMessage) -> None:  # plain aio-pika code
        async with message.process():
            seen.append(hop(hop_server.url(message.body.decode())))

    await consume_one(queue, handle)
    assert_hop(hop_server, head.trace_id, seen[0], head, await transactions_when(captured, head))


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
async def test_amqp_rpc_server_http_request_carries_the_callers_trace(
    sentry_init: SentryInit, hop_server: HopServer, amqp_connection: AbstractRobustConnection, case: str
) -> None:
    """The caller runs in a trace continued from the head; the server's request carries it on."""
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    server = await busprop.amqp.TracedRPC.create(await amqp_connection.channel())
    caller = await busprop.amqp.TracedRPC.create(await amqp_connection.channel())
    method = f"busprop-http-{uuid.uuid4().hex[:10]}"

    async def fetch(*, url: str) -> dict[str, Any]:
        seen = hop(url)
        return {"injected": seen.injected, "traceparent": seen.traceparent}

    await server.register(method, fetch, auto_delete=True)
    try:
        async with busprop.continue_trace(head.headers, system="custom", destination="checkout"):
            answer = await caller.call(method, kwargs={"url": hop_server.url(head.trace_id)})
    finally:
        await caller.close()
        await server.close()
    assert_hop(hop_server, head.trace_id, Seen(**answer), head, await transactions_when(captured, head))


# --- Celery ---------------------------------------------------------------------------------------


@dataclass
class HopWorker:
    """A solo ``celery worker`` process running ``tests/apps/http_hops_celery_app.py``."""

    app: Any
    queue: str
    capture_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def transactions(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.capture_dir.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # a last line may be half-written
                record = json.loads(line) if line.strip() else {}
                if record.get("type") == "transaction":
                    found.append(record["event"])
        return found

    def transactions_when(self, head: Head, timeout: float = 10) -> list[dict[str, Any]]:
        """Its transactions, once a sampled head's task transaction is on disk."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.transactions()
            done = any(event["contexts"]["trace"]["trace_id"] == head.trace_id for event in events)
            if done or head.expected_flag != "1" or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def hop_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HopWorker]:
    queue = f"busprop-http-hops-{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("celery-http-hops")
    capture_dir = directory / "captured"
    capture_dir.mkdir()
    log_path = directory / "worker.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BUSPROP_CAPTURE_DIR": str(capture_dir)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(APPS / "http_hops_celery_app.py"), redis_url, redis_url, queue],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    worker = HopWorker(create_app(redis_url, redis_url, queue), queue, capture_dir, log_path, process)
    try:
        try:
            worker.app.send_task("busprop_tests.add", (0, 0)).get(timeout=60)  # ready when it answers
        except Exception:
            raise AssertionError(f"the worker did not start\n{worker.log()}") from None
        yield worker
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(Exception), worker.app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
        worker.app.close()


@pytest.mark.broker
@pytest.mark.parametrize("case", BUS_CASES)
def test_celery_task_body_http_request_carries_the_publishers_trace(
    sentry_init: SentryInit, hop_server: HopServer, hop_worker: HopWorker, case: str
) -> None:
    """The task is published from a trace continued from the head; the worker's request carries it."""
    head = make_head(case)
    # sentry-sdk's CeleryIntegration would lead in this process; leaving out auto-enabling keeps it off.
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate, auto_enabling_integrations=False)
    busprop.celery.install(hop_worker.app)
    try:
        with busprop.continue_trace(head.headers, system="custom", destination="checkout"):
            result = hop_worker.app.send_task("busprop_http_hops.call", (hop_server.url(head.trace_id),))
        answer = result.get(timeout=20)
    finally:
        busprop.celery.uninstall()
    assert_hop(hop_server, head.trace_id, Seen(**answer), head, hop_worker.transactions_when(head))
    if head.expected_flag == "0":
        assert not [e for e in captured.transactions() if e["contexts"]["trace"]["trace_id"] == head.trace_id]


# --- WebSockets -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ws_server(handler: Callable[[traced_ws.TracedConnection], Awaitable[None]]) -> AsyncIterator[str]:
    async with serve(traced_ws.traced_handler(handler), "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"


@pytest.mark.parametrize("case", BUS_CASES)
async def test_websocket_handler_recv_http_request_carries_the_messages_trace(
    sentry_init: SentryInit, hop_server: HopServer, case: str
) -> None:
    """A plain client sends the documented JSON format; the handler recv()s it and makes a request."""
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    seen = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        message = json.loads(await ws.recv())
        seen.append(hop(hop_server.url(message["message"])))
        await ws.send(json.dumps({"message": "done"}))

    async with ws_server(handler) as url, bare_connect(url) as client:
        metadata = {"sentryTrace": head.sentry_trace, "baggage": head.baggage}
        await client.send(json.dumps({"message": head.trace_id, "metadata": metadata}))
        await client.recv()
    assert_hop(hop_server, head.trace_id, seen[0], head, captured.transactions())


@pytest.mark.parametrize("case", BUS_CASES)
async def test_websocket_handler_async_for_http_request_carries_the_senders_trace(
    sentry_init: SentryInit, hop_server: HopServer, case: str
) -> None:
    """busprop's client sends from a trace continued from the head; the handler's loop body requests."""
    head = make_head(case)
    captured = sentry_init(traces_sample_rate=head.traces_sample_rate)
    seen = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            seen.append(hop(hop_server.url(json.loads(message)["message"])))
            await ws.send(json.dumps({"message": "done"}))

    async with (
        ws_server(handler) as url,
        busprop.continue_trace(head.headers, system="custom", destination="chat"),
        traced_ws.connect(url) as client,
    ):
        await client.send(json.dumps({"message": head.trace_id}))
        await client.recv()
    assert_hop(hop_server, head.trace_id, seen[0], head, captured.transactions())
