"""KafkaIntegration: unchanged Kafka code traced, for every supported client that is installed.

Each client's :attr:`~busprop.kafka._client.KafkaClient.patch_points` says which methods do what
(produce, return the next record, close); the wrappers here do it the same way for every client,
through :mod:`busprop.patching` (one :class:`~busprop.patching.Patches` per client). A client
whose library cannot be imported, or is older than busprop supports, is skipped with a debug log.

A record an asyncio client returns (``ANEXT``: aiokafka's ``getone``) belongs to the task that
awaited it: each task has its own current record per consumer, so tasks sharing a consumer never
end each other's processing, and a task that ends sends its last record's transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, cast

from busprop import sdk
from busprop.integration import BusIntegration
from busprop.iteration import CurrentProcessing
from busprop.kafka._client import ANEXT, CLOSE, CONFIGURES, NEXT, POLL, PRODUCE, WRAPS, KafkaClient
from busprop.kafka._core import (
    BUS,
    CLIENTS,
    group_of,
    is_consumer,
    patches_installed,
    processing_of,
    record_processing,
    remember_configured_callback,
    traced_produce,
    traced_produce_async,
    untraced,
)
from busprop.patching import Patches, Wrapper, patchable_subclass

logger = logging.getLogger("busprop")

__all__ = ["KafkaIntegration", "install", "uninstall"]

_CURRENT = "_busprop_processing"
_TASKS_CURRENT = "_busprop_task_processing"
#: Set on a consumer an asyncio wrapper drives (``WRAPS``): the wrapper's calls are the traced ones.
_DRIVEN = "_busprop_driven"


class KafkaIntegration(BusIntegration):
    """``sentry_sdk.init(integrations=[KafkaIntegration()])`` traces unchanged Kafka client code.

    Patches each installed client's produce method (as :func:`~busprop.kafka.traced_producer`) and
    consumer iteration (as :func:`~busprop.kafka.traced_consumer`: a record's transaction ends when
    the next one is asked for, the iteration stops or the consumer is closed), through
    :mod:`busprop.patching`: installing twice changes nothing, :meth:`uninstall` restores the
    originals, and both may run from any thread while other threads use the client. The options
    (``propagation_targets``, ``write_traceparent``, ``capture_exceptions``) apply to Kafka only and
    win over :func:`busprop.configure`'s; one not given is ``configure()``'s.
    """

    identifier = BUS
    public_name = "busprop.kafka.KafkaIntegration"

    @staticmethod
    def setup_once() -> None:
        sdk.require_supported_sdk()
        install()

    @staticmethod
    def uninstall() -> None:
        uninstall()


def _enabled() -> bool:
    return sdk.integration_enabled(KafkaIntegration)


_LOCK = threading.Lock()
_PATCHES: dict[str, Patches] = {}


def _patches_of(client: KafkaClient) -> Patches | None:
    """The client's patches, built on first use; ``None`` when its library is not installed."""
    with _LOCK:
        patches = _PATCHES.get(client.name)
        if patches is None:
            try:
                points = client.patch_points()
                # A class that takes no patches is patched on a subclass standing in for it.
                replaced = [
                    (module, name, getattr(module, name)) for module, name in client.replaced_classes()
                ]
            except ImportError as missing:
                logger.debug("busprop: %s not patched: %s", client.name, missing)
                return None
            subclasses = {original: patchable_subclass(original) for _, _, original in replaced}
            patches = _PATCHES[client.name] = Patches(
                f"{KafkaIntegration.identifier}.{client.name}",
                [
                    (subclasses.get(owner, owner), attribute, _wrapper(client, kind))
                    for owner, attribute, kind in points
                ],
                names=[(module, name, subclasses[original]) for module, name, original in replaced],
            )
        return patches


def install() -> None:
    """Patch every installed client (idempotent, thread-safe); :class:`KafkaIntegration` calls it."""
    patches_installed(True)  # before the first patch: busprop's own calls are marked from now on
    for client in CLIENTS:
        patches = _patches_of(client)
        if patches is not None:
            patches.install()


def uninstall() -> None:
    """Restore the clients' own methods, so a later ``sentry_sdk.init`` may install again."""
    removed = [patches.uninstall() for patches in list(_PATCHES.values())]
    patches_installed(False)
    if any(removed):
        sdk.forget_integration(KafkaIntegration.identifier)


def _wrapper(client: KafkaClient, kind: str) -> Wrapper:
    if kind == PRODUCE:
        return _produce_wrapper(client)
    if kind == CONFIGURES:
        return _configures_wrapper(client)
    return {
        NEXT: _patched_next,
        ANEXT: _patched_anext,
        POLL: _patched_poll,
        CLOSE: _patched_close,
        WRAPS: _patched_wraps,
    }[kind]


def _passes_through(consumer: Any) -> bool:
    """Whether a call comes from busprop's own wrapper, or from an asyncio consumer driving this one."""
    return untraced() or bool(getattr(consumer, "__dict__", {}).get(_DRIVEN))


def _produce_wrapper(client: KafkaClient) -> Wrapper:
    def patched_produce(
        produce: Callable[..., Any], _producer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The produce method as :func:`~busprop.kafka._core.traced_produce` (which checks that the
        current client has KafkaIntegration, in the lookup it makes anyway); ``produce`` is the original."""
        if untraced():
            return produce(*args, **kwargs)
        if client.produce_is_async:
            return traced_produce_async(client, produce, args, kwargs, patched=True)
        return traced_produce(client, produce, args, kwargs, patched=True)

    return patched_produce


def _configures_wrapper(client: KafkaClient) -> Wrapper:
    def patched_init(
        init: Callable[..., Any], producer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """A producer's constructor; the delivery callback its configuration names is kept after it."""
        init(*args, **kwargs)
        remember_configured_callback(client, producer, args, kwargs)

    return patched_init


def _patched_next(
    wrapped: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _passes_through(self):
        return wrapped(*args, **kwargs)
    _finish_current(self)
    record = wrapped(*args, **kwargs)
    if _enabled():
        try:
            _current_of(self).start(record_processing(record, group_of(self)))
        except Exception:
            logger.debug("busprop: could not trace a Kafka record", exc_info=True)
    return record


async def _patched_anext(
    wrapped: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """:func:`_patched_poll` for a coroutine method; the record belongs to the awaiting task."""
    if untraced():  # called by busprop's own ``traced_consumer``
        return await wrapped(*args, **kwargs)
    try:
        current: CurrentProcessing | None = _task_current_of(self)
    except Exception:
        logger.debug("busprop: could not find the task's Kafka record", exc_info=True)
        current = None
    _finish(current)
    record = await wrapped(*args, **kwargs)
    if current is not None and record is not None and _enabled():
        try:
            processing = processing_of(record, group_of(self))
            if processing is not None:
                current.start(processing)
        except Exception:
            logger.debug("busprop: could not trace a Kafka record", exc_info=True)
    return record


def _patched_poll(
    wrapped: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """:func:`_patched_next` for ``poll()``: ``None`` (nothing in time) or an error event starts nothing."""
    if _passes_through(self):
        return wrapped(*args, **kwargs)
    _finish_current(self)
    record = wrapped(*args, **kwargs)
    if record is not None and _enabled():
        try:
            processing = processing_of(record, group_of(self))
            if processing is not None:
                _current_of(self).start(processing)
        except Exception:
            logger.debug("busprop: could not trace a Kafka record", exc_info=True)
    return record


def _patched_close(
    wrapped: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    _finish_current(self)
    return wrapped(*args, **kwargs)


def _patched_wraps(
    wrapped: Callable[..., Any], self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """An asyncio consumer's constructor: each consumer it keeps passes its calls through, so that
    a message is processed once, in the task that awaited it, not on an executor thread."""
    result = wrapped(*args, **kwargs)
    try:
        for value in list(vars(self).values()):
            if is_consumer(value) and hasattr(value, "__dict__"):
                value.__dict__[_DRIVEN] = True
    except Exception:
        logger.debug("busprop: could not find the consumer an asyncio consumer wraps", exc_info=True)
    return result


def _current_of(consumer: Any) -> CurrentProcessing:
    """The record the consumer's loop body is processing (a consumer is its own iterator)."""
    current = consumer.__dict__.get(_CURRENT)
    if current is None:
        current = consumer.__dict__[_CURRENT] = CurrentProcessing(consumer)
    return cast(CurrentProcessing, current)


def _task_current_of(consumer: Any) -> CurrentProcessing:
    """The record the running asyncio task is processing from this consumer (the module's docstring)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # a coroutine driven by hand, outside any event loop
        task = None
    if task is None:
        return _current_of(consumer)
    tasks = consumer.__dict__.get(_TASKS_CURRENT)
    if tasks is None:
        tasks = consumer.__dict__.setdefault(_TASKS_CURRENT, weakref.WeakKeyDictionary())
    current = tasks.get(task)
    if current is None:
        current = tasks[task] = CurrentProcessing()
        task.add_done_callback(lambda _task: _finish(current))  # the task is over: send its record
    return cast(CurrentProcessing, current)


def _finish_current(consumer: Any) -> None:
    """End the last record's processing; from another thread or task, send it (``busprop.iteration``)."""
    _finish(consumer.__dict__.get(_CURRENT))
    for current in list(consumer.__dict__.get(_TASKS_CURRENT, {}).values()):
        _finish(current)


def _finish(current: CurrentProcessing | None) -> None:
    if current is not None:
        try:
            current.finish()
        except Exception:
            logger.debug("busprop: could not end a Kafka record's processing", exc_info=True)
