"""AMQP (RabbitMQ) through aio-pika or pika: traced publishing, consumers, iterators, RPC.

sentry-python has no AMQP integration; OpenTelemetry's instrumentations lose the trace in
iterator loops and on bytes header values, and trace a blocking pika publish twice. Here one AMQP
core (:mod:`busprop.amqp._core`) carries the trace in each message's headers table, and one module
per client library says where that library keeps the message's parts. Neither library is
imported here: pika alone, aio-pika alone or both work, and each public function below takes
what the user's library hands over (an aio-pika message, or pika's ``method, properties, body``).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from busprop import sdk
from busprop.amqp._core import INTEGRATION, SYSTEM, destination_of, fresh_trace
from busprop.decorators import traced_call
from busprop.integration import BusIntegration
from busprop.processing import MessageProcessing

if TYPE_CHECKING:
    from busprop.amqp._aio_pika import (
        OutgoingMessage,
        TracedExchange,
        TracedQueueIterator,
        TracedRPC,
        publisher,
        traced_exchange,
    )
    from busprop.amqp._pika import TracedConsume, basic_publish

__all__ = [
    "SYSTEM",
    "AMQPIntegration",
    "AioPikaIntegration",
    "OutgoingMessage",
    "TracedConsume",
    "TracedExchange",
    "TracedQueueIterator",
    "TracedRPC",
    "basic_publish",
    "consumer",
    "destination_of",
    "message_processing",
    "publisher",
    "retry_count",
    "traced_exchange",
    "traced_iterator",
]

logger = logging.getLogger("busprop")

F = TypeVar("F", bound=Callable[..., Any])

#: The client modules, by the library each needs.
_CLIENTS = {"aio_pika": "busprop.amqp._aio_pika", "pika": "busprop.amqp._pika"}
#: Public names that belong to one client, imported on first use.
_LAZY = {
    "OutgoingMessage": "aio_pika",
    "TracedExchange": "aio_pika",
    "TracedQueueIterator": "aio_pika",
    "TracedRPC": "aio_pika",
    "publisher": "aio_pika",
    "traced_exchange": "aio_pika",
    "TracedConsume": "pika",
    "basic_publish": "pika",
}


def __getattr__(name: str) -> Any:
    library = _LAZY.get(name)
    if library is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_client(library), name)


def _client(library: str) -> ModuleType:
    module = _CLIENTS[library]
    return sys.modules.get(module) or importlib.import_module(module)


def _loaded_clients() -> Iterator[ModuleType]:
    """The client modules of the libraries the program has imported: only those can have made the
    objects a function here is given."""
    for library in _CLIENTS:
        if sys.modules.get(library) is not None:
            yield _client(library)


def _is_pika_delivery(method: Any) -> bool:
    return sys.modules.get("pika") is not None and bool(_client("pika").is_delivery(method))


# --- consuming --------------------------------------------------------------------------------


def message_processing(
    message: Any, properties: Any = None, body: bytes | None = None, *, name: str | None = None
) -> MessageProcessing:
    """The processing of one received message, inside the trace it carries (``with``/``async with``).

    pika: ``message_processing(method, properties, body)`` with the ``Basic.Deliver`` (or
    ``Basic.GetOk``) method; aio-pika: ``message_processing(message)`` with the incoming message
    (a name may follow it, as before). ``name`` names the transaction (default
    ``exchange/routing_key``). Anything else is processed in a fresh trace.
    """
    if _is_pika_delivery(message):
        return _client("pika").message_processing(message, properties, body, name)  # type: ignore[no-any-return]
    if sys.modules.get("aio_pika") is not None:
        aio = _client("aio_pika")
        if isinstance(message, aio.AbstractIncomingMessage):
            named = name if name is not None or not isinstance(properties, str) else properties
            return aio.message_processing(message, named)  # type: ignore[no-any-return]
    logger.debug("busprop: %s is not an AMQP message busprop knows", type(message).__name__)
    return fresh_trace("auto.queue.busprop.amqp", name)


def _processing_for_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None
) -> AbstractContextManager[Any]:
    for client in _loaded_clients():
        processing = client.processing_for_call(args, kwargs, name)
        if processing is not None:
            return processing  # type: ignore[no-any-return]
    return nullcontext()


@overload
def consumer(func: F, *, name: str | None = None) -> F: ...


@overload
def consumer(func: None = None, *, name: str | None = None) -> Callable[[F], F]: ...


def consumer(func: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Decorate a consumer callback: it runs inside the trace its message carries.

    Use as ``@busprop.amqp.consumer`` or ``@busprop.amqp.consumer(name="orders")`` (the
    transaction name; default ``exchange/routing_key``). The message is found among the arguments:
    aio-pika's incoming message (the last one), or pika's ``Basic.Deliver`` with the properties
    and body after it (``(channel, method, properties, body)``), so methods work too; a sync
    function stays sync. busprop never acks, nacks or rejects: an exception is reported in the
    message's trace and propagates unchanged to the client library.
    """

    def decorate(callback: F) -> F:
        return traced_call(callback, lambda args, kwargs: _processing_for_call(args, kwargs, name))

    return decorate(func) if func is not None else decorate


def traced_iterator(iterator: Any, *, name: str | None = None) -> Any:
    """Wrap a consuming loop so each loop body runs inside its message's trace.

    aio-pika: ``queue.iterator()`` (or a queue), for ``async for`` and ``async with``, giving a
    :class:`TracedQueueIterator`. pika: ``channel.consume(queue)``, for ``for``, giving a
    :class:`TracedConsume`. A message's transaction ends when the loop asks for the next one, where
    the loop is left (``break``, ``return``, an exception) or on ``close()``; see
    :mod:`busprop.iteration`.
    """
    library = "aio_pika" if hasattr(type(iterator), "__aiter__") else "pika"
    return _client(library).traced_iterator(iterator, name=name)


def retry_count(message: Any, properties: Any = None) -> int:
    """How many times the message was delivered before: dead-letterings plus redeliveries.

    ``retry_count(message)`` for aio-pika, ``retry_count(method, properties)`` for pika.
    ``x-death`` (one entry per queue and reason, each with a ``count``) counts the times a
    dead-letter exchange brought it back; ``x-delivery-count`` (quorum queues) counts the
    redeliveries, and the ``redelivered`` flag says there was at least one.
    """
    if _is_pika_delivery(message):
        return _client("pika").retry_count(message, properties)  # type: ignore[no-any-return]
    return _client("aio_pika").retry_count(message)  # type: ignore[no-any-return]


# --- auto-instrumentation ---------------------------------------------------------------------


def _client_patches() -> Iterator[Any]:
    """The patches of each client library that can be imported; a missing one is skipped."""
    for library in _CLIENTS:
        try:
            yield _client(library).PATCHES
        except ImportError:
            logger.debug("busprop: %s is not installed; AMQPIntegration leaves it out", library)


class AMQPIntegration(BusIntegration):
    """Traces existing aio-pika and pika code: ``sentry_sdk.init(integrations=[AMQPIntegration()])``.

    aio-pika: ``Exchange.publish`` (robust exchanges included), ``Queue.consume`` callbacks,
    ``async for`` over queues and queue iterators, ``RPC.call``/``RPC.execute``. pika:
    ``basic_publish`` and ``basic_consume`` of ``BlockingChannel`` and ``Channel``, and
    ``BlockingChannel.consume()``. A library that is not installed is left out. Patching goes
    through :mod:`busprop.patching`: installing twice changes nothing, :meth:`uninstall` puts the
    originals back, and both may run from any thread while other threads use the libraries. The
    patches do nothing while the active client was initialised without this integration. The
    options (``propagation_targets``, ``write_traceparent``, ``capture_exceptions``) apply to AMQP
    only and win over :func:`busprop.configure`'s; one not given is ``configure()``'s.
    """

    identifier = INTEGRATION
    public_name = "busprop.amqp.AMQPIntegration"

    @staticmethod
    def setup_once() -> None:
        sdk.require_supported_sdk()
        for patches in _client_patches():
            patches.install()

    @staticmethod
    def uninstall() -> None:
        """Restore the originals; a later ``sentry_sdk.init`` with the integration patches again."""
        for library, module in _CLIENTS.items():
            loaded = sys.modules.get(module)
            if loaded is not None:
                loaded.PATCHES.uninstall()
            else:
                logger.debug("busprop: %s was never patched", library)
        with sdk.capture_internal_exceptions():
            sdk.forget_integration(INTEGRATION)


#: The name of :class:`AMQPIntegration` before pika was supported; kept for one release.
AioPikaIntegration = AMQPIntegration
