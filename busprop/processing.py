"""The consumer side: processing one message inside the trace it carries.

This is the lifecycle every sentry-python queue integration writes its own copy of (isolation
scope, continue trace, transaction, status, finish). Here it exists once and every adapter calls
it. It is a plain object with ``__enter__``/``__exit__`` (and the async pair) so adapters whose
processing does not fit one ``with`` block, such as a ``for`` loop over a consumer, can enter it
when a message arrives and exit it when the next one is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

from busprop import sdk
from busprop.carrier import HEADER_KEYS, NO_TRACE, CarrierKeys, IncomingTrace, extract
from busprop.config import get_config
from busprop.spandata import messaging_data

logger = logging.getLogger("busprop")

DEFAULT_ORIGIN = "auto.queue.busprop"


class MessageProcessing:
    """Context manager for processing one message; see :func:`continue_trace`."""

    __slots__ = ("_arguments", "_kind", "_scope_manager", "one_message", "span", "trace", "transaction")

    def __init__(self, carriers: tuple[Any, ...], keys: CarrierKeys, arguments: dict[str, Any]) -> None:
        self._arguments = (carriers, keys, arguments)
        self._scope_manager: AbstractContextManager[sdk.Scope] | None = None
        self._kind = sdk.NO_TRANSACTION
        #: The transaction the body runs in (in span streaming mode: its segment span): ``None``
        #: with tracing disabled; never sampled for an unsampled head, so that what sentry-sdk
        #: propagates inside it carries the head's "no".
        self.transaction: sdk.ProcessingSpan | None = None
        #: The message's ``queue.process`` span, inside a sampled transaction (else ``None``).
        self.span: sdk.AnySpan | None = None
        #: The validated trace the message carried (:data:`~busprop.carrier.NO_TRACE` if none).
        self.trace: IncomingTrace = NO_TRACE
        #: Whether the body processes one message, which then gets its ``queue.process`` span.
        #: A batch's processing sets it to ``False`` and gives each of its messages a span.
        self.one_message = True

    def __enter__(self) -> sdk.ProcessingSpan | None:
        if sdk.sdk_check_pending:
            sdk.warn_if_unsupported_sdk()
        carriers, keys, arguments = self._arguments
        try:
            self.trace = extract(*carriers, keys=keys)
        except Exception:  # a carrier whose iteration raises
            logger.debug("busprop: unreadable trace headers, starting a new trace", exc_info=True)
        if self.trace is NO_TRACE and any(carrier is not None for carrier in carriers):
            system = arguments["system"]
            logger.debug(
                "busprop: no usable trace in %s message, starting a new trace",
                str.__str__(system) if isinstance(system, str) else type(system).__name__,
            )
        try:
            self._scope_manager = sdk.isolation_scope()
            scope = self._scope_manager.__enter__()
        except Exception:
            self._scope_manager = None
            logger.debug("busprop: could not open an isolation scope", exc_info=True)
            return None
        try:
            name = arguments["name"] or arguments["destination"]
            kind, transaction = sdk.continue_message(scope, self.trace, name=name, origin=arguments["origin"])
            if kind == sdk.UNSAMPLED_TRANSACTION:
                self.transaction, self._kind = transaction, kind
            elif kind == sdk.SAMPLED_TRANSACTION:
                self._start(scope, arguments)
        except Exception:
            logger.debug("busprop: could not continue the trace", exc_info=True)
        return self.transaction

    def _start(self, scope: sdk.Scope, arguments: dict[str, Any]) -> None:
        data, sampling_context = _describe(arguments)
        name, origin = arguments["name"] or arguments["destination"], arguments["origin"]
        # One message's data goes on its ``queue.process`` span only, where the Queues view reads
        # it: serialising it twice was most of a sampled message's cost above the plain recipe.
        self.transaction = transaction = sdk.start_process_transaction(
            scope,
            name=name,
            origin=origin,
            data={} if self.one_message else data,
            sampling_context=sampling_context,
        )
        if self.one_message and transaction.sampled:
            self.span = sdk.start_child_span(
                transaction,
                op=sdk.OP_PROCESS,
                name=arguments["destination"],
                origin=origin,
                data=data,
            )

    def set_status(self, status: str) -> None:
        """Set Sentry's ``status`` on the message's span and transaction (before the end).

        In span streaming mode a status other than ``ok`` is ``error``, the only other one there.
        """
        for span in (self.span, self.transaction):
            if span is not None:
                sdk.set_span_status(span, status)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span, self.span = self.span, None
        transaction, self.transaction = self.transaction, None
        kind, self._kind = self._kind, sdk.NO_TRANSACTION
        try:
            if (
                exc is not None
                and isinstance(exc, Exception)
                and get_config(self._arguments[2]["bus"]).capture_exceptions
            ):
                sdk.capture_exception(exc, mechanism=mechanism_of(self._arguments[2]["origin"]))
        except Exception:
            logger.debug("busprop: could not report the exception", exc_info=True)
        try:
            if span is not None:
                sdk.finish_span(span, exc)
        except Exception:
            logger.debug("busprop: could not finish the queue.process span", exc_info=True)
        try:
            if kind == sdk.UNSAMPLED_TRANSACTION:
                sdk.drop_unsampled_transaction(transaction)  # the scope's end takes it away
            elif transaction is not None:
                sdk.finish_span(transaction, exc)
        except Exception:
            logger.debug("busprop: could not finish the transaction", exc_info=True)
        finally:
            manager, self._scope_manager = self._scope_manager, None
            if manager is not None:
                try:
                    manager.__exit__(None, None, None)
                except Exception:
                    logger.debug("busprop: could not close the isolation scope", exc_info=True)

    async def __aenter__(self) -> sdk.ProcessingSpan | None:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def mechanism_of(origin: str) -> str:
    """The exception mechanism for a span origin: ``auto.queue.busprop.kafka`` -> ``busprop.kafka``.

    busprop's mechanisms are its own, never the names sentry-sdk's integrations use.
    """
    return origin[len("auto.queue.") :] if origin.startswith("auto.queue.busprop") else "busprop"


def _describe(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Queues span data and the ``traces_sampler`` context of a message that may be sampled."""
    system, destination = arguments["system"], arguments["destination"]
    details = arguments["details"]
    if details is not None:
        try:
            arguments = {**arguments, **details()}
        except Exception:
            logger.debug("busprop: could not read the %s message's details", system, exc_info=True)
    data = messaging_data(
        system=system,
        destination=destination,
        operation="process",
        message_id=arguments["message_id"],
        body_size=arguments["body_size"],
        retry_count=arguments["retry_count"],
        published_at=arguments["published_at"],
        extra=arguments["extra_data"],
    )
    sampling_context = {
        "messaging": {"system": system, "destination": destination, "operation": "process"},
        **(arguments["sampling_context"] or {}),
    }
    return data, sampling_context


@contextmanager
def propagation_scope(*carriers: Any, keys: CarrierKeys = HEADER_KEYS) -> Iterator[IncomingTrace]:
    """An isolation scope that continues the trace ``carriers`` hold, without a transaction.

    For work that is not one message but spans many, such as a WebSocket connection continued
    from its handshake: errors, messages sent and sentry-sdk's own HTTP calls inside it carry that
    trace and the head's decision, each message's own processing (:func:`continue_trace`) nests
    inside it, and nothing leaks out of it. Nothing is sent to Sentry for the scope itself.
    """
    trace = NO_TRACE
    try:
        trace = extract(*carriers, keys=keys)
    except Exception:
        logger.debug("busprop: unreadable trace headers, starting a new trace", exc_info=True)
    with sdk.isolation_scope() as scope:
        try:
            sdk.continue_propagation(scope, trace)
            sdk.hold_propagation(scope)
        except Exception:
            logger.debug("busprop: could not continue the trace", exc_info=True)
        yield trace


def continue_trace(
    *carriers: Any,
    system: str,
    destination: str,
    message_id: str | None = None,
    body_size: int | None = None,
    retry_count: int | None = None,
    published_at: float | None = None,
    name: str | None = None,
    origin: str = DEFAULT_ORIGIN,
    extra_data: Mapping[str, Any] | None = None,
    sampling_context: Mapping[str, Any] | None = None,
    keys: CarrierKeys = HEADER_KEYS,
    details: Callable[[], Mapping[str, Any]] | None = None,
    bus: str | None = None,
) -> MessageProcessing:
    """Process a message inside the trace its headers carry: ``with`` or ``async with``.

    Opens an isolation scope (nothing leaks into the next message), continues the trace found in
    ``carriers`` (searched in order; none usable starts a new trace) and runs the body inside a
    transaction named ``name`` (default: ``destination``) and, when it is sampled, its
    ``queue.process`` span named ``destination``, which carries Sentry's Queues data (the transaction
    does not repeat it), both with status ``ok``.
    An exception in the body is reported (option ``capture_exceptions``), marks both failed and
    propagates unchanged. ``traces_sampler`` receives ``sampling_context["messaging"]`` with
    ``system``, ``destination`` and ``operation``. For an unsampled head the transaction is built
    unsampled, so that what sentry-sdk propagates in the body (its HTTP integrations,
    ``get_traceparent()``) carries the head's ``-0``; with tracing disabled there is none.

    In sentry-sdk's span streaming mode (``trace_lifecycle="stream"``) the transaction is a segment
    span in the message's trace and span data are attributes; ``async with``/``with ... as``
    gives that segment, and a failure's status is ``error``. An outer trace continued on the
    current scope (``sentry_sdk.traces.continue_trace``) never shadows the message's.

    ``details`` is for facts that cost something to read (an id to format, a size, a time, more
    span data): it is called only when a transaction is started, never on the unsampled path, and
    the keys it returns (``message_id``, ``body_size``, ``retry_count``, ``published_at``,
    ``extra_data``) replace the keyword arguments of the same names. ``bus`` (an Integration's
    identifier) applies that Integration's ``capture_exceptions``, when the active client has it.
    """
    arguments = {
        "system": system,
        "destination": destination,
        "message_id": message_id,
        "body_size": body_size,
        "retry_count": retry_count,
        "published_at": published_at,
        "name": name,
        "origin": origin,
        "extra_data": extra_data,
        "sampling_context": sampling_context,
        "details": details,
        "bus": bus,
    }
    return MessageProcessing(carriers, keys, arguments)
