"""pika: where it keeps an AMQP message's headers, destination and ids, and its patch points.

pika hands a consumer ``(channel, method, properties, body)``: the ``Basic.Deliver`` method says
exchange, routing key, delivery tag and redelivery; ``BasicProperties`` holds the headers table
(a valid UTF-8 string arrives as ``str``, anything else as ``bytes``), message id, timestamp and
correlation id. Messages arrive through ``basic_consume`` callbacks (``BlockingChannel`` and the
``Channel`` of ``SelectConnection``) or ``BlockingChannel.consume()``'s generator; they leave
through ``basic_publish``. Everything that is AMQP rather than pika is :mod:`busprop.amqp._core`'s.

Publishing never changes the caller's ``BasicProperties``: the trace is written into a copy with a
headers table of its own, so one properties object reused for many publishes carries each
publish's own trace. ``BlockingChannel.basic_publish`` calls ``Channel.basic_publish`` underneath:
only the outer call is traced (one ``queue.publish`` span, covering the confirm wait).
"""

from __future__ import annotations

import copy
import functools
import logging
import weakref
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, TypeAlias

import pika
import pika.channel
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from busprop.amqp import _core
from busprop.iteration import TracedIterator
from busprop.patching import Patches
from busprop.processing import MessageProcessing
from busprop.publishing import Route

logger = logging.getLogger("busprop")

ORIGIN = "auto.queue.busprop.pika"
#: What every publish of this client has in common.
ROUTE = Route(_core.SYSTEM, origin=ORIGIN, bus=_core.INTEGRATION)

#: What ``BlockingChannel.consume()`` yields: a message, or ``(None, None, None)`` after inactivity.
ConsumeItem: TypeAlias = "tuple[Basic.Deliver | None, BasicProperties | None, bytes | None]"

#: The methods a delivered message comes with (``basic_get`` returns ``Basic.GetOk``).
DELIVERIES = (Basic.Deliver, Basic.GetOk)


# --- what pika messages say -------------------------------------------------------------------


def is_delivery(method: Any) -> bool:
    """Whether ``method`` is the method frame of a delivered message."""
    return isinstance(method, DELIVERIES)


def _headers(properties: Any) -> Any:
    return getattr(properties, "headers", None)


def retry_count(method: Basic.Deliver, properties: BasicProperties | None) -> int:
    """How many times the message was delivered before (see :func:`busprop.amqp._core.retry_count_of`)."""
    return _core.retry_count_of(_headers(properties), getattr(method, "redelivered", False))


def message_processing(
    method: Basic.Deliver,
    properties: BasicProperties | None,
    body: bytes | None = None,
    name: str | None = None,
) -> MessageProcessing:
    """The core's processing of one delivered message (``with``)."""
    return _core.message_processing(
        _headers(properties),
        method.exchange,
        method.routing_key,
        origin=ORIGIN,
        name=name,
        delivery=lambda: _delivery(method, properties, body),
    )


def _delivery(
    method: Basic.Deliver, properties: BasicProperties | None, body: bytes | None
) -> _core.Delivery:
    headers = _headers(properties)
    return _core.Delivery(
        message_id=getattr(properties, "message_id", None),
        body=body,
        routing_key=method.routing_key,
        delivery_tag=method.delivery_tag,
        retry_count=_core.retry_count_of(headers, method.redelivered),
        published_at=_core.published_at_of(headers, getattr(properties, "timestamp", None)),
        correlation_id=getattr(properties, "correlation_id", None),
    )


def _processing_once(
    method: Basic.Deliver, properties: BasicProperties | None, body: bytes | None, name: str | None = None
) -> AbstractContextManager[None]:
    """Process the message inside its trace, unless this context already does (then a no-op)."""
    return _core.ProcessingOnce(method, lambda: message_processing(method, properties, body, name), ORIGIN)


def processing_for_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None
) -> AbstractContextManager[None] | None:
    """The processing for a consumer callback's call, found from its ``Basic.Deliver`` argument.

    pika calls ``(channel, method, properties, body)``: the properties and body follow the method.
    """
    for index, method in enumerate((*args, kwargs.get("method"))):
        if is_delivery(method):
            properties = args[index + 1] if index + 1 < len(args) else kwargs.get("properties")
            body = args[index + 2] if index + 2 < len(args) else kwargs.get("body")
            return _processing_once(method, *_message_parts(properties, body), name)
    return None


def _message_parts(properties: Any, body: Any) -> tuple[BasicProperties | None, bytes | None]:
    return (
        properties if isinstance(properties, BasicProperties) else None,
        body if isinstance(body, bytes) else None,
    )


# --- publishing -------------------------------------------------------------------------------


def _publish_arguments(
    exchange: str, routing_key: str, body: Any, properties: Any = None, mandatory: bool = False
) -> tuple[str, str, Any, Any, bool]:
    """pika's ``basic_publish`` arguments, positional or by name, in order."""
    return exchange, routing_key, body, properties, mandatory


def _outgoing_properties(properties: Any) -> BasicProperties:
    """A copy of the caller's properties (a new one for ``None``) with a headers table of its own."""
    outgoing = copy.copy(properties) if properties is not None else BasicProperties()
    outgoing.headers = _core.outgoing_headers(_headers(properties), None)
    return outgoing


def traced_publish(send: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``send`` (a ``basic_publish``) inside a ``queue.publish`` span, with the trace headers.

    Arguments that are not pika's (a ``TypeError`` from pika's own call) and properties busprop
    cannot read are passed on as given, untraced.
    """
    return _traced_publish(send, args, kwargs)


def _traced_publish(
    send: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, patched: bool = False
) -> Any:
    """:func:`traced_publish`; ``patched``: AMQPIntegration's patch calls, traced only when the
    current client has AMQPIntegration (:func:`busprop.amqp._core.start_publish_span`)."""
    if _core.already_publishing():  # a nested publish (the channel's own, under a blocking one)
        return send(*args, **kwargs)
    try:
        exchange, routing_key, body, properties, mandatory = _publish_arguments(*args, **kwargs)
        destination = _core.destination_of(exchange, routing_key)
        outgoing = _outgoing_properties(properties) if _core.propagates_to(destination) else None
        sent = outgoing if outgoing is not None else properties
        started = _core.start_publish_span(
            ROUTE,
            outgoing.headers if outgoing is not None else None,
            destination,
            routing_key,
            message_id=getattr(sent, "message_id", None),
            body=body,
            correlation_id=getattr(sent, "correlation_id", None),
            integration=patched,
        )
    except Exception:
        logger.debug("busprop: could not prepare the pika message for tracing", exc_info=True)
        return send(*args, **kwargs)
    if started is None:  # the current client has not set AMQPIntegration up
        return send(*args, **kwargs)
    try:
        result = send(exchange, routing_key, body, sent, mandatory)
    except BaseException as error:
        _core.finish_publish_span(started, error)
        raise
    _core.finish_publish_span(started)
    return result


def basic_publish(
    channel: Any,
    exchange: str,
    routing_key: str,
    body: Any,
    properties: BasicProperties | None = None,
    mandatory: bool = False,
) -> Any:
    """``channel.basic_publish(exchange, routing_key, body, properties, mandatory)``, traced.

    For a ``BlockingChannel`` or a ``SelectConnection``'s ``Channel`` that the Integration does not
    patch; under the Integration it is the same single span.
    """
    return traced_publish(channel.basic_publish, exchange, routing_key, body, properties, mandatory)


# --- consuming --------------------------------------------------------------------------------


def traced_callback(callback: Callable[..., Any], name: str | None = None) -> Callable[..., Any]:
    """Wrap an ``on_message_callback(channel, method, properties, body)`` once."""
    if getattr(callback, "__busprop_traced__", False):
        return callback

    @functools.wraps(callback)
    def traced(channel: Any, method: Any, properties: Any, body: Any) -> Any:
        if not is_delivery(method):
            return callback(channel, method, properties, body)
        with _processing_once(method, *_message_parts(properties, body), name):
            return callback(channel, method, properties, body)

    traced.__busprop_traced__ = True  # type: ignore[attr-defined]
    return traced


class TracedConsume(TracedIterator[Any]):
    """``BlockingChannel.consume()`` whose loop body runs inside each message's trace.

    A message's transaction ends when the next one is asked for, where the loop is left
    (``break``, ``return``, an exception), on :meth:`close`, on the channel's ``cancel()`` or
    ``close()`` (under the Integration) or when the generator is collected. An inactivity yield
    ``(None, None, None)`` gets no transaction. See :mod:`busprop.iteration`.
    """

    def __init__(self, generator: Iterable[Any], name: str | None = None) -> None:
        self.generator = generator
        super().__init__(generator, lambda item: _consumed_processing(item, name))

    def __next__(self) -> Any:
        self._current.finish()
        item = next(self._iterator)
        if isinstance(item, tuple) and len(item) == 3 and is_delivery(item[0]):
            self._current.start(self._start(item))
        return item

    def end_message(self) -> None:
        """End the current message's processing (the channel's ``cancel()`` or ``close()``)."""
        super().close()

    def close(self) -> None:
        """End the current message's processing and close pika's generator."""
        self.end_message()
        close = getattr(self.generator, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"<TracedConsume of {self.generator!r}>"


def _consumed_processing(item: Any, name: str | None) -> MessageProcessing:
    method, properties, body = item
    try:
        return message_processing(method, *_message_parts(properties, body), name)
    except Exception:
        logger.debug("busprop: could not read the pika message's details", exc_info=True)
        return _core.fresh_trace(ORIGIN, name)


def traced_iterator(generator: Iterable[Any], *, name: str | None = None) -> TracedConsume:
    """Wrap ``channel.consume(queue)`` so each loop body runs inside its message's trace."""
    if isinstance(generator, TracedConsume):
        return generator
    return TracedConsume(generator, name)


# --- auto-instrumentation ---------------------------------------------------------------------

#: The consume generators the Integration handed out, by channel: ``cancel()`` and ``close()``
#: end the message their loop body is processing.
_generators: weakref.WeakKeyDictionary[Any, weakref.WeakSet[TracedConsume]] = weakref.WeakKeyDictionary()


def _patched_publish(
    wrapped: Callable[..., Any], _channel: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return _traced_publish(wrapped, args, kwargs, patched=True)


def _is_internal_callback(callback: Any) -> bool:
    """``BlockingChannel``'s own delivery handler, which hands messages to the user's callback."""
    return isinstance(getattr(callback, "__self__", None), BlockingChannel)


def _with_traced_callback(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``basic_consume``'s arguments with the ``on_message_callback`` traced (pika's own left alone)."""
    if len(args) >= 2:
        callback = args[1]
        if callable(callback) and not _is_internal_callback(callback):
            args = (args[0], traced_callback(callback), *args[2:])
    elif callable(kwargs.get("on_message_callback")):
        callback = kwargs["on_message_callback"]
        if not _is_internal_callback(callback):
            kwargs = {**kwargs, "on_message_callback": traced_callback(callback)}
    return args, kwargs


def _patched_consume(
    wrapped: Callable[..., Any], _channel: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _core.integration_enabled():
        args, kwargs = _with_traced_callback(args, kwargs)
    return wrapped(*args, **kwargs)


def _patched_generator(
    wrapped: Callable[..., Any], channel: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    generator = wrapped(*args, **kwargs)
    if not _core.integration_enabled():
        return generator
    traced = TracedConsume(generator)
    try:
        _generators.setdefault(channel, weakref.WeakSet()).add(traced)
    except TypeError:  # a channel without weak references: cancel() does not end its message
        logger.debug("busprop: %r cannot be watched for cancel()", type(channel))
    return traced


def _patched_cancel(
    wrapped: Callable[..., Any], channel: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``cancel()``/``close()``: the consume loop's current message ends first."""
    try:
        generators = _generators.pop(channel, None)
        for generator in list(generators or ()):
            generator.end_message()
    except Exception:
        logger.debug("busprop: could not end the message of a cancelled consumer", exc_info=True)
    return wrapped(*args, **kwargs)


#: What :class:`busprop.amqp.AMQPIntegration` patches in pika.
PATCHES = Patches(
    f"{_core.INTEGRATION}.pika",
    [
        (BlockingChannel, "basic_publish", _patched_publish),
        (pika.channel.Channel, "basic_publish", _patched_publish),
        (BlockingChannel, "basic_consume", _patched_consume),
        (pika.channel.Channel, "basic_consume", _patched_consume),
        (BlockingChannel, "consume", _patched_generator),
        (BlockingChannel, "cancel", _patched_cancel),
        (BlockingChannel, "close", _patched_cancel),
    ],
)
