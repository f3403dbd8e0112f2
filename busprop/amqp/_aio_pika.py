"""aio-pika: where it keeps an AMQP message's headers, destination and ids, and its patch points.

aio-pika hands a consumer an :class:`~aio_pika.abc.AbstractIncomingMessage` through a
``queue.consume`` callback or an ``async for`` over ``queue.iterator()``, and publishes through
``exchange.publish``. Everything that is AMQP rather than aio-pika (destination, retries, publish
time, the processing and the publish span) is :mod:`busprop.amqp._core`'s.

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
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar, cast

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
from busprop.amqp import _core
from busprop.amqp._core import (
    INTEGRATION,
    SYSTEM,
    Delivery,
    ProcessingOnce,
    already_publishing,
    destination_of,
    finish_publish_span,
    integration_enabled,
    outgoing_headers,
    propagates_to,
    published_at_of,
    retry_count_of,
    start_publish_span,
)
from busprop.config import get_config
from busprop.iteration import TracedAsyncIterator
from busprop.patching import Patches
from busprop.processing import MessageProcessing, mechanism_of
from busprop.publishing import Route
from busprop.spandata import messaging_data

logger = logging.getLogger("busprop")

ORIGIN = "auto.queue.busprop.aio_pika"
#: What every publish of this client has in common.
ROUTE = Route(SYSTEM, origin=ORIGIN, bus=INTEGRATION)
RPC_OP = "rpc.client"

F = TypeVar("F", bound=Callable[..., Any])


# --- what aio-pika messages say ---------------------------------------------------------------


def retry_count(message: AbstractIncomingMessage) -> int:
    """How many times the message was delivered before (see :func:`busprop.amqp._core.retry_count_of`)."""
    return retry_count_of(message.headers, message.redelivered)


def message_processing(message: AbstractIncomingMessage, name: str | None = None) -> MessageProcessing:
    """The core's processing of one received message (``with``/``async with``)."""
    return _core.message_processing(
        message.headers,
        message.exchange,
        message.routing_key,
        origin=ORIGIN,
        name=name,
        delivery=lambda: _delivery(message),
    )


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        message_id=message.message_id,
        body=message.body,
        routing_key=message.routing_key,
        delivery_tag=message.delivery_tag,
        retry_count=retry_count(message),
        published_at=published_at_of(message.headers, message.timestamp),
        correlation_id=message.correlation_id,
    )


# --- publishing -------------------------------------------------------------------------------


class OutgoingMessage(AbstractMessage):
    """What busprop publishes in place of the user's message: the same body and properties, but
    its own headers table (the user's headers plus the trace), publish time and message id.

    The user's message is only read, so it can be published again, concurrently or elsewhere,
    without carrying a stale trace. Attributes not set here are the original's.
    """

    def __init__(self, original: AbstractMessage, published_at: float | None) -> None:
        self.original = original
        self.body = original.body  # read by aio-pika's publish: here, not through __getattr__
        # published_at None: none yet (busprop's publish stamps it once the trace written is known)
        self.headers = outgoing_headers(original.headers, published_at)
        self.timestamp = original.timestamp
        if published_at is not None:
            self._stamp(published_at)
        # aiormq would generate the same (a random UUID's hex) when publishing; here the span can name it
        self.message_id = original.message_id or uuid.UUID(int=random.getrandbits(128), version=4).hex

    def _stamp(self, published_at: float) -> None:
        """Give the message the publish time as its ``timestamp`` property, unless it has one."""
        self.timestamp = self.timestamp or datetime.fromtimestamp(published_at, tz=timezone.utc)

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
    patched: bool = False,
    /,
    **options: Any,
) -> Any:
    """Publish ``message`` with ``send(message, routing_key, **options)`` inside a ``queue.publish`` span.

    ``send`` is the exchange's own publish. The trace is written into an :class:`OutgoingMessage`
    standing in for ``message``; for a destination outside ``propagation_targets`` the message is
    published as given. ``patched``: AMQPIntegration's patch calls, and the message is traced only
    when the current client has AMQPIntegration (asked in the lookup the publish makes anyway).
    """
    if already_publishing():
        return await send(message, routing_key, **options)
    try:
        destination = destination_of(exchange.name, routing_key)
        outgoing = OutgoingMessage(message, None) if propagates_to(destination) else None
        sent = outgoing if outgoing is not None else message
        started = start_publish_span(
            ROUTE,
            outgoing.headers if outgoing is not None else None,
            destination,
            routing_key,
            message_id=sent.message_id,
            body=message.body,
            correlation_id=message.correlation_id,
            integration=patched,
        )
    except Exception:  # a message busprop cannot read is published as it is, untraced
        logger.debug("busprop: could not prepare the AMQP message for tracing", exc_info=True)
        return await send(message, routing_key, **options)
    if started is None:  # the current client has not set AMQPIntegration up
        return await send(message, routing_key, **options)
    if outgoing is not None and started[2] is not None:
        try:
            outgoing._stamp(started[2])
        except Exception:  # a timestamp busprop cannot read: the message keeps it
            logger.debug("busprop: could not stamp the AMQP message's publish time", exc_info=True)
    try:
        result = await send(sent, routing_key, **options)
    except BaseException as error:
        finish_publish_span(started, error)
        raise
    finish_publish_span(started)
    return result


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


def _processing_once(
    message: AbstractIncomingMessage | None, name: str | None = None
) -> AbstractContextManager[None]:
    """Process ``message`` inside its trace, unless this context already does (then a no-op).

    A callback decorated with :func:`consumer` and also wrapped by the Integration, or
    ``TracedRPC`` under the Integration, is one transaction per message, not two.
    """
    return ProcessingOnce(message, lambda: message_processing(message, name), ORIGIN)  # type: ignore[arg-type]


async def _process_message(
    message: AbstractIncomingMessage | None, call: Callable[[], Any], name: str | None = None
) -> Any:
    """Run ``call()`` (sync or async) inside ``message``'s trace; see :func:`_processing_once`."""
    with _processing_once(message, name):
        result = call()
        return await result if inspect.isawaitable(result) else result


def processing_for_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None
) -> AbstractContextManager[None] | None:
    """The processing for a consumer callback's call: its last incoming-message argument's."""
    message = _find_message(args)
    return _processing_once(message, name) if message is not None else None


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


def _round_trip_span(method_name: str, destination: str) -> Any:
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
            if get_config(INTEGRATION).capture_exceptions:
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


# The patches call wrapt-style wrappers (see busprop.patching): ``wrapped`` is aio-pika's own method, bound
# to the instance; the wrapper returns what the method returns (a coroutine for an async method).


def _patched_publish(
    wrapped: Callable[..., Any], self: AbstractExchange, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        message, routing_key, options = _publish_arguments(*args, **kwargs)
    except TypeError:  # not aio-pika's arguments: aio-pika raises for them, as it would alone
        return wrapped(*args, **kwargs)
    return _publish_message(self, message, routing_key, wrapped, True, **options)


def _publish_arguments(
    message: AbstractMessage, routing_key: str, **options: Any
) -> tuple[AbstractMessage, str, dict[str, Any]]:
    """``Exchange.publish``'s arguments, positional or by name."""
    return message, routing_key, options


def _patched_consume(
    wrapped: Callable[..., Any], _queue: aio_pika.Queue, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return _consume(wrapped, *args, **kwargs)


def _consume(wrapped: Callable[..., Any], callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if integration_enabled():
        callback = _traced_callback(callback)
    return wrapped(callback, *args, **kwargs)


def _patched_aiter(
    wrapped: Callable[..., Any],
    _self: AsyncIterable[AbstractIncomingMessage],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    iterator = wrapped(*args, **kwargs)
    if not integration_enabled():
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
    if not integration_enabled():
        return wrapped(*args, **kwargs)
    return _rpc_call(self, _method_name(*args, **kwargs), functools.partial(wrapped, *args, **kwargs))


def _method_name(method_name: str, *_args: Any, **_kwargs: Any) -> str:
    return method_name


def _patched_execute(
    wrapped: Callable[..., Any], _self: RPC, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not integration_enabled():
        return wrapped(*args, **kwargs)
    return _rpc_execute(functools.partial(wrapped, *args, **kwargs))


#: What :class:`busprop.amqp.AMQPIntegration` patches in aio-pika: ``Exchange.publish`` (robust
#: exchanges included), ``Queue.consume`` callbacks, ``async for`` over queues and queue
#: iterators, and ``RPC.call``/``RPC.execute``.
PATCHES = Patches(
    f"{INTEGRATION}.aio_pika",
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
