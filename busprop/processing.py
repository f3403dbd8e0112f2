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

import sentry_sdk
from sentry_sdk.tracing import NoOpSpan, Transaction

from busprop import sdk
from busprop.carrier import HEADER_KEYS, NO_TRACE, CarrierKeys, IncomingTrace, extract
from busprop.config import get_config
from busprop.spandata import messaging_data

logger = logging.getLogger("busprop")

DEFAULT_ORIGIN = "auto.queue.busprop"


class MessageProcessing:
    """Context manager for processing one message; see :func:`continue_trace`."""

    __slots__ = ("_arguments", "_scope_manager", "trace", "transaction")

    def __init__(self, carriers: tuple[Any, ...], keys: CarrierKeys, arguments: dict[str, Any]) -> None:
        self._arguments = (carriers, keys, arguments)
        self._scope_manager: AbstractContextManager[sentry_sdk.Scope] | None = None
        #: The ``queue.process`` transaction, or ``None`` when none would reach Sentry.
        self.transaction: Transaction | NoOpSpan | None = None
        #: The validated trace the message carried (:data:`~busprop.carrier.NO_TRACE` if none).
        self.trace: IncomingTrace = NO_TRACE

    def __enter__(self) -> Transaction | NoOpSpan | None:
        carriers, keys, arguments = self._arguments
        try:
            self.trace = extract(*carriers, keys=keys)
        except Exception:  # a carrier whose iteration raises
            logger.debug("busprop: unreadable trace headers, starting a new trace", exc_info=True)
        if self.trace is NO_TRACE and any(carrier is not None for carrier in carriers):
            logger.debug("busprop: no usable trace in %s message, starting a new trace", arguments["system"])
        try:
            self._scope_manager = sentry_sdk.isolation_scope()
            scope = self._scope_manager.__enter__()
        except Exception:
            self._scope_manager = None
            logger.debug("busprop: could not open an isolation scope", exc_info=True)
            return None
        try:
            if sdk.needs_transaction(sdk.continue_propagation(scope, self.trace)):
                self.transaction = _start(scope, arguments)
        except Exception:
            logger.debug("busprop: could not continue the trace", exc_info=True)
        return self.transaction

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc is not None and isinstance(exc, Exception) and get_config().capture_exceptions:
                sdk.capture_exception(exc, mechanism="busprop")
            if self.transaction is not None:
                self.transaction.__exit__(exc_type, exc, traceback)
        except Exception:
            logger.debug("busprop: could not finish the transaction", exc_info=True)
        finally:
            self.transaction = None
            manager, self._scope_manager = self._scope_manager, None
            if manager is not None:
                try:
                    manager.__exit__(None, None, None)
                except Exception:
                    logger.debug("busprop: could not close the isolation scope", exc_info=True)

    async def __aenter__(self) -> Transaction | NoOpSpan | None:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def _start(scope: sentry_sdk.Scope, arguments: dict[str, Any]) -> Transaction | NoOpSpan:
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
    return sdk.start_process_transaction(
        scope,
        name=arguments["name"] or destination,
        origin=arguments["origin"],
        data=data,
        sampling_context=sampling_context,
    )


@contextmanager
def propagation_scope(*carriers: Any, keys: CarrierKeys = HEADER_KEYS) -> Iterator[IncomingTrace]:
    """An isolation scope that continues the trace ``carriers`` hold, without a transaction.

    For work that is not one message but spans many, such as a WebSocket connection continued
    from its handshake: errors and messages sent inside it carry that trace, each message's own
    processing (:func:`continue_trace`) nests inside it, and nothing leaks out of it.
    """
    trace = NO_TRACE
    try:
        trace = extract(*carriers, keys=keys)
    except Exception:
        logger.debug("busprop: unreadable trace headers, starting a new trace", exc_info=True)
    with sentry_sdk.isolation_scope() as scope:
        try:
            sdk.continue_propagation(scope, trace)
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
) -> MessageProcessing:
    """Process a message inside the trace its headers carry: ``with`` or ``async with``.

    Opens an isolation scope (nothing leaks into the next message), continues the trace found in
    ``carriers`` (searched in order; none usable starts a new trace) and runs the body inside a
    ``queue.process`` transaction named ``name`` (default: ``destination``) with Sentry's Queues
    data. An exception in the body is reported (option ``capture_exceptions``), marks the
    transaction failed and propagates unchanged. ``traces_sampler`` receives
    ``sampling_context["messaging"]`` with ``system``, ``destination`` and ``operation``.

    ``details`` is for facts that cost something to read (an id to format, a size, a time, more
    span data): it is called only when a transaction is started, never on the unsampled path, and
    the keys it returns (``message_id``, ``body_size``, ``retry_count``, ``published_at``,
    ``extra_data``) replace the keyword arguments of the same names.
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
    }
    return MessageProcessing(carriers, keys, arguments)
