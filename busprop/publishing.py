"""The producer side: writing the current trace into a message, inside a ``queue.publish`` span.

:func:`inject` is the whole of propagation: it asks the SDK for the current trace (via
:mod:`busprop.sdk`) and writes it with :mod:`busprop.carrier`, for destinations inside the
propagation targets. :func:`publish` adds the span Sentry's Queues view reads around a send.
Neither ever raises into the caller: a failure to trace is logged at debug level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, MutableSequence
from types import TracebackType
from typing import Any

from busprop import sdk
from busprop.carrier import HEADER_KEYS, CarrierKeys, MutableCarrier, write
from busprop.config import Resolved, resolved_for, should_propagate
from busprop.processing import DEFAULT_ORIGIN
from busprop.spandata import messaging_data

logger = logging.getLogger("busprop")


def inject(
    carrier: MutableCarrier,
    *,
    destination: str,
    system: str | None = None,
    keys: CarrierKeys = HEADER_KEYS,
    as_bytes: bool = False,
    bus: str | None = None,
) -> bool:
    """Write the current trace's ``sentry-trace`` and ``baggage`` into ``carrier``.

    Uses the active span, or the scope's propagation context when there is none, so trace ids
    travel with tracing disabled too. Writes nothing, and returns ``False``, when ``destination``
    is outside the propagation targets, or is not a ``str``, or ``carrier`` is not a mutable
    mapping or list (each logged at debug level: a caller's mistake never raises into its send).
    Returns ``True`` when the trace was written; the carrier then holds each trace header once,
    and no stale one (see :func:`busprop.carrier.write`). ``as_bytes`` writes UTF-8 bytes (Kafka
    header values). ``bus`` (an Integration's identifier) applies that Integration's options, when
    the active client has it, over :func:`busprop.configure`'s.
    """
    resolved = _writable(carrier, destination, system, keys, bus)
    if resolved is None:
        return False
    try:
        return _write(carrier, sdk.outgoing_values(resolved.config.write_traceparent), keys, as_bytes)
    except Exception:
        logger.debug("busprop: could not write trace headers", exc_info=True)
        return False


def _writable(
    carrier: Any, destination: Any, system: str | None, keys: Any, bus: str | None
) -> Resolved | None:
    """The options in force when the trace may be written into ``carrier`` for ``destination``,
    else ``None`` (with a debug record saying why). Asked once per send: the common case (a
    ``str`` destination, a ``dict`` or ``list`` carrier) is decided without further calls."""
    if sdk.sdk_check_pending:
        sdk.warn_if_unsupported_sdk()
    resolved = resolved_for(bus)
    if type(destination) is str:
        allowed = resolved.propagate_all or resolved.allows(destination)
    else:
        allowed = should_propagate(destination, resolved=resolved)
    if not allowed:
        if isinstance(destination, str):
            bus = str.__str__(system) if isinstance(system, str) else "a"
            logger.debug(
                "busprop: %s destination %r is outside propagation_targets", bus, str.__str__(destination)
            )
        return None
    kind = type(carrier)
    if (kind is dict or kind is list or _is_carrier(carrier)) and isinstance(keys, CarrierKeys):
        return resolved
    logger.debug(
        "busprop: no trace written into a %s with keys of type %s (a mutable mapping or list "
        "with CarrierKeys is needed)",
        type(carrier).__name__,
        type(keys).__name__,
    )
    return None


def _write(
    carrier: MutableCarrier, values: Mapping[str, str] | None, keys: CarrierKeys, as_bytes: bool
) -> bool:
    if not values:
        return False
    write(carrier, values, keys=keys, as_bytes=as_bytes)
    return True


def _is_carrier(carrier: Any) -> bool:
    """Whether the trace can be written into ``carrier``: a mutable mapping, or a mutable sequence
    (of header pairs) that is no ``bytearray``. Its caller checks ``dict`` and ``list`` first."""
    if isinstance(carrier, MutableMapping):
        return True
    return isinstance(carrier, MutableSequence) and not isinstance(carrier, bytearray)


class Route:
    """What is the same for every send of one adapter: its messaging system, the span's origin,
    the carrier's header names, whether values are bytes, and the bus whose options apply.

    An adapter builds its route once; :func:`start_publish` then takes only what changes per
    message, so the hot path passes no dozen keywords per send.
    """

    __slots__ = ("as_bytes", "bus", "keys", "origin", "system")

    def __init__(
        self,
        system: str,
        *,
        origin: str = DEFAULT_ORIGIN,
        keys: CarrierKeys = HEADER_KEYS,
        as_bytes: bool = False,
        bus: str | None = None,
    ) -> None:
        self.system, self.origin, self.keys, self.as_bytes, self.bus = system, origin, keys, as_bytes, bus


class NotEnabled:
    """What :func:`start_publish` returns when asked to trace only for an Integration that the
    current client has not set up: nothing was started or written, the send goes out as it is."""

    __slots__ = ()


NOT_ENABLED = NotEnabled()


def start_publish(
    route: Route,
    carrier: MutableCarrier,
    destination: str,
    body_size: int | None = None,
    message_id: str | None = None,
    name: str | None = None,
    extra_data: Mapping[str, Any] | None = None,
    *,
    integration: str | None = None,
) -> sdk.AnySpan | NotEnabled | None:
    """Start a send's ``queue.publish`` span when there is a sampled parent, then write the trace
    (the span's) into ``carrier``; the span, or ``None``. End it with :func:`finish_publish`.

    :class:`Publishing` is this as a context manager; an adapter on a hot path calls the two
    functions around its send instead, with no object per message. ``integration`` (an
    Integration's identifier, for a patched send): when the current client has not set it up,
    nothing is done and :data:`NOT_ENABLED` is returned, at no extra lookup of the client. Never
    raises.
    """
    details = (message_id, name, extra_data)
    span, _values = start_publish_and_values(
        route, carrier, destination, body_size, details, integration=integration
    )
    return span


#: ``(message_id, name, extra_data)`` of a span given none of them.
_NO_DETAILS: tuple[None, None, None] = (None, None, None)


def start_publish_and_values(
    route: Route,
    carrier: MutableCarrier,
    destination: str,
    body_size: int | None = None,
    details: tuple[str | None, str | None, Mapping[str, Any] | None] = _NO_DETAILS,
    *,
    integration: str | None = None,
) -> tuple[sdk.AnySpan | NotEnabled | None, Mapping[str, str] | None]:
    """:func:`start_publish` (``details``: its ``message_id``, ``name`` and ``extra_data``), and
    the trace values of the send (``sentry-trace``, ``baggage``): what a failure reported later
    needs to be linked to the send's trace when it has no span, kept instead of the send's scopes
    and transaction (``None`` when there is no trace, or for :data:`NOT_ENABLED`). They are the
    values written into ``carrier``, or that would have been (a destination outside the
    propagation targets gets none). Never raises."""
    resolved = _writable(carrier, destination, route.system, route.keys, route.bus)
    with_traceparent = resolved is not None and resolved.config.write_traceparent
    try:
        found = sdk.sampled_parent_or_values(with_traceparent, integration)
        if found is None:
            return NOT_ENABLED, None
        parent, values = found
    except Exception:
        parent = values = None
        logger.debug("busprop: could not read the current span", exc_info=True)
    span = None
    if parent is not None:
        span = _start_span(parent, route, destination, body_size, *details)
    if resolved is not None:
        try:
            if values is None:  # under a sampled parent: the values of the span just started
                values = sdk.outgoing_values(with_traceparent)
            if values:
                write(carrier, values, keys=route.keys, as_bytes=route.as_bytes)
        except Exception:
            logger.debug("busprop: could not write trace headers", exc_info=True)
    return span, values


def finish_publish(span: sdk.AnySpan | None, error: BaseException | None = None) -> None:
    """End what :func:`start_publish` started: ``ok``, or failed with ``error``. Never raises."""
    if span is not None:
        try:
            sdk.finish_span(span, error)
        except Exception:
            logger.debug("busprop: could not finish the publish span", exc_info=True)


class Publishing:
    """:func:`publish`: wrap a send (``with`` or ``async with``) in a ``queue.publish`` span, and
    write the trace into its message.

    The span is a child of the current sampled span (none outside a transaction, where the send
    still carries the trace ids); the headers are written inside it, so the consumer's
    transaction is the span's child. The span ends with status ``ok``; an exception in the body
    marks it failed (``internal_error``; ``error`` in span streaming mode, where the span is a
    streamed span with the same data as attributes) and propagates unchanged.
    """

    __slots__ = ("body_size", "carrier", "destination", "extra_data", "message_id", "name", "route", "span")

    def __init__(
        self,
        carrier: MutableCarrier,
        *,
        system: str,
        destination: str,
        message_id: str | None = None,
        body_size: int | None = None,
        name: str | None = None,
        origin: str = DEFAULT_ORIGIN,
        extra_data: Mapping[str, Any] | None = None,
        keys: CarrierKeys = HEADER_KEYS,
        as_bytes: bool = False,
        bus: str | None = None,
    ) -> None:
        self.route = Route(system, origin=origin, keys=keys, as_bytes=as_bytes, bus=bus)
        self.carrier, self.destination, self.message_id = carrier, destination, message_id
        self.body_size, self.name, self.extra_data = body_size, name, extra_data
        #: The ``queue.publish`` span, or ``None`` outside a sampled transaction (or segment).
        self.span: sdk.AnySpan | None = None

    @property
    def system(self) -> str:
        return self.route.system

    def __enter__(self) -> sdk.AnySpan | None:
        """Start the span when there is a sampled parent, then write the trace (the span's)."""
        span = start_publish(
            self.route,
            self.carrier,
            self.destination,
            self.body_size,
            self.message_id,
            self.name,
            self.extra_data,
        )
        self.span = None if isinstance(span, NotEnabled) else span
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span, self.span = self.span, None
        finish_publish(span, exc)

    async def __aenter__(self) -> sdk.AnySpan | None:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def _start_span(
    parent: sdk.AnySpan,
    route: Route,
    destination: str,
    body_size: int | None,
    message_id: str | None,
    name: str | None,
    extra_data: Mapping[str, Any] | None,
) -> sdk.AnySpan | None:
    try:
        data = messaging_data(
            system=route.system,
            destination=destination,
            operation="publish",
            message_id=message_id,
            body_size=body_size,
            extra=extra_data,
        )
        return sdk.start_child_span(
            parent, op=sdk.OP_PUBLISH, name=name or destination, origin=route.origin, data=data
        )
    except Exception:
        logger.debug("busprop: could not start the publish span", exc_info=True)
        return None


#: ``with publish(carrier, system=..., destination=...) as span:`` (or ``async with``): :class:`Publishing`.
publish = Publishing
