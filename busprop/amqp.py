"""AMQP (RabbitMQ) through aio-pika: traced publishing, callback and iterator consumers, RPC.

sentry-python has no AMQP integration and OpenTelemetry's aio-pika instrumentation loses the trace
in ``queue.iterator()`` loops and on bytes header values (REFERENCE section 5). This adapter only
knows aio-pika: headers live in the message's AMQP table, the destination is
``exchange/routing_key`` (the default exchange has the empty name, so ``/orders``), a message is
processed by a ``queue.consume`` callback or an ``async for`` loop body. Everything else (parsing,
sampling, scopes, span data) is the core's.

Publishing never changes the user's :class:`aio_pika.Message`: an :class:`OutgoingMessage` stands
in for it, with the same body and properties but its own headers table carrying the trace, so a
message object (or a headers dict) reused for several publishes never carries a stale trace, and
concurrent publishes of one object cannot send each other's trace. The payload is the same
``bytes`` object, never re-encoded.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import inspect
import logging
import math
import random
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractMessage,
    AbstractQueue,
    AbstractQueueIterator,
    MessageInfo,
)
from aio_pika.patterns import RPC
from aio_pika.queue import QueueIterator

from busprop import sdk
from busprop.config import get_config, should_propagate
from busprop.decorators import traced_call
from busprop.iteration import TracedAsyncIterator
from busprop.patching import Patches
from busprop.processing import MessageProcessing, continue_trace, mechanism_of
from busprop.publishing import publish
from busprop.spandata import messaging_data

if TYPE_CHECKING:
    from sentry_sdk.tracing import Span

__all__ = [
    "AioPikaIntegration",
    "OutgoingMessage",
    "TracedExchange",
    "TracedQueueIterator",
    "TracedRPC",
    "consumer",
    "destination_of",
    "message_processing",
    "publisher",
    "retry_count",
    "traced_exchange",
    "traced_iterator",
]

logger = logging.getLogger("busprop")

SYSTEM = "rabbitmq"
ORIGIN = "auto.queue.busprop.aio_pika"
#: Publish time in epoch seconds (a decimal string): the AMQP ``timestamp`` property has whole
#: seconds only, too coarse for a receive latency in milliseconds.
PUBLISHED_AT_HEADER = "busprop-published-at"
ROUTING_KEY = "messaging.rabbitmq.destination.routing_key"
DELIVERY_TAG = "messaging.rabbitmq.message.delivery_tag"
RPC_OP = "rpc.client"

F = TypeVar("F", bound=Callable[..., Any])

#: The message whose processing the current context already runs (one transaction per message,
#: even when a decorated callback is also wrapped by :class:`AioPikaIntegration`).
_processing_message: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "busprop_amqp_processing", default=None
)
#: Set while a traced publish runs, so an inner (patched) publish does not trace it twice.
_publishing: contextvars.ContextVar[bool] = contextvars.ContextVar("busprop_amqp_publishing", default=False)


# --- what aio-pika messages say -------------------------------------------------------------


def destination_of(exchange: str | None, routing_key: str | None) -> str:
    """The destination string for ``propagation_targets``: ``exchange/routing_key``.

    A part that is not a string (never what aio-pika hands over) counts as empty: the string is
    built from values that cannot run code of their own.
    """
    return f"{_name(exchange)}/{_name(routing_key)}"


def _name(value: Any) -> str:
    return str.__str__(value) if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def retry_count(message: AbstractIncomingMessage) -> int:
    """How many times the message was delivered before: dead-letterings plus redeliveries.

    ``x-death`` (one entry per queue and reason, each with a ``count``) counts the times a
    dead-letter exchange brought it back; ``x-delivery-count`` (quorum queues) counts the
    redeliveries, and the ``redelivered`` flag says there was at least one.
    """
    headers = message.headers or {}
    deaths = headers.get("x-death")
    dead_letterings = (
        sum(_count(entry.get("count")) for entry in deaths if isinstance(entry, Mapping))
        if isinstance(deaths, list)
        else 0
    )
    redeliveries = max(_count(headers.get("x-delivery-count")), 1 if message.redelivered else 0)
    return dead_letterings + redeliveries


def _published_at(message: AbstractMessage) -> float | None:
    """The publish time in epoch seconds: busprop's precise header, else the ``timestamp`` property."""
    value = (message.headers or {}).get(PUBLISHED_AT_HEADER)
    if isinstance(value, str) and len(value) < 32:
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    timestamp = message.timestamp
    try:
        return timestamp.timestamp() if timestamp is not None else None
    except (AttributeError, OverflowError, ValueError, OSError):
        return None


def message_processing(message: AbstractIncomingMessage, name: str | None = None) -> MessageProcessing:
    """The core's processing of one received message (``with``/``async with``)."""
    return continue_trace(
        message.headers,
        system=SYSTEM,
        destination=destination_of(message.exchange, message.routing_key),
        name=name,
        origin=ORIGIN,
        details=lambda: _message_details(message),
    )


def _message_details(message: AbstractIncomingMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "body_size": len(message.body),
        "retry_count": retry_count(message),
        "published_at": _published_at(message),
        "extra_data": {ROUTING_KEY: message.routing_key, DELIVERY_TAG: message.delivery_tag},
    }


# --- publishing -------------------------------------------------------------------------------


class OutgoingMessage(AbstractMessage):
    """What busprop publishes in place of the user's message: the same body and properties, but
    its own headers table (the user's headers plus the trace), publish time and message id.

    The user's message is only read, so it can be published again, concurrently or elsewhere,
    without carrying a stale trace. Attributes not set here are the original's.
    """

    def __init__(self, original: AbstractMessage, published_at: float | None) -> None:
        self.original = original
        self.headers = dict(original.headers or {})
        self.timestamp = original.timestamp
        if published_at is not None:  # None: the trace is unsampled, no consumer will measure latency
            self.headers[PUBLISHED_AT_HEADER] = f"{published_at:.6f}"
            self.timestamp = self.timestamp or datetime.fromtimestamp(published_at, tz=timezone.utc)
        # aiormq would generate the same (a random UUID's hex) when publishing; here the span can name it
        self.message_id = original.message_id or uuid.UUID(int=random.getrandbits(128), version=4).hex

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.original, attribute)

    @property
    def properties(self) -> aiormq.spec.Basic.Properties:
        properties = self.original.properties
        if not isinstance(self.original, aio_pika.Message):  # it might hand out a shared object
            properties = copy.copy(properties)
        properties.headers = self.headers
        properties.timestamp = self.timestamp
        properties.message_id = self.message_id
        return properties

    def info(self) -> MessageInfo:
        info = self.original.info()
        info["headers"], info["timestamp"], info["message_id"] = self.headers, self.timestamp, self.message_id
        return info

    @property
    def locked(self) -> bool:
        return False

    def lock(self) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        return iter(self.original.body)

    def __copy__(self) -> OutgoingMessage:
        duplicate = OutgoingMessage.__new__(OutgoingMessage)
        duplicate.__dict__.update(self.__dict__, headers=dict(self.headers))
        return duplicate

    def __repr__(self) -> str:
        return f"<OutgoingMessage of {self.original!r}>"


async def _publish_message(
    exchange: AbstractExchange,
    message: AbstractMessage,
    routing_key: str,
    send: Callable[..., Awaitable[Any]],
    **options: Any,
) -> Any:
    """Publish ``message`` with ``send(message, routing_key, **options)`` inside a ``queue.publish`` span.

    ``send`` is the exchange's own publish. The trace is written into an :class:`OutgoingMessage`
    standing in for ``message``; for a destination outside ``propagation_targets`` the message is
    published as given.
    """
    if _publishing.get():
        return await send(message, routing_key, **options)
    try:
        destination = destination_of(exchange.name, routing_key)
        published_at = None if sdk.outgoing_sampled() is False else time.time()
        outgoing = OutgoingMessage(message, published_at) if should_propagate(destination) else None
        sent = outgoing if outgoing is not None else message
        publishing = publish(
            outgoing.headers if outgoing is not None else {},
            system=SYSTEM,
            destination=destination,
            message_id=sent.message_id,
            body_size=len(sent.body),
            origin=ORIGIN,
            extra_data={ROUTING_KEY: routing_key},
        )
    except Exception:  # a message busprop cannot read is published as it is, untraced
        logger.debug("busprop: could not prepare the AMQP message for tracing", exc_info=True)
        return await send(message, routing_key, **options)
    token = _publishing.set(True)
    try:
        with publishing:
            return await send(sent, routing_key, **options)
    finally:
        _publishing.reset(token)


class TracedExchange(AbstractExchange):
    """An aio-pika exchange whose ``publish`` writes the current trace; see :func:`traced_exchange`.

    Everything but ``publish`` is the wrapped exchange's; it is still an
    :class:`~aio_pika.abc.AbstractExchange`, so it can be passed to ``queue.bind``.
    """

    def __init__(self, exchange: AbstractExchange) -> None:
        self.exchange = exchange
        self.name = exchange.name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.exchange, attribute)

    def __repr__(self) -> str:
        return f"<TracedExchange {self.exchange!r}>"

    async def publish(self, message: AbstractMessage, routing_key: str, **options: Any) -> Any:
        """Publish like ``exchange.publish``, inside a ``queue.publish`` span, with the trace headers."""
        return await _publish_message(self.exchange, message, routing_key, self.exchange.publish, **options)

    async def declare(self, *args: Any, **kwargs: Any) -> Any:
        return await self.exchange.declare(*args, **kwargs)

    async def bind(self, *args: Any, **kwargs: Any) -> Any:
        return await self.exchange.bind(*args, **kwargs)

    async def unbind(self, *args: Any, **kwargs: Any) -> Any:
        return await self.exchange.unbind(*args, **kwargs)

    async def delete(self, *args: Any, **kwargs: Any) -> Any:
        return await self.exchange.delete(*args, **kwargs)


def traced_exchange(exchange: AbstractExchange) -> TracedExchange:
    """Wrap an exchange (``channel.default_exchange`` included) so its publishes carry the trace."""
    if isinstance(exchange, TracedExchange):
        return exchange
    return TracedExchange(exchange)


def _with_traced_exchanges(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    traced_args = tuple(traced_exchange(arg) if isinstance(arg, AbstractExchange) else arg for arg in args)
    for key, value in kwargs.items():
        if isinstance(value, AbstractExchange):
            kwargs[key] = traced_exchange(value)
    return traced_args


def publisher(func: F) -> F:
    """Decorate an async function that publishes: each exchange it receives is traced.

    Every :class:`~aio_pika.abc.AbstractExchange` argument (positional or keyword) is passed on
    as :func:`traced_exchange` of itself, so each ``publish`` inside is a ``queue.publish`` span
    carrying the trace; everything else is passed as it was.
    """

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs = dict(kwargs)
        return await func(*_with_traced_exchanges(args, kwargs), **kwargs)

    return cast(F, wrapper)


# --- consuming --------------------------------------------------------------------------------


def _find_message(args: tuple[Any, ...]) -> AbstractIncomingMessage | None:
    for arg in reversed(args):
        if isinstance(arg, AbstractIncomingMessage):
            return arg
    return None


@contextlib.contextmanager
def _processing_once(message: AbstractIncomingMessage | None, name: str | None = None) -> Iterator[None]:
    """Process ``message`` inside its trace, unless this context already does (then a no-op).

    A callback decorated with :func:`consumer` and also wrapped by :class:`AioPikaIntegration`, or
    ``TracedRPC`` under the integration, is one transaction per message, not two.
    """
    if message is None or _processing_message.get() is message:
        yield
        return
    token = _processing_message.set(message)
    try:
        with _processing_or_fresh_trace(message, name):
            yield
    finally:
        _processing_message.reset(token)


async def _process_message(
    message: AbstractIncomingMessage | None, call: Callable[[], Any], name: str | None = None
) -> Any:
    """Run ``call()`` (sync or async) inside ``message``'s trace; see :func:`_processing_once`."""
    with _processing_once(message, name):
        result = call()
        return await result if inspect.isawaitable(result) else result


def _processing_or_fresh_trace(message: AbstractIncomingMessage, name: str | None) -> MessageProcessing:
    """:func:`message_processing`, or a fresh trace when the message's details cannot be read."""
    try:
        return message_processing(message, name)
    except Exception:
        logger.debug("busprop: could not read the AMQP message's details", exc_info=True)
        return continue_trace(system=SYSTEM, destination="unknown", name=name, origin=ORIGIN)


@overload
def consumer(func: F, *, name: str | None = None) -> F: ...


@overload
def consumer(func: None = None, *, name: str | None = None) -> Callable[[F], F]: ...


def consumer(func: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Decorate a ``queue.consume`` callback: it runs inside the trace its message carries.

    Use as ``@busprop.amqp.consumer`` or ``@busprop.amqp.consumer(name="orders")`` (the
    transaction name; default ``exchange/routing_key``). The message is the callback's last
    :class:`~aio_pika.abc.AbstractIncomingMessage` argument, so methods work too; a sync function
    stays sync. busprop never acks, nacks or rejects: an exception propagates unchanged to aio-pika.
    """

    def decorate(callback: F) -> F:
        return traced_call(callback, lambda args, kwargs: _processing_once(_find_message(args), name))

    return decorate(func) if func is not None else decorate


class _AsIs(AsyncIterable[AbstractIncomingMessage]):
    """Hands an iterator to the core as it is, without calling its (possibly patched) ``__aiter__``."""

    def __init__(self, iterator: AsyncIterator[AbstractIncomingMessage]) -> None:
        self.iterator = iterator

    def __aiter__(self) -> AsyncIterator[AbstractIncomingMessage]:
        return self.iterator


class TracedQueueIterator(TracedAsyncIterator[AbstractIncomingMessage]):
    """``queue.iterator()`` whose loop body runs inside each message's trace; see :func:`traced_iterator`."""

    def __init__(self, iterable: AsyncIterable[AbstractIncomingMessage], name: str | None = None) -> None:
        inner: AsyncIterator[AbstractIncomingMessage]
        if isinstance(iterable, AbstractQueueIterator):
            inner = iterable
        elif isinstance(iterable, AbstractQueue):  # as its __aiter__, bypassing the integration's patch
            inner = iterable.iterator()
        else:
            inner = iterable.__aiter__()
        self.queue_iterator = inner
        super().__init__(_AsIs(inner), lambda message: message_processing(message, name))

    async def __aenter__(self) -> TracedQueueIterator:
        if isinstance(self.queue_iterator, AbstractQueueIterator):
            await self.queue_iterator.__aenter__()
        await super().__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        if isinstance(self.queue_iterator, AbstractQueueIterator):
            await self.queue_iterator.__aexit__(exc_type, exc, tb)

    async def close(self) -> None:
        """End the current message's processing and close the queue iterator."""
        await self.aclose()
        if isinstance(self.queue_iterator, AbstractQueueIterator):
            await self.queue_iterator.close()


def traced_iterator(
    iterator: AsyncIterable[AbstractIncomingMessage], *, name: str | None = None
) -> TracedQueueIterator:
    """Wrap ``queue.iterator()`` (or a queue) so each ``async for`` body runs in its message's trace.

    A message's transaction ends when the loop asks for the next one, where the loop is left
    (``break``, ``return``, an exception: before the code after the loop) or on ``close()``. Use it
    as ``async with busprop.amqp.traced_iterator(queue.iterator()) as messages:`` to have a raising
    loop body mark the message's transaction failed at the block's end (and the queue iterator
    closed); a plain ``async for`` works too. See :mod:`busprop.iteration`.
    """
    if isinstance(iterator, TracedQueueIterator):
        return iterator
    return TracedQueueIterator(iterator, name)


# --- RPC (aio_pika.patterns.RPC) --------------------------------------------------------------

#: The destination of the RPC call the current context is making, while its round-trip span runs.
_rpc_destination: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "busprop_amqp_rpc_destination", default=None
)


def _rpc_destination_of(rpc: RPC, method_name: str) -> str:
    exchange = rpc.rpc_exchange.name if rpc.rpc_exchange is not None else ""
    # Private: aio-pika's RPC has no public way to name a method's routing key (tests/test_seam.py).
    return destination_of(exchange, rpc._format_routing_key(method_name))


def _round_trip_span(method_name: str, destination: str) -> Span | None:
    """A span for the whole call, under the current sampled span (none outside one)."""
    parent = sdk.sampled_parent()
    if parent is None:
        return None
    data = messaging_data(system=SYSTEM, destination=destination, operation="publish")
    return sdk.start_child_span(parent, op=RPC_OP, name=f"rpc {method_name}", origin=ORIGIN, data=data)


async def _rpc_call(rpc: RPC, method_name: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run an RPC ``call()`` inside one span that covers the round trip (request, server, reply)."""
    if _rpc_destination.get() is not None:
        return await call()
    try:
        destination = _rpc_destination_of(rpc, method_name)
        span = _round_trip_span(method_name, destination)
    except Exception:
        logger.debug("busprop: could not start the RPC span", exc_info=True)
        return await call()
    token = _rpc_destination.set(destination)
    error: BaseException | None = None
    try:
        return await call()
    except BaseException as raised:
        error = raised
        raise
    finally:
        _rpc_destination.reset(token)
        if span is not None:
            with sdk.capture_internal_exceptions():
                sdk.finish_span(span, error)


async def _rpc_execute(call: Callable[[], Awaitable[Any]]) -> Any:
    """Run the server's function: its exception is reported and fails the transaction, then re-raised.

    aio-pika's RPC turns the exception into an error reply, so it never reaches the consumer's
    transaction on its own.
    """
    try:
        return await call()
    except Exception as error:
        with sdk.capture_internal_exceptions():
            if get_config().capture_exceptions:
                sdk.capture_exception(error, mechanism=mechanism_of(ORIGIN))
            sdk.fail_current_span()
        raise


class _RPCChannel:
    """The channel a :class:`TracedRPC` publishes through: its exchanges are traced.

    aio-pika's RPC publishes requests and replies with ``channel.default_exchange`` (or the
    exchange it declares), so each gets its ``queue.publish`` span and the trace in its headers.
    Everything else is the channel's.
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.channel, attribute)

    @property
    def default_exchange(self) -> TracedExchange:
        return traced_exchange(self.channel.default_exchange)

    async def declare_exchange(self, *args: Any, **kwargs: Any) -> TracedExchange:
        return traced_exchange(await self.channel.declare_exchange(*args, **kwargs))


class TracedRPC(RPC):
    """``aio_pika.patterns.RPC`` with trace propagation: ``await TracedRPC.create(channel)``.

    ``call`` runs in an ``rpc.client`` span covering the round trip; the request is published in
    a ``queue.publish`` span under it, with the trace in its headers; the server processes each
    call inside the caller's trace (a ``queue.process`` span); an exception in the server's
    function fails it.
    """

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(cast(Any, _RPCChannel(channel)), *args, **kwargs)

    async def call(self, method_name: str, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        return await _rpc_call(
            self, method_name, functools.partial(super().call, method_name, kwargs, **options)
        )

    async def on_call_message(self, method_name: str, message: aio_pika.IncomingMessage) -> None:
        await _process_message(message, functools.partial(super().on_call_message, method_name, message))

    async def execute(self, func: Any, payload: dict[str, Any]) -> Any:
        return await _rpc_execute(functools.partial(super().execute, func, payload))


# --- auto-instrumentation ---------------------------------------------------------------------


def _enabled() -> bool:
    return sdk.integration_enabled(AioPikaIntegration)


def _is_internal_callback(callback: Any) -> bool:
    """aio-pika's own consumers: a queue iterator's buffer and RPC's reply handler."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, AbstractQueueIterator):
        return True
    return isinstance(owner, RPC) and getattr(callback, "__name__", "") == "on_result_message"


def _traced_callback(callback: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(callback, "__busprop_traced__", False) or _is_internal_callback(callback):
        return callback

    async def traced(message: AbstractIncomingMessage) -> Any:
        return await _process_message(message, lambda: callback(message))

    traced.__busprop_traced__ = True  # type: ignore[attr-defined]
    return traced


# The patches are wrapt wrappers (see busprop.patching): ``wrapped`` is aio-pika's own method, bound
# to the instance; the wrapper returns what the method returns (a coroutine for an async method).


def _patched_publish(
    wrapped: Callable[..., Any], self: AbstractExchange, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _enabled():
        return wrapped(*args, **kwargs)
    return _traced_publish(self, wrapped, *args, **kwargs)


def _traced_publish(
    exchange: AbstractExchange,
    send: Callable[..., Any],
    message: AbstractMessage,
    routing_key: str,
    **options: Any,
) -> Awaitable[Any]:
    return _publish_message(exchange, message, routing_key, send, **options)


def _patched_consume(
    wrapped: Callable[..., Any], _queue: aio_pika.Queue, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return _consume(wrapped, *args, **kwargs)


def _consume(wrapped: Callable[..., Any], callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if _enabled():
        callback = _traced_callback(callback)
    return wrapped(callback, *args, **kwargs)


def _patched_aiter(
    wrapped: Callable[..., Any],
    _self: AsyncIterable[AbstractIncomingMessage],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    iterator = wrapped(*args, **kwargs)
    if not _enabled():
        return iterator
    traced = TracedQueueIterator(iterator)
    # A queue iterator already consuming was entered by `async with queue.iterator() as q` (or looped
    # over before): its __aexit__, patched below, will see the loop body's exception and end the
    # message with it. Otherwise the message ends where the loop is left.
    if getattr(iterator, "consumer_tag", None) is not None:
        traced._managed = True
        with contextlib.suppress(AttributeError):
            iterator._busprop_traced = traced
    return traced.__aiter__()


async def _patched_aexit(
    wrapped: Callable[..., Any],
    self: AbstractQueueIterator,
    exc_info: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    traced = self.__dict__.pop("_busprop_traced", None)
    if isinstance(traced, TracedQueueIterator):  # the loop body's exception fails its message's transaction
        await TracedAsyncIterator.__aexit__(traced, *exc_info)
    return await wrapped(*exc_info, **kwargs)


def _patched_call(
    wrapped: Callable[..., Any], self: RPC, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _enabled():
        return wrapped(*args, **kwargs)
    return _rpc_call(self, _method_name(*args, **kwargs), functools.partial(wrapped, *args, **kwargs))


def _method_name(method_name: str, *_args: Any, **_kwargs: Any) -> str:
    return method_name


def _patched_execute(
    wrapped: Callable[..., Any], _self: RPC, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _enabled():
        return wrapped(*args, **kwargs)
    return _rpc_execute(functools.partial(wrapped, *args, **kwargs))


class AioPikaIntegration(sdk.Integration):
    """Traces existing aio-pika code without edits: ``sentry_sdk.init(integrations=[AioPikaIntegration()])``.

    Patches ``Exchange.publish`` (robust exchanges included), ``Queue.consume`` callbacks,
    ``async for`` over queues and queue iterators, and ``RPC.call``/``RPC.execute``, through
    :mod:`busprop.patching`: installing twice changes nothing, :meth:`uninstall` puts the originals
    back, and both may run from any thread while other threads use aio-pika. The patches do
    nothing while the active client was initialised without this integration.
    """

    identifier = "busprop_aio_pika"

    @staticmethod
    def setup_once() -> None:
        sdk.require_supported_sdk()
        _PATCHES.install()

    @staticmethod
    def uninstall() -> None:
        """Restore aio-pika's originals; a later ``sentry_sdk.init`` with the integration patches again."""
        _PATCHES.uninstall()
        with sdk.capture_internal_exceptions():
            sdk.forget_integration(AioPikaIntegration.identifier)


_PATCHES = Patches(
    AioPikaIntegration.identifier,
    [
        (aio_pika.Exchange, "publish", _patched_publish),
        (aio_pika.Queue, "consume", _patched_consume),
        (aio_pika.Queue, "__aiter__", _patched_aiter),
        (QueueIterator, "__aiter__", _patched_aiter),
        (QueueIterator, "__aexit__", _patched_aexit),
        (RPC, "call", _patched_call),
        (RPC, "execute", _patched_execute),
    ],
)
