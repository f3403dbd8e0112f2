"""WebSockets (the ``websockets`` library): each message carries its trace, as Sentry's docs send it.

A WebSocket connection lives for minutes or hours and carries many unrelated messages, so the
handshake's headers cannot stand for every message's trace, and browsers cannot set handshake
headers at all. Sentry's docs have browsers put the trace in the message instead:
``{"message": ..., "metadata": {"sentryTrace": ..., "baggage": ...}}``. This adapter writes and
reads exactly that format on ``websockets.asyncio`` connections (client and server), so a Python
peer and a browser or Node peer following the docs continue each other's traces per message.

It only knows the client library: where a message's metadata is, what the destination is, and
where a message's processing begins (``recv()`` returns it) and ends (the next ``recv()``). Trace
handling is the core's (:func:`busprop.publish`, :func:`busprop.continue_trace`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator, Iterable
from types import TracebackType
from typing import Any, TypeAlias, cast

import pydantic_core
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.connection import broadcast as websockets_broadcast
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedOK
from websockets.headers import build_host
from websockets.uri import parse_uri

from busprop import sdk
from busprop.carrier import HEADER_KEYS, CarrierKeys
from busprop.iteration import CurrentProcessing, async_loop_of
from busprop.processing import continue_trace, propagation_scope
from busprop.publishing import NotEnabled, Route, finish_publish, inject, start_publish_and_values
from busprop.spandata import BODY_SIZE

__all__ = [
    "METADATA_KEYS",
    "SYSTEM",
    "TracedConnect",
    "TracedConnection",
    "broadcast",
    "connect",
    "connection_url",
    "handshake_headers",
    "traced",
    "traced_handler",
]

logger = logging.getLogger("busprop")

#: ``messaging.system`` of WebSocket spans and transactions.
SYSTEM = "websocket"
ORIGIN = "auto.queue.busprop.websockets"
#: The key of the object that carries the trace inside a JSON message.
METADATA = "metadata"
#: The names Sentry's docs give the two values inside ``metadata``.
METADATA_KEYS = CarrierKeys(sentry_trace="sentryTrace")
#: What every send has in common.
ROUTE = Route(SYSTEM, origin=ORIGIN, keys=METADATA_KEYS)

#: What a WebSocket message is once received: text frames as ``str``, binary frames as ``bytes``.
Data: TypeAlias = "str | bytes"
_JSON_WHITESPACE = " \t\n\r"


def connection_url(connection: Connection) -> str:
    """The destination string of a connection: ``ws[s]://{Host header}{path}``, without the query.

    Both sides compute it from the handshake request, so a client and its server agree on it. The
    query string and any credentials are left out: they often hold tokens, and the destination
    becomes span data and transaction names.
    """
    request = connection.request
    if request is None:
        return SYSTEM
    secure = (
        connection.transport is not None and connection.transport.get_extra_info("ssl_object") is not None
    )
    host = request.headers.get_all("Host")
    path = request.path.split("?", 1)[0]
    return f"{'wss' if secure else 'ws'}://{host[0] if host else ''}{path}"


def _uri_url(uri: str) -> str:
    """:func:`connection_url` of the connection a client will open to ``uri``."""
    parsed = parse_uri(uri)
    host = build_host(parsed.host, parsed.port, parsed.secure)
    return f"{'wss' if parsed.secure else 'ws'}://{host}{parsed.path or '/'}"


# Message bodies ---------------------------------------------------------------------------------


def _json_object(message: str | bytes) -> dict[str, Any] | None:
    """The JSON object ``message`` holds, or ``None`` (not JSON, not an object, not UTF-8)."""
    try:
        value = pydantic_core.from_json(message, cache_strings="keys")  # values are unique per message
    except Exception:
        return None
    return value if isinstance(value, dict) else None


def _received_object(message: Data) -> dict[str, Any] | None:
    """The JSON object of a received message that has a ``metadata`` key, or ``None``.

    Messages that do not contain the text ``"metadata"`` are never parsed.
    """
    if isinstance(message, str):
        if '"metadata"' not in message:
            return None
    elif not isinstance(message, (bytes, bytearray)) or b'"metadata"' not in message:
        return None
    return _json_object(message)


#: ``(message, body)``: the last message ``recv()`` returned and its JSON object. A server that
#: echoes or relays what it received (a chat room) sends that very object again, and its send then
#: starts from a copy of the object instead of a second parse of the same frame.
_last_received: tuple[Any, dict[str, Any] | None] = (None, None)


def _metadata(body: dict[str, Any] | None) -> dict[str, Any] | None:
    value = body.get(METADATA) if body is not None else None
    return value if isinstance(value, dict) else None


def _dump(value: Any) -> str:
    return pydantic_core.to_json(value, inf_nan_mode="constants").decode()


def _without_trace(message: Data, body: dict[str, Any]) -> Data:
    """``message`` with ``sentryTrace`` and ``baggage`` removed from its metadata (re-serialised)."""
    metadata = _metadata(body)
    keys = (METADATA_KEYS.sentry_trace, METADATA_KEYS.baggage)
    if metadata is None or not any(key in metadata for key in keys):
        return message
    for key in keys:
        metadata.pop(key, None)
    if not metadata:
        del body[METADATA]
    text = _dump(body)
    return text if isinstance(message, str) else text.encode()


def _body_size(message: Any) -> int | None:
    if isinstance(message, str):
        return len(message) if message.isascii() else len(message.encode())
    if isinstance(message, (bytes, bytearray, memoryview)):
        return len(message)
    return None


class _Outgoing:
    """A text message that is a JSON object, and the metadata object the trace is written into."""

    __slots__ = ("body", "metadata", "original", "source")

    def __init__(self, original: Any, source: str, body: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.original = original
        self.source = source
        self.body = body
        self.metadata = metadata

    @classmethod
    def of(cls, message: Any, text: bool | None) -> _Outgoing | None:
        """Parse ``message`` if it goes out as a text frame holding a JSON object with room for
        metadata; the message ``recv()`` last returned is not parsed again (its object is copied)."""
        if isinstance(message, str) and text is not False:
            source = message
        elif isinstance(message, (bytes, bytearray, memoryview)) and text is True:
            try:
                source = bytes(message).decode()
            except UnicodeDecodeError:
                return None
        else:
            return None
        received, received_body = _last_received
        reused = message is received and received_body is not None
        # Writing and rendering change the two objects: a reused frame's are copies.
        body = dict(received_body) if reused and received_body is not None else _json_object(source)
        if body is None:
            return None
        metadata = body.get(METADATA, {})
        if not isinstance(metadata, dict):
            return None
        return cls(message, source, body, dict(metadata) if reused else metadata)

    def render(self) -> Any:
        """The message with the metadata written into it, of the original's type.

        Without a ``metadata`` key, ``"metadata": {...}`` is appended to the original text, which is
        otherwise kept byte for byte; an existing ``metadata`` object means re-serialising the body.
        """
        stripped = self.source.rstrip(_JSON_WHITESPACE)
        if METADATA not in self.body and stripped.endswith("}"):
            separator = "," if self.body else ""
            trailing = self.source[len(stripped) :]
            text = f'{stripped[:-1]}{separator}"{METADATA}":{_dump(self.metadata)}}}{trailing}'
        else:
            self.body[METADATA] = self.metadata
            text = _dump(self.body)
        return text if isinstance(self.original, str) else text.encode()


# Handshake ----------------------------------------------------------------------------------------


def _handshake_carrier(connection: Connection) -> dict[str, str] | None:
    """The trace a client sent in the handshake headers, keyed as in message metadata (servers only)."""
    request = connection.request
    if not isinstance(connection, ServerConnection) or request is None:
        return None
    sentry_trace = request.headers.get_all(HEADER_KEYS.sentry_trace)
    if not sentry_trace:
        return None
    carrier = {METADATA_KEYS.sentry_trace: sentry_trace[0]}
    baggage = request.headers.get_all(HEADER_KEYS.baggage)
    if baggage:
        carrier[METADATA_KEYS.baggage] = ",".join(baggage)
    return carrier


def handshake_headers(uri: str, additional_headers: Any = None) -> list[tuple[str, str]]:
    """``additional_headers`` for a handshake to ``uri``, with the current trace written in.

    Existing ``sentry-trace``/``baggage`` entries, in any letter case, are replaced (third-party
    baggage kept); nothing is written for a destination outside ``propagation_targets``.
    """
    try:
        headers = _header_pairs(additional_headers)
    except Exception:  # not headers: websockets raises its own error for them when connecting
        logger.debug("busprop: unreadable handshake headers, sent as given", exc_info=True)
        return cast(list[tuple[str, str]], additional_headers)
    try:
        destination = _uri_url(uri)
    except Exception:  # websockets raises its own error for a bad URI when connecting
        return headers
    inject(headers, destination=destination, system=SYSTEM)
    return headers


def _header_pairs(additional_headers: Any) -> list[tuple[str, str]]:
    """A new list of the caller's handshake headers, the trace headers' names in lower case."""
    if additional_headers is None:
        pairs: list[tuple[str, str]] = []
    elif hasattr(additional_headers, "raw_items"):
        pairs = list(additional_headers.raw_items())
    elif hasattr(additional_headers, "items"):
        pairs = list(additional_headers.items())
    else:
        pairs = list(additional_headers)
    names = {HEADER_KEYS.sentry_trace, HEADER_KEYS.baggage}
    return [(name.lower() if name.lower() in names else name, value) for name, value in pairs]


# Connections --------------------------------------------------------------------------------------


class TracedConnection:
    """A ``websockets`` connection whose messages carry their trace; see :func:`traced`.

    ``send``, ``recv``, ``async for``, ``close`` and ``async with`` are traced; every other
    attribute (``ping``, ``request``, ``close_code``, ``recv_streaming``...) is the connection's.
    """

    def __init__(self, connection: Connection, *, strip_metadata: bool = False) -> None:
        # The message recv() last returned, ended by the next recv(); sent if this wrapper is collected.
        self._current = CurrentProcessing(self)
        # Inside a block whose exit sees the loop body's exception (`async with`, traced_handler).
        self._managed = False
        #: The wrapped ``websockets`` connection.
        self.connection = connection
        #: Whether ``recv()`` removes ``sentryTrace`` and ``baggage`` from the messages it returns.
        self.strip_metadata = strip_metadata
        #: The destination string (:func:`connection_url`).
        self.destination = SYSTEM
        self._handshake: dict[str, str] | None = None
        # Frames sent and received through this wrapper: a WebSocket delivers frames in order, so
        # the n-th sent by one traced end is the n-th received by the other (the message id).
        self._sent = self._received = 0
        try:
            self.destination = connection_url(connection)
            self._handshake = _handshake_carrier(connection)
        except Exception:
            logger.debug("busprop: could not read the WebSocket handshake", exc_info=True)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("connection", "_current", "_managed"):
            raise AttributeError(name)
        return getattr(self.connection, name)

    def __repr__(self) -> str:
        return f"<traced {self.connection!r}>"

    async def send(self, message: Any | Iterable[Any] | AsyncIterable[Any], text: bool | None = None) -> None:
        """Send ``message`` inside a ``queue.publish`` span, the current trace in its ``metadata``.

        Only a message sent as a text frame that is a JSON object (whose ``metadata``, if present,
        is an object) carries the trace; anything else is sent unchanged, inside the span.
        """
        self._sent += 1
        traced_message, span = _start_send(message, text, self.destination, str(self._sent))
        try:
            if text is None:  # ``text=`` is new in websockets 14
                await self.connection.send(traced_message)
            else:
                await self.connection.send(traced_message, text=text)
        except BaseException as error:
            finish_publish(span, error)
            raise
        finish_publish(span)

    async def recv(self, decode: bool | None = None) -> Data:
        """Receive the next message; its processing continues the trace it carries.

        The previous message's processing ends first. The message is returned as received (or
        without the trace values, with ``strip_metadata``). Errors are the connection's.
        """
        self._current.finish()
        message = await self.connection.recv(decode)
        try:
            return self._receive(message)
        except Exception:
            logger.debug("busprop: could not continue the trace of a WebSocket message", exc_info=True)
            return message

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate over messages as the connection does (ends on a normal close).

        Each ``async for`` gets a loop object of its own, so a message also ends where the loop is
        left (``break``, ``return``, an exception), before the code after the loop: see
        :mod:`busprop.iteration`. Inside ``async with`` or :func:`traced_handler` an exception's
        message is left for their exit, which marks it failed.
        """
        return async_loop_of(self._next_message, self._loop_left)

    async def _next_message(self) -> Data:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    def _loop_left(self, broke: bool) -> None:
        self._current.loop_left(broke, self._managed)

    def finish_processing(self, error: BaseException | None = None) -> None:
        """End the current message's processing now (marked failed with ``error``).

        From a task other than the one that received the message, its transaction is sent and
        that task leaves the message's scope at its next ``recv()``.
        """
        self._current.finish(error)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the current message's processing (as :meth:`finish_processing`) and close the connection."""
        self._current.finish()
        await self.connection.close(code, reason)

    async def __aenter__(self) -> TracedConnection:
        self._managed = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._managed = False
        self._current.finish(exc)
        await self.connection.__aexit__(exc_type, exc, tb)

    def _receive(self, message: Data) -> Data:
        """Start the processing of ``message``; returns what ``recv()`` returns.

        A message without a usable trace of its own is processed in the handshake's (the core
        reads the carriers in that order, each once)."""
        global _last_received
        body = _received_object(message)
        self._received += 1
        metadata = _metadata(body)
        carriers = (metadata,) if self._handshake is None else (metadata, self._handshake)
        processing = continue_trace(
            *carriers,
            system=SYSTEM,
            destination=self.destination,
            message_id=str(self._received),
            origin=ORIGIN,
            body_size=_body_size(message),
            keys=METADATA_KEYS,
        )
        self._current.start(processing)
        if self.strip_metadata and body is not None:
            message = _without_trace(message, body)  # the body now holds what the message does
        _last_received = (message, body)
        return message


def _start_send(
    message: Any,
    text: bool | None,
    destination: str,
    message_id: str | None = None,
    extra_data: dict[str, Any] | None = None,
) -> tuple[Any, sdk.AnySpan | None]:
    """Start a send's ``queue.publish`` span (under a sampled parent) and write the current trace
    into the message; returns the message to send and the span, which :func:`finish_publish`
    ends after the send. Two calls around the send, with no object per message. Never raises."""
    outgoing = _Outgoing.of(message, text)
    carrier: dict[str, Any] = outgoing.metadata if outgoing is not None else {}
    before = dict(carrier)
    details = (message_id, None, extra_data)
    span, _values = start_publish_and_values(ROUTE, carrier, destination, None, details)
    if isinstance(span, NotEnabled):  # never: no Integration is named
        span = None
    if outgoing is not None and carrier != before:
        message = _render(outgoing)
    if span is not None:
        try:
            size = _body_size(message)
            if size is not None:
                sdk.set_span_data(span, BODY_SIZE, size)
        except Exception:
            logger.debug("busprop: could not set the WebSocket message's size", exc_info=True)
    return message, span


def _render(outgoing: _Outgoing) -> Any:
    try:
        return outgoing.render()
    except Exception:
        logger.debug("busprop: could not write the trace into a WebSocket message", exc_info=True)
        return outgoing.original


def traced(connection: Connection | TracedConnection, *, strip_metadata: bool = False) -> TracedConnection:
    """Wrap a ``websockets.asyncio`` client or server connection so its messages carry the trace.

    A connection that is already wrapped is returned as it is.
    """
    if isinstance(connection, TracedConnection):
        return connection
    return TracedConnection(connection, strip_metadata=strip_metadata)


def broadcast(
    connections: Iterable[Connection | TracedConnection],
    message: Any,
    *,
    text: bool | None = None,
    raise_exceptions: bool = False,
) -> None:
    """``websockets``' ``broadcast()`` with the current trace written into the message once.

    One ``queue.publish`` span covers the broadcast (``messaging.batch.message_count``: the number of
    connections); every recipient's processing is its child. The destination is the first
    connection's URL. The message is handled as by :meth:`TracedConnection.send`. The span has no
    message id (each recipient numbers the frame its own way); a :class:`TracedConnection` among
    ``connections`` counts the frame as sent, so its later frames keep the receiver's numbering.
    """
    connections = list(connections)
    for item in connections:
        if isinstance(item, TracedConnection):
            item._sent += 1
    targets = [item.connection if isinstance(item, TracedConnection) else item for item in connections]
    count = {"messaging.batch.message_count": len(targets)}
    traced_message, span = _start_send(message, text, _first_url(targets), extra_data=count)
    options: dict[str, Any] = {"raise_exceptions": raise_exceptions}
    if text is not None:
        options["text"] = text
    try:
        websockets_broadcast(targets, traced_message, **options)
    except BaseException as error:
        finish_publish(span, error)
        raise
    finish_publish(span)


def _first_url(connections: list[Connection]) -> str:
    try:
        return connection_url(connections[0]) if connections else SYSTEM
    except Exception:
        return SYSTEM


# Servers ------------------------------------------------------------------------------------------


Handler: TypeAlias = Callable[..., Awaitable[None]]


def traced_handler(handler: Handler, *, strip_metadata: bool = False) -> Callable[..., Awaitable[None]]:
    """Wrap a server handler: it receives a :class:`TracedConnection` and runs in the handshake's trace.

    Other arguments (``websockets``' router passes URL parameters) are passed on. An exception
    escaping the handler ends the current message's processing as failed (reported to Sentry) and
    propagates to ``websockets`` unchanged.
    """

    @functools.wraps(handler)
    async def run(connection: ServerConnection, *args: Any, **kwargs: Any) -> None:
        traced_connection = traced(connection, strip_metadata=strip_metadata)
        traced_connection._managed = True  # the handler's exception ends the message, below
        # The span active where the server was started is not the connection's parent.
        with propagation_scope(traced_connection._handshake, keys=METADATA_KEYS):
            try:
                await handler(traced_connection, *args, **kwargs)
            except BaseException as error:
                traced_connection.finish_processing(error)
                raise
            finally:
                traced_connection.finish_processing()

    return run


# Clients ------------------------------------------------------------------------------------------


class TracedConnect:
    """``websockets.asyncio.client.connect`` with the trace in the handshake; see :func:`connect`."""

    def __init__(self, uri: str, strip_metadata: bool, options: dict[str, Any]) -> None:
        options["additional_headers"] = handshake_headers(uri, options.get("additional_headers"))
        #: The underlying ``websockets`` ``connect`` object.
        self.connect = websockets_connect(uri, **options)
        self._strip_metadata = strip_metadata
        self._connection: TracedConnection | None = None

    def _traced(self, connection: ClientConnection) -> TracedConnection:
        return traced(connection, strip_metadata=self._strip_metadata)

    def __await__(self) -> Generator[Any, None, TracedConnection]:
        return self._open().__await__()

    async def _open(self) -> TracedConnection:
        return self._traced(await self.connect)

    async def __aenter__(self) -> TracedConnection:
        self._connection = self._traced(await self.connect.__aenter__())
        self._connection._managed = True  # the block's exception ends the message, in __aexit__
        return self._connection

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finish_processing(exc)
        await self.connect.__aexit__(exc_type, exc, tb)

    async def __aiter__(self) -> AsyncIterator[TracedConnection]:
        async for connection in self.connect:
            yield self._traced(connection)


def connect(uri: str, *, strip_metadata: bool = False, **options: Any) -> TracedConnect:
    """Open a client connection, as ``websockets.asyncio.client.connect`` does, traced.

    The handshake carries the current trace as ``sentry-trace``/``baggage`` headers (merged into
    ``additional_headers``), and the connection is wrapped with :func:`traced`. Use it as
    ``await connect(uri)``, ``async with connect(uri) as ws`` or ``async for ws in connect(uri)``.
    """
    return TracedConnect(uri, strip_metadata, options)
