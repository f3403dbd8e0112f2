"""Reading and writing trace headers in the containers message buses use.

Every bus keeps message metadata somewhere different: AMQP and Celery in a mapping of ``str`` to
``str``, Kafka in a list of ``(str, bytes)`` pairs, WebSocket messages in a JSON object. This module
is the one place that knows how to get the trace headers out of those containers and back in, so
that no adapter handles bytes, duplicates or junk values on its own.

Reading is defensive: metadata comes from other programs, so a value that is not ``str``/``bytes``,
is not strict UTF-8, is oversized or does not parse is skipped, and the first usable value wins;
a container that is none, or whose reading raises, is skipped with a debug record.
Writing replaces existing trace headers in place (never a second copy), keeps every other header
where it was, merges ``baggage`` so third-party members survive the hop, and leaves no stale trace
header behind: what the outgoing trace does not have is removed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, MutableMapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

from busprop.baggage import has_only_sentry_members, merge_baggage

logger = logging.getLogger("busprop")

SENTRY_TRACE = "sentry-trace"
BAGGAGE = "baggage"
TRACEPARENT = "traceparent"

#: Longest ``sentry-trace`` / ``traceparent`` accepted: the formats are 51 and 55 characters.
MAX_TRACE_HEADER_LENGTH = 128
#: Longest ``baggage`` accepted on the way in: the W3C limit.
MAX_BAGGAGE_LENGTH = 8192

#: A trace id and a span id of lowercase hex, neither all zeros, and an optional sampling flag.
_SENTRY_TRACE_RE = re.compile(r"[ \t]*(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}(?:-[01])?[ \t]*")
_TRACEPARENT_RE = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
#: Every header a trace travels in, in the order a new header list receives them.
_TRACE_HEADERS = (SENTRY_TRACE, BAGGAGE, TRACEPARENT)

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

_new_object = object.__new__


def _incoming(sentry_trace: str, baggage: str | None) -> IncomingTrace:
    """``IncomingTrace(sentry_trace, baggage)`` of values already validated, in a third of the
    time: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``."""
    trace = _new_object(IncomingTrace)
    fields = trace.__dict__
    fields["sentry_trace"] = sentry_trace
    fields["baggage"] = baggage
    return trace


def _as_text(value: Any, limit: int) -> str | None:
    if type(value) is bytes:  # Kafka's header values: the common case first
        if len(value) > limit * 4:
            return None
        try:
            text = value.decode()  # strict UTF-8
        except UnicodeDecodeError:
            return None
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) > limit * 4:
            return None
        try:
            text = bytes(value).decode()
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
    if _SENTRY_TRACE_RE.fullmatch(text) is None:
        return None
    return text.strip()


def parse_baggage(value: Any) -> str | None:
    """Return ``value`` as a ``baggage`` string when it is printable and within the W3C limits."""
    text = _as_text(value, MAX_BAGGAGE_LENGTH)
    if text is None or not text.isascii() or not text.isprintable() or not text or text.isspace():
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
    """The first usable ``sentry-trace``, ``baggage`` and ``traceparent`` of one container.

    A container of any type: one that is none, or not a mapping or a sequence of pairs, or whose
    reading raises, is skipped (with a debug record). Runs once per message: a list or tuple of
    pairs (Kafka's headers) is walked in place, an item that is no pair skipped on the way."""
    sentry_trace: str | None = None
    baggage: str | None = None
    traceparent: str | None = None
    if container is None:
        return None, None, None
    kind = type(container)
    if kind is dict:  # AMQP, Celery and WebSocket metadata: three lookups, however many headers
        try:
            found = container.get(keys.sentry_trace)
            if found is not None:
                sentry_trace = parse_sentry_trace(found)
            found = container.get(keys.baggage)
            if found is not None:
                baggage = parse_baggage(found)
            if sentry_trace is None:  # a traceparent is used only without a sentry-trace
                found = container.get(keys.traceparent)
                if found is not None:
                    traceparent = traceparent_to_sentry_trace(found)
        except Exception:  # a key whose comparison raises
            logger.debug("busprop: unreadable dict carrier, skipped", exc_info=True)
            return None, None, None
        return sentry_trace, baggage, traceparent
    mapping = kind is not list and kind is not tuple and isinstance(container, Mapping)
    if not mapping and not isinstance(container, (list, tuple)):
        logger.debug("busprop: a carrier of type %s is no header container", type(container).__name__)
        return None, None, None
    names = keys.sentry_trace, keys.baggage, keys.traceparent
    try:
        for item in container.items() if mapping else container:
            if (type(item) is tuple or isinstance(item, (list, tuple))) and len(item) == 2:
                key, value = item
                if key in names:  # at most three comparisons for a header that is no trace header
                    if key == names[0]:
                        if sentry_trace is None:
                            sentry_trace = parse_sentry_trace(value)
                    elif key == names[1]:
                        if baggage is None:
                            baggage = parse_baggage(value)
                    elif traceparent is None:
                        traceparent = traceparent_to_sentry_trace(value)
    except Exception:
        logger.debug("busprop: unreadable %s carrier, skipped", type(container).__name__, exc_info=True)
        return None, None, None
    return sentry_trace, baggage, traceparent


def extract(*containers: Any, keys: CarrierKeys = HEADER_KEYS) -> IncomingTrace:
    """Read the trace a message carries from one or more header containers.

    Containers are alternatives, searched in order: the first one with a usable ``sentry-trace``
    wins as a whole (its own ``baggage``, never another container's), so a transport with
    nested headers (Celery) passes the outer and the inner one. Within a container the first
    usable value of each header wins. ``traceparent`` is used only when no container has a usable
    ``sentry-trace``, so OpenTelemetry-instrumented producers are continued too. Anything that is
    not a container, and any unusable value, is ignored: the result is then :data:`NO_TRACE`,
    from which ``sentry_sdk`` starts a fresh trace. Never raises: a container whose reading
    raises, or ``keys`` that are not a :class:`CarrierKeys`, is skipped with a debug record.
    """
    if not isinstance(keys, CarrierKeys):
        logger.debug("busprop: keys of type %s are not a CarrierKeys: no trace read", type(keys).__name__)
        return NO_TRACE
    fallback: IncomingTrace | None = None
    for container in containers:
        sentry_trace, baggage, traceparent = _read(container, keys)
        if sentry_trace is not None:
            return _incoming(sentry_trace, baggage)
        if traceparent is not None and fallback is None:
            fallback = _incoming(traceparent, baggage)
    return fallback or NO_TRACE


def _existing_value(container: MutableCarrier, key: str) -> Any:
    if isinstance(container, Mapping):
        return container.get(key)
    for item_key, value in _pairs(container):
        if item_key == key:
            return value
    return None


def _trace_key(item: Any, keys: Iterable[str]) -> str | None:
    """The trace header ``item`` is, when it is a ``(key, value)`` pair with one of ``keys``."""
    if isinstance(item, (list, tuple)) and len(item) == 2:
        name = item[0]
        for key in keys:
            if name == key:
                return key
    return None


def _rewrite_pairs(pairs: MutableSequence[tuple[str, Any]], final: Mapping[str, Any]) -> None:
    """Give each trace header of ``final`` its new value, in the place of its first copy.

    Later copies, and headers whose new value is ``None``, are dropped; every other item keeps
    its place; a header not there yet is appended. The new list is built before ``pairs`` is
    touched, so a pair that cannot be compared leaves it as it was.
    """
    rewritten: list[Any] = []
    written: set[str] = set()
    for item in pairs:
        key = _trace_key(item, final)
        if key is None:
            rewritten.append(item)
        elif final[key] is not None and key not in written:
            rewritten.append((key, final[key]))
            written.add(key)
    rewritten.extend((key, value) for key, value in final.items() if value is not None and key not in written)
    if isinstance(pairs, list):
        pairs[:] = rewritten
    else:
        pairs.clear()
        pairs.extend(rewritten)


def _outgoing_baggage(container: MutableCarrier, key: str, value: str | None) -> str | None:
    """The ``baggage`` to write: ours merged with the container's, whose ``sentry-*`` members are stale."""
    existing = _existing_value(container, key)
    fits = value is None or len(value) <= MAX_BAGGAGE_LENGTH
    if fits and (existing is None or existing == value):  # nothing of the old one is missing
        return value
    text = _as_text(existing, MAX_BAGGAGE_LENGTH * 8)
    if fits and (text is None or has_only_sentry_members(text)):  # nothing of the old one to keep
        return value
    return merge_baggage(text, value or "") or None


def write(
    container: MutableCarrier,
    values: Mapping[str, str],
    *,
    keys: CarrierKeys = HEADER_KEYS,
    as_bytes: bool = False,
) -> None:
    """Make ``container`` carry the outgoing trace ``values`` (keyed by their HTTP header names).

    Afterwards it holds each trace header once at most, and no stale one: a trace header that
    ``values`` lacks is removed (a ``traceparent`` when none is written, a ``baggage`` whose
    members were all Sentry's), because a consumer would otherwise continue another trace, or
    this one with another trace's sampling values. An existing header is replaced in its place,
    later copies are dropped, every other header keeps its place. ``baggage`` is merged with the
    baggage already in the container, so third-party members survive; the result is capped at
    the W3C limit. ``as_bytes`` encodes values as UTF-8, for buses whose header values are bytes
    (Kafka). Every new value is known before the container is changed.
    """
    names = keys._names
    kind = type(container)
    if (kind is list or kind is dict) and not container:  # new headers: nothing to merge or remove
        if kind is list:
            cast("list[tuple[str, Any]]", container).extend(_new_headers(values, names, as_bytes))
        else:
            cast("dict[str, Any]", container).update(_new_headers(values, names, as_bytes))
        return
    is_mapping = kind is dict or (kind is not list and isinstance(container, MutableMapping))
    mapping = cast("MutableMapping[str, Any]", container) if is_mapping else None
    pairs = None if is_mapping else cast("MutableSequence[tuple[str, Any]]", container)
    if pairs is not None and len(pairs) == 0:
        pairs.extend(_new_headers(values, names, as_bytes))
        return
    final: dict[str, str | bytes | None] = {}
    for header in _TRACE_HEADERS:
        value = values.get(header)
        if header == BAGGAGE:
            value = _outgoing_baggage(container, names[header], value)
        final[names[header]] = (value.encode("utf-8") if as_bytes else value) if value else None
    if mapping is not None:
        for key, encoded in final.items():
            if encoded is None:
                mapping.pop(key, None)
            else:
                mapping[key] = encoded
    elif pairs is not None:
        _rewrite_pairs(pairs, final)


#: ``(values, names, as_bytes, pairs)`` of the last new headers written: a producer writes the
#: same values (the same object, from the SDK seam's cache) into message after message.
_last_new_headers: tuple[Any, Any, bool, tuple[tuple[str, Any], ...]] = (None, None, False, ())


def _new_headers(
    values: Mapping[str, str], names: Mapping[str, str], as_bytes: bool
) -> tuple[tuple[str, Any], ...]:
    """The ``(key, value)`` pairs that new headers get, built again only when ``values`` changes."""
    global _last_new_headers
    last_values, last_names, last_as_bytes, built = _last_new_headers
    if values is not last_values or names is not last_names or as_bytes is not last_as_bytes:
        built = tuple(_new_pairs(values, names, as_bytes))
        _last_new_headers = (values, names, as_bytes, built)
    return built


def _new_pairs(
    values: Mapping[str, str], names: Mapping[str, str], as_bytes: bool
) -> Iterable[tuple[str, Any]]:
    for header, value in values.items():
        if header == BAGGAGE and len(value) > MAX_BAGGAGE_LENGTH:
            value = merge_baggage(None, value)
        if value:
            yield names[header], value.encode("utf-8") if as_bytes else value
