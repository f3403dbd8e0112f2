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
from busprop.config import resolved_for, should_propagate
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
    sdk.warn_if_unsupported_sdk()
    resolved = resolved_for(bus)
    if not should_propagate(destination, resolved=resolved):
        if isinstance(destination, str):
            bus = str.__str__(system) if isinstance(system, str) else "a"
            logger.debug(
                "busprop: %s destination %r is outside propagation_targets", bus, str.__str__(destination)
            )
        return False
    if not _is_carrier(carrier) or not isinstance(keys, CarrierKeys):
        logger.debug(
            "busprop: no trace written into a %s with keys of type %s (a mutable mapping or list "
            "with CarrierKeys is needed)",
            type(carrier).__name__,
            type(keys).__name__,
        )
        return False
    try:
        values = sdk.outgoing_values(resolved.config.write_traceparent)
        if not values:
            return False
        write(carrier, values, keys=keys, as_bytes=as_bytes)
        return True
    except Exception:
        logger.debug("busprop: could not write trace headers", exc_info=True)
        return False


def _is_carrier(carrier: Any) -> bool:
    kind = type(carrier)
    if kind is dict or kind is list:  # the common case, without the slower ABC checks
        return True
    if isinstance(carrier, MutableMapping):
        return True
    return isinstance(carrier, MutableSequence) and not isinstance(carrier, bytearray)


class Publishing:
    """Context manager for publishing one message; see :func:`publish`."""

    __slots__ = ("_arguments", "span")

    def __init__(self, carrier: MutableCarrier, arguments: dict[str, Any]) -> None:
        self._arguments = (carrier, arguments)
        #: The ``queue.publish`` span, or ``None`` outside a sampled transaction (or segment).
        self.span: sdk.AnySpan | None = None

    def __enter__(self) -> sdk.AnySpan | None:
        carrier, arguments = self._arguments
        try:
            parent = sdk.sampled_parent()
        except Exception:
            parent = None
            logger.debug("busprop: could not read the current span", exc_info=True)
        if parent is not None:
            self.span = _start_span(parent, arguments)
        inject(
            carrier,
            destination=arguments["destination"],
            system=arguments["system"],
            keys=arguments["keys"],
            as_bytes=arguments["as_bytes"],
            bus=arguments["bus"],
        )
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span, self.span = self.span, None
        if span is not None:
            try:
                sdk.finish_span(span, exc)
            except Exception:
                logger.debug("busprop: could not finish the publish span", exc_info=True)

    async def __aenter__(self) -> sdk.AnySpan | None:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def _start_span(parent: sdk.AnySpan, arguments: dict[str, Any]) -> sdk.AnySpan | None:
    try:
        data = messaging_data(
            system=arguments["system"],
            destination=arguments["destination"],
            operation="publish",
            message_id=arguments["message_id"],
            body_size=arguments["body_size"],
            extra=arguments["extra_data"],
        )
        return sdk.start_child_span(
            parent,
            op=sdk.OP_PUBLISH,
            name=arguments["name"] or arguments["destination"],
            origin=arguments["origin"],
            data=data,
        )
    except Exception:
        logger.debug("busprop: could not start the publish span", exc_info=True)
        return None


def publish(
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
) -> Publishing:
    """Wrap a send (``with`` or ``async with``): a ``queue.publish`` span, and the trace injected.

    The span is a child of the current sampled span (none outside a transaction, where the send
    still carries the trace ids); the headers are written inside it, so the consumer's
    transaction is the span's child. The span ends with status ``ok``; an exception in the body
    marks it failed (``internal_error``; ``error`` in span streaming mode, where the span is a
    streamed span with the same data as attributes) and propagates unchanged.
    """
    arguments = {
        "system": system,
        "destination": destination,
        "message_id": message_id,
        "body_size": body_size,
        "name": name,
        "origin": origin,
        "extra_data": extra_data,
        "keys": keys,
        "as_bytes": as_bytes,
        "bus": bus,
    }
    return Publishing(carrier, arguments)
