"""What AMQP means to busprop, whichever client library carries the messages.

aio-pika and pika keep the same AMQP message in different objects, but the facts busprop needs
are the same: the trace lives in the headers table (values of any AMQP type: a usable trace may
come as ``str``, ``bytes`` or a byte array), the destination is ``exchange/routing_key`` (the
default exchange has the empty name, so ``/orders``), retries are counted from ``x-death`` and
the delivery count, a precise publish time travels in a header of busprop's own, and an RPC's
request and reply are tied by ``correlation_id``. The client modules (``_aio_pika``, ``_pika``)
only say where their library keeps each of these; the processing and the publish span are built
here, on :mod:`busprop.processing` and :mod:`busprop.publishing`.
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, TypeAlias

from busprop import sdk
from busprop.carrier import SENTRY_TRACE
from busprop.config import should_propagate
from busprop.processing import MessageProcessing, continue_trace
from busprop.publishing import NotEnabled, Route, finish_publish, start_publish_and_values

logger = logging.getLogger("busprop")

SYSTEM = "rabbitmq"
#: The identifier of :class:`busprop.amqp.AMQPIntegration`: its patches work while it is enabled.
INTEGRATION = "busprop_amqp"
#: Publish time in epoch seconds (a decimal string): the AMQP ``timestamp`` property has whole
#: seconds only, too coarse for a receive latency in milliseconds.
PUBLISHED_AT_HEADER = "busprop-published-at"
ROUTING_KEY = "messaging.rabbitmq.destination.routing_key"
DELIVERY_TAG = "messaging.rabbitmq.message.delivery_tag"
#: The ``correlation_id`` tying an RPC's request to its reply (OpenTelemetry's conversation id).
CONVERSATION_ID = "messaging.message.conversation_id"

#: The message whose processing the current context already runs (one transaction per message,
#: even when a decorated callback is also wrapped by the Integration).
_processing_message: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "busprop_amqp_processing", default=None
)
#: Set while a traced publish runs, so an inner (patched) publish does not trace it twice.
_publishing: contextvars.ContextVar[bool] = contextvars.ContextVar("busprop_amqp_publishing", default=False)


# --- what a message says ----------------------------------------------------------------------


def destination_of(exchange: str | None, routing_key: str | None) -> str:
    """The destination string for ``propagation_targets``: ``exchange/routing_key``.

    A part that is not a string (never what a client hands over) counts as empty: the string is
    built from values that cannot run code of their own.
    """
    if type(exchange) is str and type(routing_key) is str:  # what every client hands over
        return f"{exchange}/{routing_key}"
    return f"{_name(exchange)}/{_name(routing_key)}"


def _name(value: Any) -> str:
    return str.__str__(value) if isinstance(value, str) else ""


def _text(value: Any) -> str | None:
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def retry_count_of(headers: Mapping[str, Any] | None, redelivered: Any) -> int:
    """How many times a message was delivered before: dead-letterings plus redeliveries.

    ``x-death`` (one entry per queue and reason, each with a ``count``) counts the times a
    dead-letter exchange brought it back; ``x-delivery-count`` (quorum queues) counts the
    redeliveries, and the ``redelivered`` flag says there was at least one.
    """
    headers = headers if isinstance(headers, Mapping) else {}
    deaths = headers.get("x-death")
    dead_letterings = (
        sum(_count(entry.get("count")) for entry in deaths if isinstance(entry, Mapping))
        if isinstance(deaths, list)
        else 0
    )
    redeliveries = max(_count(headers.get("x-delivery-count")), 1 if redelivered is True else 0)
    return dead_letterings + redeliveries


def published_at_of(headers: Mapping[str, Any] | None, timestamp: Any) -> float | None:
    """The publish time in epoch seconds: busprop's precise header, else the ``timestamp`` property.

    ``timestamp`` is what the client gives: a ``datetime`` (aio-pika) or whole epoch seconds (pika).
    """
    value = headers.get(PUBLISHED_AT_HEADER) if isinstance(headers, Mapping) else None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", errors="replace")
    if isinstance(value, str) and len(value) < 32:
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    try:
        if isinstance(timestamp, datetime):
            return timestamp.timestamp()
        if isinstance(timestamp, int) and not isinstance(timestamp, bool) and timestamp > 0:
            return float(timestamp)
    except (OverflowError, ValueError, OSError):
        pass
    return None


def outgoing_headers(headers: Mapping[str, Any] | None, published_at: float | None) -> dict[str, Any]:
    """A new headers table for a publish: the caller's headers, plus the publish time."""
    table = dict(headers) if isinstance(headers, Mapping) else {}
    if published_at is not None:
        table[PUBLISHED_AT_HEADER] = f"{published_at:.6f}"
    return table


class Delivery(NamedTuple):
    """What a consumer's span data says about one delivered message (read only when sampled).

    A named tuple, not a frozen dataclass: one is built for every sampled message, and a frozen
    dataclass sets each field through ``object.__setattr__`` (1.4 µs against 0.26 µs)."""

    message_id: Any
    body: Any
    routing_key: Any
    delivery_tag: Any
    retry_count: int
    published_at: float | None
    correlation_id: Any


def _details(delivery: Delivery) -> dict[str, Any]:
    body = delivery.body
    return {
        "message_id": _text(delivery.message_id),
        "body_size": len(body) if isinstance(body, (bytes, bytearray, memoryview)) else None,
        "retry_count": delivery.retry_count,
        "published_at": delivery.published_at,
        "extra_data": {
            ROUTING_KEY: _text(delivery.routing_key),
            DELIVERY_TAG: delivery.delivery_tag if _count(delivery.delivery_tag) else None,
            CONVERSATION_ID: _text(delivery.correlation_id),
        },
    }


# --- consuming --------------------------------------------------------------------------------


def message_processing(
    headers: Any,
    exchange: Any,
    routing_key: Any,
    *,
    origin: str,
    delivery: Callable[[], Delivery],
    name: str | None = None,
) -> MessageProcessing:
    """The core's processing of one received message (``with``/``async with``).

    ``delivery`` is called only when a transaction is started (never on the unsampled path).
    """
    return continue_trace(
        headers,
        system=SYSTEM,
        destination=destination_of(exchange, routing_key),
        name=name,
        origin=origin,
        bus=INTEGRATION,
        details=lambda: _details(delivery()),
    )


def fresh_trace(origin: str, name: str | None = None) -> MessageProcessing:
    """The processing of a message whose details cannot be read: a fresh trace."""
    return continue_trace(system=SYSTEM, destination="unknown", name=name, origin=origin, bus=INTEGRATION)


class ProcessingOnce:
    """Process ``message`` inside ``start()``'s processing, unless this context already does.

    A callback decorated with ``@busprop.amqp.consumer`` and also wrapped by the Integration is
    one transaction per message, not two. A ``start`` that raises gives a fresh trace. A class
    rather than a generator-based context manager: it is entered for every message.
    """

    __slots__ = ("_message", "_origin", "_processing", "_start", "_token")

    def __init__(self, message: object, start: Callable[[], MessageProcessing], origin: str) -> None:
        self._message, self._start, self._origin = message, start, origin
        self._processing: MessageProcessing | None = None
        self._token: contextvars.Token[object | None] | None = None

    def __enter__(self) -> None:
        message = self._message
        if message is None or _processing_message.get() is message:
            return
        self._token = token = _processing_message.set(message)
        try:
            try:
                processing = self._start()
            except Exception:
                logger.debug("busprop: could not read the AMQP message's details", exc_info=True)
                processing = fresh_trace(self._origin)
            processing.__enter__()
        except BaseException:
            self._token = None
            _processing_message.reset(token)
            raise
        self._processing = processing

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        processing, self._processing = self._processing, None
        token, self._token = self._token, None
        if token is None:
            return
        try:
            if processing is not None:
                processing.__exit__(exc_type, exc, traceback)
        finally:
            _processing_message.reset(token)


# --- publishing -------------------------------------------------------------------------------


def already_publishing() -> bool:
    """Whether a traced publish runs in this context (an inner publish is then sent as it is)."""
    return _publishing.get()


#: What :func:`start_publish_span` started: the span (``None`` when not sampled), the guard's
#: token, and the publish time written into the message (``None`` when none was).
StartedPublish: TypeAlias = "tuple[sdk.AnySpan | None, contextvars.Token[bool], float | None]"


def start_publish_span(
    route: Route,
    headers: dict[str, Any] | None,
    destination: str,
    routing_key: Any,
    *,
    message_id: Any,
    body: Any,
    correlation_id: Any,
    integration: bool = False,
) -> StartedPublish | None:
    """Start the ``queue.publish`` span of one message to ``destination`` (:func:`destination_of`),
    under a sampled parent, and write the trace into ``headers`` (if given), with the publish time
    unless the trace it carries is unsampled (no consumer will measure a latency). End it with
    :func:`finish_publish_span`; until then a publish nested in it (a patched inner method) is
    not traced. Two functions around the send, as on Kafka: no object per message. Never raises.

    ``integration``: a publish AMQPIntegration's patch made, traced only when the current client
    has AMQPIntegration (asked in the lookup of the client the publish makes anyway); ``None``
    when it has not: nothing was started or written, the message goes out as it is.
    """
    body_size = len(body) if isinstance(body, (bytes, bytearray, memoryview)) else None
    details = (
        _text(message_id),
        None,
        {ROUTING_KEY: _text(routing_key), CONVERSATION_ID: _text(correlation_id)},
    )
    token = _publishing.set(True)
    carrier = headers if headers is not None else {}
    span, values = start_publish_and_values(
        route, carrier, destination, body_size, details, integration=INTEGRATION if integration else None
    )
    if isinstance(span, NotEnabled):
        _publishing.reset(token)
        return None
    published_at = None
    if headers is not None and (span is not None or not _carries_unsampled(values)):
        published_at = time.time()
        headers[PUBLISHED_AT_HEADER] = f"{published_at:.6f}"
    return span, token, published_at


def _carries_unsampled(values: Mapping[str, str] | None) -> bool:
    """Whether the trace ``values`` written into a message say the head decided against sampling
    (its ``sentry-trace`` flag is ``0``; a trace without a flag is still undecided)."""
    return values is not None and values.get(SENTRY_TRACE, "").endswith("-0")


def finish_publish_span(started: StartedPublish, error: BaseException | None = None) -> None:
    """End what :func:`start_publish_span` started: ``ok``, or failed with ``error``."""
    span, token, _published_at = started
    _publishing.reset(token)
    finish_publish(span, error)


def propagates_to(destination: str) -> bool:
    """Whether the trace is written into messages for ``destination`` (:func:`destination_of`)."""
    return should_propagate(destination, INTEGRATION)


def integration_enabled() -> bool:
    """Whether the active client was initialised with :class:`busprop.amqp.AMQPIntegration`."""
    return sdk.integration_enabled(INTEGRATION)
