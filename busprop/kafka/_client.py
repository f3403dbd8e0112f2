"""What busprop's Kafka core needs to know about one Kafka client library: a :class:`KafkaClient`.

Every client (kafka-python, confluent-kafka, aiokafka) carries the trace the same way: headers
are ``(str, bytes)`` pairs, the destination is the topic, a record's id is ``topic/partition/
offset``. The clients differ only in *where* those live: an attribute or a method of the record,
the name of the produce method and the order of its arguments, how the broker's acknowledgement
comes back. A client module fills in one :class:`KafkaClient` with those answers and nothing else;
:mod:`busprop.kafka._core` does the rest. This module imports no client library.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from types import ModuleType
from typing import Any, Protocol

__all__ = [
    "ANEXT",
    "CLOSE",
    "CONFIGURES",
    "NEXT",
    "POLL",
    "PRODUCE",
    "WRAPS",
    "Delivery",
    "KafkaClient",
    "PatchPoint",
    "import_library",
    "methods_in",
    "types_in",
]

#: What a patched method does, in a :class:`PatchPoint`: ``PRODUCE`` is the produce call (as
#: :func:`~busprop.kafka._core.traced_produce`), ``NEXT`` returns the next record (the previous
#: record's processing ends, the returned one's starts), ``CLOSE`` ends the last record's processing.
#: ``POLL`` is ``NEXT`` for a method that may also return ``None`` (nothing arrived in time) or an
#: error event (``is_error``): those start nothing. ``ANEXT`` is ``POLL`` for a coroutine method
#: (aiokafka's ``getone``, confluent-kafka's ``AIOConsumer.poll``): the record's processing belongs
#: to the asyncio task that awaited it. ``WRAPS`` is the constructor of an asyncio consumer that
#: drives a consumer of the client on executor threads (``AIOConsumer``): the wrapper's methods are
#: traced, so the calls of the consumer it wraps pass through untraced. ``CONFIGURES`` is the
#: constructor of a producer whose configuration may name a default delivery callback
#: (:attr:`KafkaClient.configured_callback`): a produce call that gives none is watched through it.
PRODUCE = "produce"
NEXT = "next"
ANEXT = "anext"
POLL = "poll"
CLOSE = "close"
WRAPS = "wraps"
CONFIGURES = "configures"

#: ``(owner class, attribute, PRODUCE | NEXT | ANEXT | POLL | CLOSE | WRAPS | CONFIGURES)``: a method
#: KafkaIntegration patches.
PatchPoint = tuple[type, str, str]


class Delivery(Protocol):
    """What the core does with what a client learns about a send; every method is safe to call."""

    #: Whether the send has a span to describe (``sent``, ``delivered``); without one (an unsampled
    #: send) only a failure is reported, and a client need not wait for the rest.
    describes: bool

    def sent(self, *, body_size: Any = None, partition: Any = None) -> None:
        """Describe the send (on its ``queue.publish`` span) with what is known before the broker answers."""

    def delivered(self, topic: Any, partition: Any, offset: Any) -> None:
        """The broker stored the record: its id ``topic/partition/offset`` goes on the span."""

    def failed(self, error: BaseException) -> None:
        """The record was not stored: report ``error`` in the send's trace, mark the span failed."""


def _unreported(callback: Callable[..., Any], _delivery: Delivery) -> Callable[..., Any]:
    return callback


def _no_result_watch(_result: Any, _delivery: Delivery) -> None:
    return None


def _iterate(consumer: Any) -> Iterator[Any]:
    return iter(consumer)


def _no_patch_points() -> list[PatchPoint]:
    return []


def _never(_candidate: Any) -> bool:
    return False


def _no_classes() -> list[tuple[ModuleType, str]]:
    return []


def types_in(module: str, *names: str) -> Callable[[], tuple[type, ...]]:
    """A ``*_types`` function of a :class:`KafkaClient`: the classes ``names`` of ``module``,
    imported when asked for (the library may be absent)."""

    def types() -> tuple[type, ...]:
        library = importlib.import_module(module)
        return tuple(getattr(library, name) for name in names)

    return types


def import_library(name: str, minimum: tuple[int, ...]) -> ModuleType:
    """Import a client library for patching; ``ImportError`` when it is missing or older than ``minimum``."""
    library = importlib.import_module(name)
    found = tuple(int(part) for part in re.findall(r"\d+", str(getattr(library, "__version__", "")))[:3])
    if found < minimum:
        wanted = ".".join(map(str, minimum))
        raise ImportError(f"{name} {getattr(library, '__version__', '?')} is older than {wanted}")
    return library


def methods_in(
    module: str, minimum: tuple[int, ...], *points: tuple[str, str, str]
) -> Callable[[], list[PatchPoint]]:
    """A ``patch_points`` function of a :class:`KafkaClient`: ``(class name, attribute, kind)``
    of ``module``, imported when asked for (``ImportError`` when absent or older than ``minimum``)."""

    def patch_points() -> list[PatchPoint]:
        library = import_library(module, minimum)
        return [(getattr(library, owner), attribute, kind) for owner, attribute, kind in points]

    return patch_points


@dataclass(frozen=True, kw_only=True)
class KafkaClient:
    """Where one client library keeps what the Kafka core reads and writes.

    The ``*_types`` and ``patch_points`` functions import the client library when called (it may
    be absent); the record readers take a consumed record and may return anything: the core checks
    each value's type. A field left at its default means the client has no such thing.
    """

    #: The client's name in logs ("kafka-python") and the Python module it is imported as ("kafka").
    name: str
    library: str
    #: The client's consumed-record, producer and consumer classes.
    record_types: Callable[[], tuple[type, ...]]
    producer_types: Callable[[], tuple[type, ...]]
    consumer_types: Callable[[], tuple[type, ...]]
    #: A consumed record's topic (``str``), partition and offset (``int``), key, headers (pairs of
    #: ``(str, bytes | None)``, or ``None``), value size in bytes and timestamp in milliseconds.
    #: The defaults read a ``ConsumerRecord`` of kafka-python's shape (aiokafka's has the same).
    topic: Callable[[Any], Any] = attrgetter("topic")
    partition: Callable[[Any], Any] = attrgetter("partition")
    offset: Callable[[Any], Any] = attrgetter("offset")
    key: Callable[[Any], Any] = attrgetter("key")
    headers: Callable[[Any], Any] = attrgetter("headers")
    value_size: Callable[[Any], Any] = attrgetter("serialized_value_size")
    timestamp_ms: Callable[[Any], Any] = attrgetter("timestamp")
    #: A consumer's group id (``str``), or anything else when it has none or does not tell.
    group_id: Callable[[Any], Any]
    #: The producer's method that sends one record, and its parameters in positional order; the
    #: core reads the ``topic``, ``value`` and ``headers`` arguments by those names.
    produce_method: str
    produce_parameters: tuple[str, ...]
    #: Whether the produce method is a coroutine function (awaited inside the publish span).
    produce_is_async: bool = False
    #: Producer methods that produce by calling ``self.<produce_method>`` (aiokafka's
    #: ``send_and_wait``): a traced producer runs them with itself as ``self``, so they trace once.
    produce_callers: tuple[str, ...] = ()
    #: Whether the produce call accepts headers as a mapping (then the core copies it into a dict).
    mapping_headers: bool = False
    #: The produce parameters that take a per-record delivery callback, the one the client calls
    #: when several are given first (confluent-kafka's ``callback`` over its alias ``on_delivery``).
    delivery_callbacks: tuple[str, ...] = ()
    #: The callback the caller gave, wrapped to report to ``delivery`` (``delivery.delivered`` /
    #: ``delivery.failed``) before it runs as before. A call that gives none gets none.
    report_delivery: Callable[[Callable[..., Any], Delivery], Callable[..., Any]] = _unreported
    #: The delivery callback a producer's configuration names, read from its constructor's
    #: ``(args, kwargs)`` (confluent-kafka's ``on_delivery``): the client calls it for a record
    #: produced without one, so busprop reports through it as through a callback given per call.
    #: ``None``: the client has no such setting.
    configured_callback: Callable[[tuple[Any, ...], dict[str, Any]], Any] | None = None
    #: Called with what the produce call returned (a future): report its outcome to ``delivery``.
    watch_result: Callable[[Any, Delivery], None] = _no_result_watch
    #: A consumer's records as the client yields them (``traced_consumer`` wraps this iterator).
    records: Callable[[Any], Iterator[Any]] = _iterate
    #: For an asyncio client, a consumer's records as an async iterator: ``traced_consumer`` then
    #: returns an async iterator (``async for``) wrapping it.
    async_records: Callable[[Any], AsyncIterator[Any]] | None = None
    #: Whether a consumed object is an error or event the consumer reports in place of a record
    #: (confluent-kafka's ``Message`` whose ``error()`` is set): it gets no processing.
    is_error: Callable[[Any], bool] = _never
    #: The methods :class:`~busprop.kafka.KafkaIntegration` patches.
    patch_points: Callable[[], list[PatchPoint]] = _no_patch_points
    #: ``(module, name)`` of classes that take no patches (C types, as confluent-kafka's
    #: ``Producer``): their patch points are installed on a subclass that replaces ``module.name``
    #: while the integration is installed (see :func:`busprop.patching.patchable_subclass`).
    replaced_classes: Callable[[], list[tuple[ModuleType, str]]] = _no_classes

    @cached_property
    def watches_result(self) -> bool:
        """Whether the client reports a send's outcome through what its produce call returns."""
        return self.watch_result is not KafkaClient.watch_result

    @cached_property
    def produce_positions(self) -> dict[str, int]:
        """Each produce parameter's position (an argument given by keyword is found by name)."""
        return {name: position for position, name in enumerate(self.produce_parameters)}

    @cached_property
    def read_positions(self) -> tuple[int, int, int]:
        """The positions of the ``topic``, ``value`` and ``headers`` parameters: where a send's
        arguments are read when given positionally (past the last position: by keyword only)."""
        keyword_only = len(self.produce_parameters)
        positions = self.produce_positions
        topic, value, headers = (positions.get(name, keyword_only) for name in ("topic", "value", "headers"))
        return topic, value, headers
