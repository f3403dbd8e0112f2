"""Reading and writing trace headers in the containers message buses use.

Every bus keeps message metadata somewhere different: AMQP and Celery in a mapping of ``str`` to
``str``, Kafka in a list of ``(str, bytes)`` pairs, WebSocket messages in a JSON object. This module
is the one place that knows how to get the trace headers out of those containers and back in, so
that no adapter handles bytes, duplicates or junk values on its own.

Reading is defensive: metadata comes from other programs, so a value that is not ``str``/``bytes``,
is not strict UTF-8, is oversized or does not parse is skipped, and the first usable value wins.
Writing replaces existing trace headers in place (never a second copy), keeps every other header
where it was, and merges ``baggage`` so third-party members survive the hop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from busprop.baggage import merge_baggage

SENTRY_TRACE = "sentry-trace"
BAGGAGE = "baggage"
TRACEPARENT = "traceparent"

#: Longest ``sentry-trace`` / ``traceparent`` accepted: the formats are 51 and 55 characters.
MAX_TRACE_HEADER_LENGTH = 128
#: Longest ``baggage`` accepted on the way in: the W3C limit.
MAX_BAGGAGE_LENGTH = 8192

_SENTRY_TRACE_RE = re.compile(r"[ \t]*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?[ \t]*")
_TRACEPARENT_RE = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

#: A container of headers: a mapping, or a list of ``(key, value)`` pairs as Kafka records use.
Carrier: TypeAlias = "Mapping[str, Any] | Iterable[tuple[str, Any]]"
MutableCarrier: TypeAlias = "MutableMapping[str, Any] | MutableSequence[tuple[str, Any]]"


@dataclass(frozen=True)
class CarrierKeys:
    """The names under which a transport stores the two values.

    Message buses use the HTTP names; the WebSocket format from Sentry's docs uses
    ``sentryTrace``. Keys are matched exactly (Kafka and AMQP header names are case-sensitive).
    """

    sentry_trace: str = SENTRY_TRACE
    baggage: str = BAGGAGE
    traceparent: str = TRACEPARENT
    #: The container key of each value, by its HTTP header name (built once, read on every write).
    _names: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {SENTRY_TRACE: self.sentry_trace, BAGGAGE: self.baggage, TRACEPARENT: self.traceparent}
        object.__setattr__(self, "_names", names)


HEADER_KEYS = CarrierKeys()


@dataclass(frozen=True)
class IncomingTrace:
    """What a carrier holds, validated: the input ``sentry_sdk.continue_trace`` expects."""

    sentry_trace: str | None = None
    baggage: str | None = None

    @property
    def sampled(self) -> bool | None:
        """The head's decision carried by ``sentry-trace``: ``True``, ``False`` or ``None`` (undecided)."""
        if self.sentry_trace is None:
            return None
        flag = self.sentry_trace.strip()[50:51]
        return None if not flag else flag == "1"

    def as_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.sentry_trace is not None:
            headers[SENTRY_TRACE] = self.sentry_trace
            if self.baggage is not None:
                headers[BAGGAGE] = self.baggage
        return headers


NO_TRACE = IncomingTrace()


def _as_text(value: Any, limit: int) -> str | None:
    if type(value) is bytes:  # Kafka's header values: the common case first
        if len(value) > limit * 4:
            return None
        try:
            text = value.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) > limit * 4:
            return None
        try:
            text = bytes(value).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
    else:
        return None
    if len(text) > limit:
        return None
    return text


def parse_sentry_trace(value: Any) -> str | None:
    """Return ``value`` as a ``sentry-trace`` string when it is one, else ``None``."""
    text = _as_text(value, MAX_TRACE_HEADER_LENGTH)
    if text is None:
        return None
    match = _SENTRY_TRACE_RE.fullmatch(text)
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == _ZERO_SPAN:
        return None
    return text.strip()


def parse_baggage(value: Any) -> str | None:
    """Return ``value`` as a ``baggage`` string when it is printable and within the W3C limits."""
    text = _as_text(value, MAX_BAGGAGE_LENGTH)
    if text is None or not text.strip():
        return None
    if not text.isprintable() or not text.isascii():
        return None
    return text


def traceparent_to_sentry_trace(value: Any) -> str | None:
    """Translate a valid W3C ``traceparent`` into the equivalent ``sentry-trace`` value."""
    text = _as_text(value, MAX_TRACE_HEADER_LENGTH)
    if text is None:
        return None
    match = _TRACEPARENT_RE.fullmatch(text)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.group(1, 2, 3, 4)
    if version == "ff" or (version == "00" and match.group(5)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    sampled = "1" if int(flags, 16) & 1 else "0"
    return f"{trace_id}-{span_id}-{sampled}"


def _pairs(container: Any) -> Iterable[Sequence[Any]]:
    if isinstance(container, Mapping):
        return container.items()
    if isinstance(container, (list, tuple)):
        return [item for item in container if isinstance(item, (list, tuple)) and len(item) == 2]
    return ()


def _read(container: Any, keys: CarrierKeys) -> tuple[str | None, str | None, str | None]:
    """The first usable ``sentry-trace``, ``baggage`` and ``traceparent`` of one container."""
    sentry_trace: str | None = None
    baggage: str | None = None
    traceparent: str | None = None
    for key, value in _pairs(container):
        if key == keys.sentry_trace:
            if sentry_trace is None:
                sentry_trace = parse_sentry_trace(value)
        elif key == keys.baggage:
            if baggage is None:
                baggage = parse_baggage(value)
        elif key == keys.traceparent and traceparent is None:
            traceparent = traceparent_to_sentry_trace(value)
    return sentry_trace, baggage, traceparent


def extract(*containers: Any, keys: CarrierKeys = HEADER_KEYS) -> IncomingTrace:
    """Read the trace a message carries from one or more header containers.

    Containers are alternatives, searched in order: the first one with a usable ``sentry-trace``
    wins as a whole (its own ``baggage``, never another container's), so a transport with
    nested headers (Celery) passes the outer and the inner one. Within a container the first
    usable value of each header wins. ``traceparent`` is used only when no container has a usable
    ``sentry-trace``, so OpenTelemetry-instrumented producers are continued too. Anything that is
    not a container, and any unusable value, is ignored: the result is then :data:`NO_TRACE`,
    from which ``sentry_sdk`` starts a fresh trace.
    """
    fallback: IncomingTrace | None = None
    for container in containers:
        sentry_trace, baggage, traceparent = _read(container, keys)
        if sentry_trace is not None:
            return IncomingTrace(sentry_trace, baggage)
        if traceparent is not None and fallback is None:
            fallback = IncomingTrace(traceparent, baggage)
    return fallback or NO_TRACE


def _existing_value(container: MutableCarrier, key: str) -> Any:
    if isinstance(container, Mapping):
        return container.get(key)
    for item_key, value in _pairs(container):
        if item_key == key:
            return value
    return None


def _set_in_pairs(pairs: MutableSequence[tuple[str, Any]], key: str, value: Any) -> None:
    """Replace the first ``key`` in place, drop later copies, append when absent."""
    index = 0
    found = False
    while index < len(pairs):
        item = pairs[index]
        if isinstance(item, (list, tuple)) and len(item) == 2 and item[0] == key:
            if found:
                del pairs[index]
                continue
            pairs[index] = (key, value)
            found = True
        index += 1
    if not found:
        pairs.append((key, value))


def write(
    container: MutableCarrier,
    values: Mapping[str, str],
    *,
    keys: CarrierKeys = HEADER_KEYS,
    as_bytes: bool = False,
) -> None:
    """Write outgoing trace values (keyed by their HTTP header names) into ``container``.

    ``baggage`` is merged with the baggage already in the container, so third-party members
    survive; the result is capped at the W3C limit. ``as_bytes`` encodes values as UTF-8, for
    buses whose header values are bytes (Kafka).
    """
    names = keys._names
    mapping = container if isinstance(container, MutableMapping) else None
    pairs = None if isinstance(container, MutableMapping) else container
    empty = pairs is not None and len(pairs) == 0  # a new header list: nothing to merge or replace
    for header, value in values.items():
        key = names[header]
        if header == BAGGAGE:
            existing = None if empty else _existing_value(container, key)
            if existing is not None or len(value) > MAX_BAGGAGE_LENGTH:
                value = merge_baggage(_as_text(existing, MAX_BAGGAGE_LENGTH * 8), value)
            if not value:
                continue
        encoded: str | bytes = value.encode("utf-8") if as_bytes else value
        if mapping is not None:
            mapping[key] = encoded
        elif pairs is not None and empty:
            pairs.append((key, encoded))
        elif pairs is not None:
            _set_in_pairs(pairs, key, encoded)
