"""What busprop remembers between messages, kept per sentry-sdk client.

Continuing and injecting a trace repeat the same SDK work for the same values: a consumer sees the
same header pair many times in a row, a producer sends many messages from one span. The results
are kept here, one :class:`ClientCache` per client: a client's options decide what the SDK
continues (``strict_trace_continuation``, ``org_id``), and a new ``sentry_sdk.init`` must never
be served what the old client computed. A cache dies with its client (weak keys), holds no span
or scope (only plain values), is bounded, and is safe to use from several threads: readers see a
whole entry or none, and writers take the cache's lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Mapping
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class BoundedMap(Generic[V]):
    """A dict of at most ``size`` entries; the oldest entry is dropped to make room."""

    __slots__ = ("_entries", "_lock", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        return self._entries.get(key)

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            entries = self._entries
            while len(entries) >= self.size:
                del entries[next(iter(entries))]
            entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)


class ClientCache:
    """The values busprop keeps for one client; see the module docstring."""

    __slots__ = ("__weakref__", "last_outgoing", "last_parsed_key", "last_serialized", "modes", "parsed")

    #: Parsed propagation contexts kept per client.
    PARSED_CONTEXTS = 64

    def __init__(self) -> None:
        #: The SDK's propagation context per recent ``(sentry-trace, baggage)`` pair.
        self.parsed: BoundedMap[Any] = BoundedMap(self.PARSED_CONTEXTS)
        #: The last pair parsed and not kept: a pair is kept when it comes again.
        self.last_parsed_key: Hashable = None
        #: ``(key, values, baggage members)`` of the last inject: the key is the ids and decision
        #: of the current span or propagation context, never the span itself; the members are
        #: the context's frozen baggage (a plain value) with a copy of its members, when the
        #: values came from the context.
        self.last_outgoing: tuple[Hashable, Mapping[str, str] | None, Any] = (None, None, None)
        #: ``(sentry members, third-party members, serialization)`` of the last baggage written.
        self.last_serialized: tuple[dict[str, str] | None, str | None, str] = (None, None, "")
        #: ``(tracing enabled, spans streamed)``: fixed by the client's options, read per message.
        self.modes: tuple[bool, bool] | None = None


_caches: weakref.WeakKeyDictionary[Any, ClientCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()
#: The last client asked about and its cache: one weak dereference on the hot path.
_last: tuple[weakref.ref[Any] | None, ClientCache | None] = (None, None)


def cache_of(client: Any) -> ClientCache:
    """The cache of ``client``, created on first use."""
    global _last
    reference, cache = _last
    if reference is not None and cache is not None and reference() is client:
        return cache
    with _caches_lock:
        cache = _caches.get(client)
        if cache is None:
            cache = _caches[client] = ClientCache()
    _last = (weakref.ref(client), cache)
    return cache
