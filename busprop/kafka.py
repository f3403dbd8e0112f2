"""Kafka (kafka-python): Sentry traces in record headers, per record or per ``poll()`` batch.

sentry-python has no Kafka integration (its issue 2367), and OpenTelemetry's kafka-python
instrumentation ends the consumer span before the loop body runs and crashes on tuple headers
(REFERENCE section 5). This adapter only knows kafka-python: record headers are a list of
``(str, bytes)`` pairs, the destination is the topic, a record's id is ``topic/partition/offset``,
its timestamp (ms) gives the receive latency, and a record's processing starts when the consumer
returns it and ends when the loop asks for the next one. Everything else is the core's.

- Producer: :func:`traced_producer` wraps a ``KafkaProducer``; :func:`producer` decorates a
  function that produces.
- Consumer: :func:`traced_consumer` for ``for record in ...`` loops, :func:`consumer` for handler
  functions, :func:`traced_records` for a ``poll()`` batch with one trace per record, and
  :func:`process_batch` for one transaction per batch with a child span per record.
- :class:`KafkaIntegration` patches ``KafkaProducer.send`` and consumer iteration.

busprop never commits offsets and never changes a record's key, value or other headers.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from busprop import sdk, spandata
from busprop.carrier import extract
from busprop.decorators import FromCall, destination_text, resolve, traced_call
from busprop.iteration import CurrentProcessing, TracedIterator
from busprop.patching import Patches
from busprop.processing import MessageProcessing, continue_trace
from busprop.publishing import Publishing, publish

if TYPE_CHECKING:
    from sentry_sdk.tracing import NoOpSpan, Span, Transaction

logger = logging.getLogger("busprop")

__all__ = [
    "BatchProcessing",
    "KafkaIntegration",
    "TracedProducer",
    "consumer",
    "process_batch",
    "producer",
    "record_processing",
    "traced_consumer",
    "traced_producer",
    "traced_records",
]

F = TypeVar("F", bound=Callable[..., Any])

SYSTEM = "kafka"
ORIGIN = "auto.queue.busprop.kafka"
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


# --- producer ------------------------------------------------------------------------------------


def header_list(headers: Any) -> Headers | None:
    """A new list holding ``headers`` (``None``, a list or a tuple), for busprop to write into.

    The caller's container is never changed. Anything else, or a list whose iteration raises, is
    not copied (``None`` is returned, with a debug record) and the send goes out untouched, so
    kafka-python raises for it exactly as it would alone.
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


def _header_copy(headers: Any) -> Headers | dict[Any, Any] | None:
    """What a decorated producer function receives instead of the caller's headers: a copy.

    A list for none, a list or a tuple (as :func:`header_list`); a dict for a mapping, which the
    function may turn into pairs itself; ``None`` (nothing copied, nothing written) otherwise.
    """
    if isinstance(headers, Mapping):
        try:
            return dict(headers)
        except Exception:
            logger.debug("busprop: unreadable Kafka headers, passed on untouched", exc_info=True)
            return None
    return header_list(headers)


def _value_size(value: Any) -> int | None:
    if type(value) in (bytes, bytearray, memoryview, str):
        return len(value)
    return None


def traced_send(
    send: Callable[..., Any],
    topic: str,
    value: Any = None,
    key: Any = None,
    headers: Any = None,
    partition: int | None = None,
    timestamp_ms: int | None = None,
) -> Any:
    """Call a ``KafkaProducer.send`` (bound) inside a ``queue.publish`` span, trace in the headers."""
    carrier = header_list(headers)
    if carrier is None or not isinstance(topic, str):
        if carrier is not None:
            logger.debug("busprop: a Kafka topic of type %s: record sent untouched", type(topic).__name__)
        return send(
            topic, value=value, key=key, headers=headers, partition=partition, timestamp_ms=timestamp_ms
        )
    with publish(
        carrier,
        system=SYSTEM,
        destination=topic,
        body_size=_value_size(value),
        origin=ORIGIN,
        as_bytes=True,
    ) as span:
        future = send(
            topic, value=value, key=key, headers=carrier, partition=partition, timestamp_ms=timestamp_ms
        )
        _watch_delivery(future, span)
    return future


def _watch_delivery(future: Any, span: Span | None) -> None:
    """Report a delivery failure to Sentry; describe the record on the span once it is known.

    The broker's acknowledgement gives the record's ``messaging.message.id`` (``topic/partition/
    offset``, the id its consumer reports): it reaches Sentry when it comes before the sending
    transaction ends (``future.get()`` or ``flush()`` inside it); a failure marks the span failed.
    """
    try:
        if span is not None:
            _describe_sent_record(future, span)
            future.add_callback(_delivered_record_describer(span))
        future.add_errback(_delivery_failure_reporter())
    except Exception:
        logger.debug("busprop: could not watch the delivery of a Kafka record", exc_info=True)


def _describe_sent_record(future: Any, span: Span) -> None:
    size = future.args[4]
    if isinstance(size, int) and size >= 0:
        span.set_data(spandata.BODY_SIZE, size)
    # Private: kafka-python exposes a send's partition only once acknowledged (tests/test_seam.py).
    partition = future._produce_future.topic_partition.partition
    if isinstance(partition, int) and partition >= 0:
        span.set_data(PARTITION, str(partition))


def _delivered_record_describer(span: Span) -> Callable[[Any], None]:
    def describe(metadata: Any) -> None:
        try:
            span.set_data(spandata.MESSAGE_ID, f"{metadata.topic}/{metadata.partition}/{metadata.offset}")
        except Exception:
            logger.debug("busprop: could not describe a delivered Kafka record", exc_info=True)

    return describe


def _delivery_failure_reporter() -> Callable[[BaseException], None]:
    """An errback that captures the failure in the scopes and span of the send (on kafka's thread)."""
    scopes = sdk.current_scopes()
    span = sdk.current_span()

    def report(error: BaseException) -> None:
        try:
            with sdk.using_scopes(scopes) as reporting_scope:
                reporting_scope.span = span
                if span is not None and span.op == sdk.OP_PUBLISH:
                    span.set_status("internal_error")
                sdk.capture_exception(error, mechanism="busprop.kafka.delivery", handled=True)
        except Exception:
            logger.debug("busprop: could not report a Kafka delivery failure", exc_info=True)

    return report


class TracedProducer:
    """A ``KafkaProducer`` whose :meth:`send` carries the current trace; see :func:`traced_producer`."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._send = _untraced_send(producer)

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Any:
        """``KafkaProducer.send``, inside a ``queue.publish`` span, with the trace in the headers."""
        send = _untraced_send(self.producer) if _PATCHES.installed else self._send
        return traced_send(send, topic, value, key, headers, partition, timestamp_ms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    def __enter__(self) -> TracedProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.producer.close()


def traced_producer(producer: Any) -> TracedProducer:
    """Wrap a ``KafkaProducer``: each ``send()`` writes ``sentry-trace`` and ``baggage`` headers.

    The headers you pass (a list or tuple of ``(str, bytes)``) are copied, the trace headers
    replace any earlier copy, and every other header keeps its place. Other attributes (``flush``,
    ``close``, ``metrics`` ...) are the producer's own.
    """
    return TracedProducer(producer)


def _untraced_send(producer: Any) -> Callable[..., Any]:
    """The producer's own ``send``, bypassing :class:`KafkaIntegration`'s patch (no double span)."""
    if _PATCHES.installed and isinstance(producer, KafkaProducer):
        return cast(Callable[..., Any], _PATCHES.original(KafkaProducer, "send").__get__(producer))
    return cast(Callable[..., Any], producer.send)


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
            copied = _header_copy(args[index])
            return (args if copied is None else (*args[:index], copied, *args[index + 1 :])), copied
        copied = _header_copy(kwargs.get(self.name))
        if copied is not None:
            kwargs[self.name] = copied
        return args, copied


# --- consumer ------------------------------------------------------------------------------------


def record_processing(record: Any, group_id: str | None = None) -> MessageProcessing:
    """The core's processing of one record: its trace, its ``queue.process`` transaction and data."""
    return continue_trace(
        record.headers,
        system=SYSTEM,
        destination=record.topic,
        origin=ORIGIN,
        details=lambda: _record_details(record, group_id),
    )


def _record_details(record: Any, group_id: str | None) -> dict[str, Any]:
    """A record's message id (``topic/partition/offset``), value size, timestamp and span data."""
    size, timestamp = record.serialized_value_size, record.timestamp
    return {
        "message_id": f"{record.topic}/{record.partition}/{record.offset}",
        "body_size": size if isinstance(size, int) and size >= 0 else None,
        "published_at": timestamp / 1000.0 if isinstance(timestamp, int) and timestamp > 0 else None,
        "extra_data": _record_data(record, group_id),
    }


def _record_data(record: Any, group_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {PARTITION: str(record.partition), OFFSET: record.offset}
    if group_id is not None:
        data[CONSUMER_GROUP] = group_id
    if record.key is not None and _collects_message_keys():
        data[KEY] = _key_text(record.key)
    return data


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


def _group_of(consumer: Any) -> str | None:
    try:
        group = consumer.config.get("group_id")
    except Exception:
        return None
    return group if isinstance(group, str) else None


def traced_consumer(consumer: Any, *, group_id: str | None = None) -> TracedIterator[Any]:
    """Iterate a ``KafkaConsumer``: each loop body runs inside its record's continued trace.

    A record's transaction ends when the loop asks for the next record, where the loop is left
    (``break``, ``return``, an exception: before the code after the loop), on ``close()``, or, used
    as ``with traced_consumer(c) as records:``, at the block's end when the loop body raised (then
    it is marked failed and the exception reported and re-raised unchanged); see
    :mod:`busprop.iteration`.
    """
    group = group_id if group_id is not None else _group_of(consumer)
    return TracedIterator(_RawRecords(consumer), lambda record: record_processing(record, group))


class _RawRecords:
    """A consumer's own iteration, bypassing :class:`KafkaIntegration`'s patch (no double scope)."""

    def __init__(self, consumer: Any) -> None:
        self._next = (
            _PATCHES.original(KafkaConsumer, "__next__").__get__(consumer)
            if _PATCHES.installed and isinstance(consumer, KafkaConsumer)
            else iter(consumer).__next__
        )

    def __iter__(self) -> _RawRecords:
        return self

    def __next__(self) -> Any:
        return self._next()


def records_of(batch: Any) -> list[Any]:
    """The records of a ``poll()`` result (``{TopicPartition: [records]}``) or of any iterable."""
    if isinstance(batch, Mapping):
        return [record for records in batch.values() for record in records]
    return list(batch)


def traced_records(batch: Any, *, consumer: Any = None, group_id: str | None = None) -> TracedIterator[Any]:
    """Iterate a ``poll()`` batch with one scope and transaction per record, as :func:`traced_consumer`."""
    group = group_id if group_id is not None else _group_of(consumer) if consumer is not None else None
    return TracedIterator(records_of(batch), lambda record: record_processing(record, group))


@overload
def consumer(func: F, /) -> F: ...


@overload
def consumer(
    *, group_id: str | None = None, record: Callable[..., Any] | None = None
) -> Callable[[F], F]: ...


def consumer(
    func: F | None = None, /, *, group_id: str | None = None, record: Callable[..., Any] | None = None
) -> F | Callable[[F], F]:
    """Decorate a handler that takes a ``ConsumerRecord`` (sync or async), with or without options.

    ``record`` picks the record from the handler's arguments (default: the first argument that is
    a ``ConsumerRecord``, else the first argument). The handler runs inside the record's trace;
    its exception is reported, marks the transaction failed and propagates unchanged.
    """

    def decorate(handler: F) -> F:
        def enter(args: tuple[Any, ...], kwargs: dict[str, Any]) -> MessageProcessing:
            found = resolve(record, args, kwargs) if record is not None else _first_record(args)
            try:
                return record_processing(found, group_id)
            except Exception:
                logger.debug("busprop: %r is not a Kafka record, starting a new trace", type(found))
                return continue_trace(system=SYSTEM, destination="unknown", origin=ORIGIN)

        return traced_call(handler, enter)

    return decorate(func) if func is not None else decorate


def _first_record(args: tuple[Any, ...]) -> Any:
    for argument in args:
        if isinstance(argument, ConsumerRecord):
            return argument
    return args[0] if args else None


# --- batch mode ----------------------------------------------------------------------------------


class BatchProcessing:
    """One transaction for a batch, a ``queue.process`` span per record; see :func:`process_batch`.

    An empty batch (a ``poll()`` that timed out) is no work: it gets no scope and no transaction,
    or a consumer polling an idle topic would send one empty transaction per poll.
    """

    def __init__(self, records: list[Any], group_id: str | None, name: str | None) -> None:
        self.records = records
        self._group_id = group_id
        self._processing = _batch_processing(records, group_id, name) if records else None
        self._transaction: Transaction | NoOpSpan | None = None
        self._span: Span | None = None

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

    def _start_span(self, record: Any) -> Span | None:
        transaction = self._transaction
        if transaction is None or not transaction.sampled:
            return None
        try:
            return sdk.start_child_span(
                cast("Span", transaction),
                op=sdk.OP_PROCESS,
                name=record.topic,
                origin=ORIGIN,
                data=_record_span_data(record, self._group_id),
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
        extra_data={BATCH_COUNT: len(records), CONSUMER_GROUP: group_id},
        sampling_context={"messaging_batch": True},
    )
    processing.one_message = False  # each record gets its own ``queue.process`` span
    return processing


def _topic_of(record: Any) -> str:
    """A record's topic, ``"unknown"`` for anything that is not a record with a ``str`` topic."""
    try:
        topic = record.topic
    except Exception:
        return "unknown"
    return str.__str__(topic) if isinstance(topic, str) else "unknown"


def _record_span_data(record: Any, group_id: str | None) -> dict[str, Any]:
    details = _record_details(record, group_id)
    data = spandata.messaging_data(
        system=SYSTEM,
        destination=record.topic,
        operation="process",
        message_id=details["message_id"],
        body_size=details["body_size"],
        published_at=details["published_at"],
        extra=details["extra_data"],
    )
    producer_trace = extract(record.headers).sentry_trace
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
    group = group_id if group_id is not None else _group_of(consumer) if consumer is not None else None
    try:
        records = records_of(batch)
    except Exception:
        logger.debug("busprop: a batch of type %s is no poll() result: no records", type(batch).__name__)
        records = []
    return BatchProcessing(records, group, name)


# --- auto-instrumentation ------------------------------------------------------------------------

_CURRENT = "_busprop_processing"


class KafkaIntegration(sdk.Integration):
    """``sentry_sdk.init(integrations=[KafkaIntegration()])`` traces unchanged kafka-python code.

    Patches ``KafkaProducer.send`` (as :func:`traced_producer`) and ``KafkaConsumer`` iteration
    (as :func:`traced_consumer`: a record's transaction ends when the next one is asked for, the
    iteration stops or the consumer is closed), through :mod:`busprop.patching`: installing twice
    changes nothing, :meth:`uninstall` restores the originals, and both may run from any thread
    while other threads use kafka-python.
    """

    identifier = "busprop_kafka"

    @staticmethod
    def setup_once() -> None:
        sdk.require_supported_sdk()
        install()

    @staticmethod
    def uninstall() -> None:
        uninstall()


def _enabled() -> bool:
    return sdk.integration_enabled(KafkaIntegration)


def install() -> None:
    """Patch kafka-python (idempotent, thread-safe); :class:`KafkaIntegration` calls it."""
    _PATCHES.install()


def uninstall() -> None:
    """Restore kafka-python's own methods, so a later ``sentry_sdk.init`` may install again."""
    if _PATCHES.uninstall():
        sdk.forget_integration(KafkaIntegration.identifier)


def _patched_send(
    send: Callable[..., Any], _producer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``KafkaProducer.send`` as :func:`traced_send`; ``send`` is the original, bound to the producer."""
    if not _enabled():
        return send(*args, **kwargs)
    return traced_send(send, *args, **kwargs)


def _patched_next(
    wrapped: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    _finish_current(self)
    record = wrapped(*args, **kwargs)
    if _enabled():
        try:
            _current_of(self).start(record_processing(record, _group_of(self)))
        except Exception:
            logger.debug("busprop: could not trace a Kafka record", exc_info=True)
    return record


def _patched_close(
    wrapped: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    _finish_current(self)
    return wrapped(*args, **kwargs)


def _current_of(consumer: Any) -> CurrentProcessing:
    """The record the consumer's loop body is processing (a consumer is its own iterator)."""
    current = consumer.__dict__.get(_CURRENT)
    if current is None:
        current = consumer.__dict__[_CURRENT] = CurrentProcessing(consumer)
    return cast(CurrentProcessing, current)


def _finish_current(consumer: Any) -> None:
    """End the last record's processing; from another thread, send it (see ``busprop.iteration``)."""
    current = consumer.__dict__.get(_CURRENT)
    if current is not None:
        try:
            current.finish()
        except Exception:
            logger.debug("busprop: could not end a Kafka record's processing", exc_info=True)


_PATCHES = Patches(
    KafkaIntegration.identifier,
    [
        (KafkaProducer, "send", _patched_send),
        (KafkaConsumer, "__next__", _patched_next),
        (KafkaConsumer, "close", _patched_close),
    ],
)
