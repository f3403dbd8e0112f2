"""The Kafka core: what is the same for every Kafka client library busprop supports.

Record headers are ``(str, bytes)`` pairs, the destination is the topic, a record's id is
``topic/partition/offset`` (the id its producer's span gets once the broker acknowledges it), its
timestamp (ms) gives the receive latency, and a record's processing starts when the consumer
returns it and ends when the loop asks for the next one (or the consumer closes). All of that,
the header copies, the ``queue.publish`` wrapper, delivery reporting, per-record and batch
processing, lives here once; a client module only says *where* its client keeps each thing.

Adding a client (say ``busprop/kafka/_confluent.py``):

1. Write the module with one ``CLIENT = KafkaClient(...)`` (:mod:`busprop.kafka._client` documents
   every field). Import the client library only inside the functions that need it
   (``record_types``, ``producer_types``, ``consumer_types``, ``patch_points``): it is optional.
   The record readers are one-liners (``lambda message: message.topic()``); a client whose produce
   call takes a delivery callback names its parameters in ``delivery_callbacks`` and wraps it in
   ``report_delivery`` (calling ``delivery.delivered(topic, partition, offset)`` or
   ``delivery.failed(error)``, then the callback); one that returns a future reports it in
   ``watch_result``.
2. Add its ``CLIENT`` to :data:`CLIENTS` (top of this module). From then on ``traced_producer``,
   ``traced_consumer``, ``traced_records``, ``record_processing``, ``process_batch`` and
   ``@consumer`` accept its producers, consumers and records (dispatch on their type), and
   KafkaIntegration patches its ``patch_points`` when the library is importable (skipped with a
   debug log otherwise). Keep kafka-python first: it also reads records of no known type.
3. A patch point whose kind the integration does not know yet (an ``async`` next, ``poll()``
   returning one record or ``None``) gets its generic wrapper in :mod:`busprop.kafka._integration`,
   written once for every client, not in the client module.

If two client modules share lines, those lines belong here.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast, overload

from busprop import sdk, spandata
from busprop.carrier import extract
from busprop.decorators import FromCall, destination_text, resolve, traced_call
from busprop.iteration import TracedAsyncIterator, TracedIterator, _processing_for
from busprop.kafka import _aiokafka, _confluent, _kafka_python
from busprop.kafka._client import KafkaClient
from busprop.processing import MessageProcessing, continue_trace
from busprop.publishing import (
    NotEnabled,
    Publishing,
    Route,
    finish_publish,
    publish,
    start_publish_and_values,
)

logger = logging.getLogger("busprop")

F = TypeVar("F", bound=Callable[..., Any])

#: Every supported client, the first also reading records of no known type (by attribute). A
#: client whose classes subclass another's comes before it (confluent-kafka's serializing ones).
CLIENTS: tuple[KafkaClient, ...] = (
    _kafka_python.CLIENT,
    _aiokafka.CLIENT,
    _confluent.SERIALIZING,
    _confluent.CLIENT,
)

SYSTEM = "kafka"
ORIGIN = "auto.queue.busprop.kafka"
#: KafkaIntegration's identifier: the bus whose options (its constructor's) apply here.
BUS = "busprop_kafka"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
KEY = "messaging.kafka.message.key"
CONSUMER_GROUP = "messaging.consumer.group.name"
BATCH_COUNT = "messaging.batch.message_count"
#: Span data naming a record's producer trace on its span in batch mode (sentry-sdk 2.x has no span links).
LINK_TRACE_ID = "busprop.link.trace_id"
LINK_SPAN_ID = "busprop.link.span_id"
LINK_SAMPLED = "busprop.link.sampled"

Headers = list[tuple[str, bytes]]


# --- which client ---------------------------------------------------------------------------------

_TYPES: dict[tuple[str, str], tuple[type, ...]] = {}


def _types_of(client: KafkaClient, kind: str) -> tuple[type, ...]:
    """The client's classes of ``kind`` (``()`` when its library is not installed), looked up once."""
    types = _TYPES.get((client.name, kind))
    if types is None:
        try:
            types = cast("tuple[type, ...]", getattr(client, f"{kind}_types")())
        except ImportError:
            types = ()
        _TYPES[(client.name, kind)] = types
    return types


#: The client of each class met, per kind: the question is asked for every record consumed.
_CLIENT_OF_TYPE: dict[tuple[type, str], KafkaClient | None] = {}
_MAX_TYPES = 256


def _client_of(instance: Any, kind: str) -> KafkaClient | None:
    key = (type(instance), kind)
    try:
        return _CLIENT_OF_TYPE[key]
    except KeyError:
        pass
    found = next((client for client in CLIENTS if isinstance(instance, _types_of(client, kind))), None)
    if len(_CLIENT_OF_TYPE) < _MAX_TYPES:
        _CLIENT_OF_TYPE[key] = found
    return found


def client_of_record(record: Any) -> KafkaClient:
    """The client whose record this is; a record of no known type is read as the first client's."""
    return _client_of(record, "record") or CLIENTS[0]


def is_record(candidate: Any) -> bool:
    return _client_of(candidate, "record") is not None


def is_consumer(candidate: Any) -> bool:
    return _client_of(candidate, "consumer") is not None


# --- untraced calls -------------------------------------------------------------------------------

#: Set while busprop calls a client method it traces itself, so KafkaIntegration's patch of that
#: method (if installed) passes the call through instead of tracing it a second time.
_UNTRACED: contextvars.ContextVar[bool] = contextvars.ContextVar("busprop_kafka_untraced", default=False)


#: ``untraced()``: whether the current call comes from busprop's own wrapper (the patch must not
#: trace it). The variable's own method: every patched call asks.
untraced: Callable[[], bool] = _UNTRACED.get


#: Whether KafkaIntegration's patches are installed. Only then can a call busprop traces itself
#: reach a patch, so only then is it marked (a context variable set and reset, on every send).
#: A patch installed while such a call is under way traces that call a second time, once.
_patches_installed = False


def patches_installed(installed: bool) -> None:
    """KafkaIntegration says whether its patches are installed (see :func:`call_untraced`)."""
    global _patches_installed
    _patches_installed = installed


def call_untraced(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not _patches_installed:
        return function(*args, **kwargs)
    token = _UNTRACED.set(True)
    try:
        return function(*args, **kwargs)
    finally:
        _UNTRACED.reset(token)


async def await_untraced(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not _patches_installed:
        return await function(*args, **kwargs)
    token = _UNTRACED.set(True)
    try:
        return await function(*args, **kwargs)
    finally:
        _UNTRACED.reset(token)


# --- headers --------------------------------------------------------------------------------------


def header_list(headers: Any) -> Headers | None:
    """A new list holding ``headers`` (``None``, a list or a tuple), for busprop to write into.

    The caller's container is never changed. Anything else, or a list whose iteration raises, is
    not copied (``None`` is returned, with a debug record) and the send goes out untouched, so
    the client raises for it exactly as it would alone.
    """
    if headers is None:
        return []
    if isinstance(headers, (list, tuple)):
        try:
            return list(headers)
        except Exception:
            logger.debug("busprop: unreadable Kafka headers, sent untouched", exc_info=True)
            return None
    logger.debug("busprop: Kafka headers of type %s are sent untouched", type(headers).__name__)
    return None


def header_copy(headers: Any) -> Headers | dict[Any, Any] | None:
    """A copy to write the trace into: a list as :func:`header_list`, a new dict for a mapping."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        try:
            return dict(headers)
        except Exception:
            logger.debug("busprop: unreadable Kafka headers, passed on untouched", exc_info=True)
            return None
    return header_list(headers)


#: The value types whose ``len`` is the body size a send's span records.
_SIZED = frozenset((bytes, bytearray, memoryview, str))


# --- producer -------------------------------------------------------------------------------------


#: The position of a parameter that cannot be given positionally (past any call's arguments).
_KEYWORD_ONLY = sys.maxsize


class _Untouched(Exception):
    """A produce call busprop leaves as it is (see :class:`_Send`)."""


class _Send:
    """One traced produce call: its arguments, read and replaced by parameter name in the place
    the caller put them (positionally or by keyword), so the client receives the call as written,
    with only the values busprop replaced (never in the caller's containers: tuples and dicts are
    rebuilt). The caller's headers are replaced by a copy (``carrier``) that the trace is
    written into, for the ``topic`` given.

    Raises :class:`_Untouched` for headers busprop cannot copy, a topic that is no ``str``, or
    arguments the produce method does not take: the call is then sent untouched (no span), and
    the client raises for it exactly as it would alone.
    """

    __slots__ = ("args", "body_size", "carrier", "kwargs", "positions", "topic")

    def __init__(self, client: KafkaClient, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        positions, count = client.produce_positions, len(args)
        if count > len(positions):
            raise _Untouched("arguments the produce method does not take")
        if kwargs:
            for name in kwargs:
                if positions.get(name, count) < count:
                    raise _Untouched("an argument given twice")
        # Read in place (no dict of every argument by name: this is the hot path of every send).
        topic_at, value_at, headers_at = client.read_positions
        topic = args[topic_at] if topic_at < count else kwargs.get("topic")
        value: Any = args[value_at] if value_at < count else kwargs.get("value")
        headers = args[headers_at] if headers_at < count else kwargs.get("headers")
        copy: Headers | dict[Any, Any] | None = []
        if headers is not None:
            copy = header_copy(headers) if client.mapping_headers else header_list(headers)
        if copy is None:
            raise _Untouched("headers busprop cannot copy")
        if type(topic) is not str and not isinstance(topic, str):
            logger.debug("busprop: a Kafka topic of type %s: record sent untouched", type(topic).__name__)
            raise _Untouched("a topic that is no str")
        self.positions, self.args, self.kwargs = positions, args, kwargs
        self.carrier: Headers | dict[Any, Any] = copy
        self.topic: str = topic
        self.body_size = len(value) if type(value) in _SIZED else None
        self.set("headers", copy)

    def get(self, name: str) -> Any:
        """The argument given for parameter ``name`` (positionally or by keyword), else ``None``."""
        position = self.positions.get(name, _KEYWORD_ONLY)
        return self.args[position] if position < len(self.args) else self.kwargs.get(name)

    def set(self, name: str, value: Any) -> None:
        """Give ``value`` for parameter ``name``, where the caller gave it (by keyword if not at all)."""
        position = self.positions.get(name, _KEYWORD_ONLY)
        if position < len(self.args):
            self.args = (*self.args[:position], value, *self.args[position + 1 :])
        else:
            self.kwargs = {**self.kwargs, name: value}


class _Delivery:
    """What a send learns from the broker, reported on its span and, for a failure, to Sentry.

    Created inside the send's ``queue.publish`` span: a failure arrives later (on the client's
    thread or loop) and is captured in the send's isolation scope (its user, tags, breadcrumbs and
    request), linked to the send's span, or, with no span, to the trace the record carries.

    A send keeps this until the broker answers, so it holds as little as that needs: the
    isolation scope (shared by every send of one request), the trace values already computed
    for the headers, and a sampled send's span. Not the current scope, nor the request's
    transaction: during an outage every buffered record holds what it keeps.
    """

    __slots__ = ("describes", "isolation", "span", "values")

    def __init__(self, span: sdk.AnySpan | None) -> None:
        self.span = span
        self.describes = span is not None
        self.isolation: sdk.Scope | None = None
        self.values: Mapping[str, str] | None = None

    def keep_context(self, values: Mapping[str, str] | None) -> None:
        """Remember what a later failure is reported with (skipped when nothing watches the send)."""
        self.isolation, self.values = sdk.current_isolation_scope(), values

    def sent(self, *, body_size: Any = None, partition: Any = None) -> None:
        try:
            if self.span is None:
                return
            if isinstance(body_size, int) and body_size >= 0:
                sdk.set_span_data(self.span, spandata.BODY_SIZE, body_size)
            if isinstance(partition, int) and partition >= 0:
                sdk.set_span_data(self.span, PARTITION, str(partition))
        except Exception:
            logger.debug("busprop: could not describe a sent Kafka record", exc_info=True)

    def delivered(self, topic: Any, partition: Any, offset: Any) -> None:
        try:
            if self.span is not None:
                sdk.set_span_data(self.span, spandata.MESSAGE_ID, f"{topic}/{partition}/{offset}")
        except Exception:
            logger.debug("busprop: could not describe a delivered Kafka record", exc_info=True)

    def failed(self, error: BaseException) -> None:
        span, isolation = self.span, self.isolation
        if isolation is None:
            return
        try:
            with sdk.in_isolation_scope(isolation):  # and a fork of this thread's current scope
                if span is not None:
                    sdk.set_current_span(span)
                    sdk.set_span_status(span, "internal_error")
                else:
                    sdk.continue_sent_trace(self.values)
                sdk.capture_exception(error, mechanism="busprop.kafka.delivery", handled=True)
        except Exception:
            logger.debug("busprop: could not report a Kafka delivery failure", exc_info=True)


#: What every Kafka send shares: header values are bytes, KafkaIntegration's options apply.
ROUTE = Route(SYSTEM, origin=ORIGIN, as_bytes=True, bus=BUS)


def _start(
    client: KafkaClient, send: _Send, patched: bool, produce: Callable[..., Any]
) -> tuple[sdk.AnySpan | NotEnabled | None, _Delivery | None]:
    """Inside the send's ``queue.publish`` span (``None`` when not sampled), with the trace in its
    headers: the delivery watched, or ``None`` when nothing would be reported (no span to
    describe, no callback or future to report the outcome). ``patched``: a call KafkaIntegration's
    patch made, traced only when the current client has KafkaIntegration (else ``NOT_ENABLED``).
    ``produce`` (bound): a call without a callback is watched through its producer's configured one."""
    span, values = start_publish_and_values(
        ROUTE, send.carrier, send.topic, send.body_size, integration=BUS if patched else None
    )
    if isinstance(span, NotEnabled):
        return span, None
    callback = name = None
    for name in client.delivery_callbacks:
        callback = send.get(name)
        if callback is not None:
            break
    if callback is None and _configured_callbacks_seen:
        # The client would call it for this record: busprop gives it, wrapped, as the record's
        # own callback, under the last callback parameter (where the loop left ``name``).
        callback = _configured_callback_of(produce)
    if span is None and callback is None:
        # Nothing to describe and no callback to wrap: at most a failure to report.
        return None, (_failure_record(values) if client.watches_result else None)
    delivery = _Delivery(span)
    if callback is not None and name is not None:
        try:
            send.set(name, client.report_delivery(callback, delivery))
        except Exception:
            logger.debug("busprop: could not watch the delivery of a Kafka record", exc_info=True)
    if callback is not None or client.watches_result:
        # A callback or a future will report the outcome; a span links a failure to its trace.
        delivery.keep_context(values if span is None else None)
    return span, delivery


#: The record of the last send with nothing to describe (see :func:`_failure_record`).
_last_failure_record: _Delivery | None = None


def _failure_record(values: Mapping[str, str] | None) -> _Delivery:
    """The record of a send with no span and no callback, whose future is watched only for a
    failure. A failure is reported with the send's isolation scope and trace values and nothing
    else, so the sends of one scope and trace share one record.

    A record of its own per send was a third of a microsecond of every unsampled aiokafka send.
    The last one is kept (with its isolation scope) until a send of another scope or trace."""
    global _last_failure_record
    isolation, last = sdk.current_isolation_scope(), _last_failure_record
    if last is not None and last.isolation is isolation and last.values is values:
        return last
    record = _Delivery(None)
    record.isolation, record.values = isolation, values
    _last_failure_record = record
    return record


#: Where KafkaIntegration keeps, on a producer it saw constructed, the delivery callback its
#: configuration names (:attr:`KafkaClient.configured_callback`).
_CONFIGURED_CALLBACK = "_busprop_configured_callback"
#: Whether any producer so far was made with a configured callback: until one is, a send without a
#: callback does not look for one (the look costs about 2,000 instructions, 5% of what busprop adds
#: to an unsampled confluent-kafka send).
_configured_callbacks_seen = False


def remember_configured_callback(
    client: KafkaClient, producer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Keep on ``producer``, just constructed with ``(args, kwargs)``, the delivery callback its
    configuration names, if any. Only then is it known: the client does not tell it, and a
    callback busprop gave a record in place of an unknown default would silence that default."""
    if client.configured_callback is None:
        return
    try:
        callback = client.configured_callback(args, kwargs)
        if callable(callback):
            producer.__dict__[_CONFIGURED_CALLBACK] = callback
            global _configured_callbacks_seen
            _configured_callbacks_seen = True
    except Exception:
        logger.debug("busprop: could not read a Kafka producer's delivery callback", exc_info=True)


def _configured_callback_of(produce: Callable[..., Any]) -> Callable[..., Any] | None:
    """The configured delivery callback of the producer ``produce`` is bound to, if one is known."""
    try:
        # A producer made before KafkaIntegration (a C type's instance) has no ``__dict__``.
        attributes = getattr(produce.__self__, "__dict__", None)  # type: ignore[attr-defined]
        found = None if attributes is None else attributes.get(_CONFIGURED_CALLBACK)
    except Exception:  # not bound to a producer, or one with odd attributes: none is known
        return None
    return cast("Callable[..., Any] | None", found)


def _sent(client: KafkaClient, span: sdk.AnySpan | None, delivery: _Delivery | None, result: Any) -> Any:
    """After the produce call returned ``result``: its outcome watched, the span finished."""
    if delivery is not None and client.watches_result:
        try:
            client.watch_result(result, delivery)
        except Exception:
            logger.debug("busprop: could not watch the delivery of a Kafka record", exc_info=True)
    if span is not None:
        finish_publish(span)
    return result


def traced_produce(
    client: KafkaClient,
    produce: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    patched: bool = False,
) -> Any:
    """Call ``produce`` (a bound produce method) in a ``queue.publish`` span, trace in the headers.

    ``patched``: ``produce`` is the client's own method and KafkaIntegration's patch calls it: the
    call is traced only when the current client has KafkaIntegration, and needs no mark against
    being traced a second time (the original calls nothing busprop patches). The span is started
    and finished by :mod:`busprop.publishing`'s functions, with no context manager object per
    record: this is the hot path of every send.
    """
    try:
        send = _Send(client, args, kwargs)
    except _Untouched:
        return produce(*args, **kwargs) if patched else call_untraced(produce, *args, **kwargs)
    span, delivery = _start(client, send, patched, produce)
    if isinstance(span, NotEnabled):
        return produce(*args, **kwargs)
    try:
        if patched:
            result = produce(*send.args, **send.kwargs)
        else:
            result = call_untraced(produce, *send.args, **send.kwargs)
    except BaseException as error:
        finish_publish(span, error)
        raise
    return _sent(client, span, delivery, result)


async def traced_produce_async(
    client: KafkaClient,
    produce: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    patched: bool = False,
) -> Any:
    """:func:`traced_produce` for a produce coroutine function: awaited inside the span (``patched``
    as there: the original coroutine function, awaited without the mark against a second trace)."""
    call = produce if patched else functools.partial(await_untraced, produce)
    try:
        send = _Send(client, args, kwargs)
    except _Untouched:
        return await call(*args, **kwargs)
    span, delivery = _start(client, send, patched, produce)
    if isinstance(span, NotEnabled):
        return await call(*args, **kwargs)
    try:
        result = await call(*send.args, **send.kwargs)
    except BaseException as error:
        finish_publish(span, error)
        raise
    return _sent(client, span, delivery, result)


def traced_send(send: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a ``KafkaProducer.send`` (bound) inside a ``queue.publish`` span, trace in the headers."""
    return traced_produce(_kafka_python.CLIENT, send, args, kwargs)


class TracedProducer:
    """A producer whose produce method carries the current trace; see :func:`traced_producer`."""

    def __init__(self, producer: Any, client: KafkaClient | None = None) -> None:
        self.producer = producer
        self._client = client or _client_of(producer, "producer") or CLIENTS[0]

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.producer, name)
        client = self._client
        if name in client.produce_callers:  # its ``self.<produce_method>(...)`` is then this wrapper's
            return functools.partial(getattr(type(self.producer), name), self)
        if name != client.produce_method:
            return attribute
        if client.produce_is_async:

            async def produce_async(*args: Any, **kwargs: Any) -> Any:
                return await traced_produce_async(client, attribute, args, kwargs)

            self.__dict__[name] = produce_async  # built once: the next lookups find it here
            return produce_async

        def produce(*args: Any, **kwargs: Any) -> Any:
            return traced_produce(client, attribute, args, kwargs)

        self.__dict__[name] = produce
        return produce

    def __enter__(self) -> TracedProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.producer.close()


def traced_producer(producer: Any) -> TracedProducer:
    """Wrap a producer: each send (``KafkaProducer.send``) writes ``sentry-trace`` and ``baggage`` headers.

    The headers you pass (a list or tuple of ``(str, bytes)``) are copied, the trace headers
    replace any earlier copy, and every other header keeps its place. Other attributes (``flush``,
    ``close``, ``metrics`` ...) are the producer's own, except the client's methods that produce
    through its send (aiokafka's ``send_and_wait``): they send through the traced one, once.
    """
    return TracedProducer(producer)


def producer(
    *, topic: FromCall, headers_argument: str = "headers", name: FromCall = None
) -> Callable[[F], F]:
    """Decorate a function that produces a record (sync or async): a ``queue.publish`` span around it.

    The function receives, in its ``headers_argument`` parameter, a new list holding the headers
    the caller passed (none, a list or a tuple) plus ``sentry-trace`` and ``baggage`` as bytes; it
    passes that list to ``send()``. A mapping is copied into a new dict instead; headers of any
    other type reach the function untouched, without the trace. The caller's container is never
    changed. ``topic`` (and ``name``) is a value or a function of the function's arguments.
    Decorating a function without that parameter raises ``TypeError`` (at import, not per call).
    """

    def decorate(func: F) -> F:
        argument = _HeaderArgument(func, headers_argument)

        def enter(args: tuple[Any, ...], kwargs: dict[str, Any], carrier: Any) -> Publishing:
            return publish(
                carrier if carrier is not None else [],  # nothing to write into: a span only
                system=SYSTEM,
                destination=destination_text(resolve(topic, args, kwargs)),
                name=resolve(name, args, kwargs),
                origin=ORIGIN,
                bus=BUS,
                as_bytes=True,
            )

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                args, carrier = argument.substitute(args, kwargs)
                with enter(args, kwargs, carrier):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            args, carrier = argument.substitute(args, kwargs)
            with enter(args, kwargs, carrier):
                return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


class _HeaderArgument:
    """The parameter of a decorated producer function that receives the headers list."""

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.name = name
        self.position: int | None = None
        parameters = list(inspect.signature(func).parameters.values())
        for index, parameter in enumerate(parameters):
            if parameter.name == name:
                if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                    self.position = index
                return
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            raise TypeError(f"busprop.kafka.producer: {func.__qualname__} has no {name!r} parameter")

    def _positional(self, args: tuple[Any, ...]) -> bool:
        return self.position is not None and len(args) > self.position

    def substitute(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], Any]:
        """Put a copy in place of the caller's headers; return the arguments and the copy.

        ``kwargs`` (the call's own dict) is updated in place. The copy is ``None`` when the
        headers could not be copied: the function then gets the caller's object, unwritten.
        """
        if self._positional(args):
            index = cast(int, self.position)
            copied = header_copy(args[index])
            return (args if copied is None else (*args[:index], copied, *args[index + 1 :])), copied
        copied = header_copy(kwargs.get(self.name))
        if copied is not None:
            kwargs[self.name] = copied
        return args, copied


# --- consumer -------------------------------------------------------------------------------------


def record_processing(record: Any, group_id: str | None = None) -> MessageProcessing:
    """The core's processing of one record: its trace, its ``queue.process`` transaction and data."""
    return _processing_of_record(record, group_id, client_of_record(record))


def _processing_of_record(record: Any, group_id: str | None, client: KafkaClient) -> MessageProcessing:
    """:func:`record_processing`, the record's client looked up already (by an iterator, per record)."""
    return continue_trace(
        client.headers(record),
        system=SYSTEM,
        destination=client.topic(record),
        origin=ORIGIN,
        bus=BUS,
        details=lambda: _record_details(client, record, group_id),
    )


def processing_of(record: Any, group_id: str | None = None) -> MessageProcessing | None:
    """:func:`record_processing`, or ``None`` for what is no record (``None``, an error event)."""
    if record is None or client_of_record(record).is_error(record):
        return None
    return record_processing(record, group_id)


def _record_details(client: KafkaClient, record: Any, group_id: str | None) -> dict[str, Any]:
    """A record's message id (``topic/partition/offset``), value size, timestamp and span data."""
    topic, partition, offset = client.topic(record), client.partition(record), client.offset(record)
    size, timestamp = client.value_size(record), client.timestamp_ms(record)
    data: dict[str, Any] = {PARTITION: str(partition), OFFSET: offset}
    if group_id is not None:
        data[CONSUMER_GROUP] = group_id
    key = client.key(record)
    if key is not None and _collects_message_keys():
        data[KEY] = _key_text(key)
    return {
        "message_id": f"{topic}/{partition}/{offset}",
        "body_size": size if isinstance(size, int) and size >= 0 else None,
        "published_at": timestamp / 1000.0 if isinstance(timestamp, int) and timestamp > 0 else None,
        "extra_data": data,
    }


def _collects_message_keys() -> bool:
    """``send_default_pii``, or sentry-sdk 2.75's ``data_collection={"queues": ...}`` that replaces it."""
    options = sdk.client_options()
    collection = options.get("data_collection")
    if isinstance(collection, Mapping) and "queues" in collection:
        return bool(collection["queues"])
    return bool(options.get("send_default_pii"))


def _key_text(key: Any) -> str:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", errors="backslashreplace")
    return str(key)


def group_of(consumer: Any) -> str | None:
    """The consumer's group id, if its client tells it."""
    try:
        group = (_client_of(consumer, "consumer") or CLIENTS[0]).group_id(consumer)
    except Exception:
        return None
    return group if isinstance(group, str) else None


class AsyncConsumer(Protocol):
    """A consumer of an asyncio client (aiokafka's ``AIOKafkaConsumer``), iterated with ``async for``."""

    def __aiter__(self) -> Any: ...

    async def getone(self, *partitions: Any) -> Any: ...


@overload
def traced_consumer(consumer: AsyncConsumer, *, group_id: str | None = None) -> TracedAsyncIterator[Any]: ...


@overload
def traced_consumer(consumer: Any, *, group_id: str | None = None) -> TracedIterator[Any]: ...


def traced_consumer(
    consumer: Any, *, group_id: str | None = None
) -> TracedIterator[Any] | TracedAsyncIterator[Any]:
    """Iterate a consumer: each loop body runs inside its record's continued trace.

    ``for record in traced_consumer(kafka_consumer)`` for a sync client; for an asyncio client
    (aiokafka) the result is an async iterator: ``async for record in traced_consumer(consumer)``
    (and ``async with ... as records``, ``aclose()``), each record's processing belonging to the
    task running the loop.

    A record's transaction ends when the loop asks for the next record, where the loop is left
    (``break``, ``return``, an exception: before the code after the loop), on ``close()``, or, used
    as ``with traced_consumer(c) as records:``, at the block's end when the loop body raised (then
    it is marked failed and the exception reported and re-raised unchanged); see
    :mod:`busprop.iteration`.
    """
    group = group_id if group_id is not None else group_of(consumer)
    client = _client_of(consumer, "consumer") or CLIENTS[0]
    if client.async_records is not None:
        return TracedAsyncIterator(
            _RawAsyncRecords(client.async_records(consumer)), lambda record: record_processing(record, group)
        )
    return _TracedRecords(_RawRecords(client.records(consumer)), group)


class _TracedRecords(TracedIterator[Any]):
    """A :class:`TracedIterator` over records among which an error event (``is_error``) starts nothing."""

    def __init__(self, records: Iterable[Any], group_id: str | None) -> None:
        super().__init__(records, functools.partial(record_processing, group_id=group_id))
        self._group = group_id

    def __next__(self) -> Any:
        current = self._current
        current.finish()
        record = next(self._iterator)
        client = client_of_record(record)  # looked up once for both questions
        if not client.is_error(record):
            current.start(_processing_for(_processing_of_record, record, self._group, client))
        return record


class _RawRecords:
    """A consumer's own iteration, bypassing :class:`KafkaIntegration`'s patch (no double scope)."""

    def __init__(self, records: Iterator[Any]) -> None:
        self._records = records

    def __iter__(self) -> _RawRecords:
        return self

    def __next__(self) -> Any:
        return call_untraced(next, self._records)


class _RawAsyncRecords:
    """:class:`_RawRecords` for an async iterator (``AIOKafkaConsumer``): its patch passes it through."""

    def __init__(self, records: AsyncIterator[Any]) -> None:
        self._records = records

    def __aiter__(self) -> _RawAsyncRecords:
        return self

    async def __anext__(self) -> Any:
        return await await_untraced(self._records.__anext__)


def records_of(batch: Any) -> list[Any]:
    """The records of a ``poll()`` result (``{TopicPartition: [records]}``) or of any iterable."""
    if isinstance(batch, Mapping):
        return [record for records in batch.values() for record in records]
    return list(batch)


def traced_records(batch: Any, *, consumer: Any = None, group_id: str | None = None) -> TracedIterator[Any]:
    """Iterate a ``poll()`` batch with one scope and transaction per record, as :func:`traced_consumer`."""
    group = group_id if group_id is not None else group_of(consumer) if consumer is not None else None
    return _TracedRecords(records_of(batch), group)


@overload
def consumer(func: F, /) -> F: ...


@overload
def consumer(
    *, group_id: str | None = None, record: Callable[..., Any] | None = None
) -> Callable[[F], F]: ...


def consumer(
    func: F | None = None, /, *, group_id: str | None = None, record: Callable[..., Any] | None = None
) -> F | Callable[[F], F]:
    """Decorate a handler that takes a consumed record (sync or async), with or without options.

    ``record`` picks the record from the handler's arguments (default: the first argument that is
    a record of a supported client, else the first argument). The handler runs inside the record's
    trace; its exception is reported, marks the transaction failed and propagates unchanged.
    """

    def decorate(handler: F) -> F:
        def enter(args: tuple[Any, ...], kwargs: dict[str, Any]) -> MessageProcessing:
            found = resolve(record, args, kwargs) if record is not None else _first_record(args)
            try:
                return record_processing(found, group_id)
            except Exception:
                logger.debug("busprop: %r is not a Kafka record, starting a new trace", type(found))
                return continue_trace(system=SYSTEM, destination="unknown", origin=ORIGIN, bus=BUS)

        return traced_call(handler, enter)

    return decorate(func) if func is not None else decorate


def _first_record(args: tuple[Any, ...]) -> Any:
    for argument in args:
        if is_record(argument):
            return argument
    return args[0] if args else None


# --- batch mode -----------------------------------------------------------------------------------


class BatchProcessing:
    """One transaction for a batch, a ``queue.process`` span per record; see :func:`process_batch`.

    An empty batch (a ``poll()`` that timed out) is no work: it gets no scope and no transaction,
    or a consumer polling an idle topic would send one empty transaction per poll.
    """

    def __init__(self, records: list[Any], group_id: str | None, name: str | None) -> None:
        self.records = records
        self._group = group_id
        messages = [record for record in records if not client_of_record(record).is_error(record)]
        self._processing = _batch_processing(messages, group_id, name) if messages else None
        self._transaction: sdk.ProcessingSpan | None = None
        self._span: sdk.AnySpan | None = None

    def __enter__(self) -> BatchProcessing:
        if self._processing is not None:
            self._transaction = self._processing.__enter__()
        return self

    def __iter__(self) -> Iterator[Any]:
        # No ``finally``: a loop body that raises or breaks closes this generator before the
        # ``with`` block's ``__exit__`` runs, and that ``__exit__`` finishes the span with the error.
        for record in self.records:
            self._finish_span()
            self._span = self._start_span(record)
            yield record
        self._finish_span()

    def _start_span(self, record: Any) -> sdk.AnySpan | None:
        transaction = self._transaction
        if transaction is None or not transaction.sampled:
            return None
        try:
            client = client_of_record(record)
            if client.is_error(record):
                return None
            return sdk.start_child_span(
                transaction,
                op=sdk.OP_PROCESS,
                name=client.topic(record),
                origin=ORIGIN,
                data=_record_span_data(client, record, self._group),
            )
        except Exception:
            logger.debug("busprop: could not start a span for a Kafka record", exc_info=True)
            return None

    def _finish_span(self, exc: BaseException | None = None) -> None:
        span, self._span = self._span, None
        if span is not None:
            try:
                sdk.finish_span(span, exc)
            except Exception:
                logger.debug("busprop: could not finish a Kafka record's span", exc_info=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish_span(exc)
        if self._processing is not None:
            self._processing.__exit__(exc_type, exc, tb)


def _batch_processing(records: list[Any], group_id: str | None, name: str | None) -> MessageProcessing:
    """The batch's own processing: a trace of its own, named ``name`` or after its topics."""
    destination = ",".join(sorted({_topic_of(record) for record in records}))
    processing = continue_trace(
        system=SYSTEM,
        destination=destination,
        name=name if isinstance(name, str) and name else f"batch {destination}",
        origin=ORIGIN,
        bus=BUS,
        extra_data={BATCH_COUNT: len(records), CONSUMER_GROUP: group_id},
        sampling_context={"messaging_batch": True},
    )
    processing.one_message = False  # each record gets its own ``queue.process`` span
    return processing


def _topic_of(record: Any) -> str:
    """A record's topic, ``"unknown"`` for anything that is not a record with a ``str`` topic."""
    try:
        topic = client_of_record(record).topic(record)
    except Exception:
        return "unknown"
    return str.__str__(topic) if isinstance(topic, str) else "unknown"


def _record_span_data(client: KafkaClient, record: Any, group_id: str | None) -> dict[str, Any]:
    details = _record_details(client, record, group_id)
    data = spandata.messaging_data(
        system=SYSTEM,
        destination=client.topic(record),
        operation="process",
        message_id=details["message_id"],
        body_size=details["body_size"],
        published_at=details["published_at"],
        extra=details["extra_data"],
    )
    producer_trace = extract(client.headers(record)).sentry_trace
    if producer_trace is not None:
        trace_id, span_id, *sampled = producer_trace.split("-")
        data[LINK_TRACE_ID] = trace_id
        data[LINK_SPAN_ID] = span_id
        if sampled:
            data[LINK_SAMPLED] = sampled == ["1"]
    return data


def process_batch(
    batch: Any, *, consumer: Any = None, group_id: str | None = None, name: str | None = None
) -> BatchProcessing:
    """Batch mode: ``with process_batch(consumer.poll(), consumer=consumer) as records:``.

    One transaction (a trace of its own, sampled by the SDK as a head; named ``name``, default
    ``batch <topics>``) covers the batch; iterating ``records`` runs each loop body inside a
    ``queue.process`` span named after the record's topic, with the record's Queues data and its
    producer's trace ids as span data (``busprop.link.*``), so each record shows once on Sentry's
    Queues page. Records whose
    producer trace is unsampled still get a span when the batch is sampled; an unsampled batch
    costs no span at all. An exception is reported and re-raised unchanged. An empty batch (a
    ``poll()`` that returned nothing), or a ``batch`` that is no ``poll()`` result, creates no
    transaction: an exception in the body then propagates unchanged and unreported.
    """
    group = group_id if group_id is not None else group_of(consumer) if consumer is not None else None
    try:
        records = records_of(batch)
    except Exception:
        logger.debug("busprop: a batch of type %s is no poll() result: no records", type(batch).__name__)
        records = []
    return BatchProcessing(records, group, name)
