"""Everything busprop asks of sentry-sdk, in one module.

busprop never re-implements what the SDK does: trace parsing, sampling, the frozen dynamic
sampling context and scopes are the SDK's. This module is the seam, so that the SDK's two ways of
recording spans are told apart here and nowhere else:

- classic (sentry-sdk 2.x by default): a message's processing is a transaction, its
  ``queue.process`` and ``queue.publish`` spans are children recorded in it and sent with it;
- span streaming (``sentry_sdk.init(trace_lifecycle="stream")`` from 2.66,
  ``_experiments={"trace_lifecycle": "stream"}`` before): the processing is a segment span, every
  span is sent on its own when it ends, span data are attributes and the statuses are ``ok`` and
  ``error``. The SDK's transaction API then returns no-op spans, so each function below asks which
  mode the client is in and uses that mode's API.

Callers get a span of either kind back and hand it to the functions here (:func:`set_span_data`,
:func:`set_span_status`, :func:`finish_span`), never to the span's own methods.
"""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import sentry_sdk
from sentry_sdk import tracing_utils
from sentry_sdk.envelope import Envelope as Envelope  # busprop.testing's transport keeps these
from sentry_sdk.integrations import DidNotEnable as _DidNotEnable
from sentry_sdk.integrations import Integration as _Integration
from sentry_sdk.scope import use_isolation_scope, use_scope
from sentry_sdk.tracing_utils import Baggage, PropagationContext, has_tracing_enabled
from sentry_sdk.transport import Transport as Transport  # busprop.testing's subclasses it
from sentry_sdk.utils import capture_internal_exceptions as _capture_internal_exceptions
from sentry_sdk.utils import event_from_exception

if TYPE_CHECKING:
    from sentry_sdk.traces import StreamedSpan
    from sentry_sdk.tracing import NoOpSpan, Span, Transaction
    from typing_extensions import TypeIs

from busprop.carrier import BAGGAGE, SENTRY_TRACE, TRACEPARENT, IncomingTrace
from busprop.client_cache import ClientCache, cache_of
from busprop.patching import Patches

logger = logging.getLogger("busprop")


def _optional_module(name: str) -> ModuleType | None:
    """A module of the SDK that only some of its versions have, or ``None``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


#: The transaction API: gone in sentry-sdk 3, which knows only span streaming.
_tracing: Any = _optional_module("sentry_sdk.tracing")
#: The span streaming API (2.59 and later).
_traces: Any = _optional_module("sentry_sdk.traces")
#: The streaming span classes: ``StreamedSpan`` and ``NoOpStreamedSpan`` in 2.x, ``Span`` and
#: ``NoOpSpan`` of ``sentry_sdk.traces`` in 3.x.
_STREAMED_SPAN: Any = getattr(_traces, "StreamedSpan", None) or getattr(_traces, "Span", None)
_NOOP_STREAMED_SPAN: Any = getattr(_traces, "NoOpStreamedSpan", None) or getattr(_traces, "NoOpSpan", None)
_has_span_streaming_enabled: Any = getattr(tracing_utils, "has_span_streaming_enabled", None)

#: A span busprop started or found current: a transaction or span (classic), a streamed span.
AnySpan: TypeAlias = "Span | StreamedSpan"
#: The SDK's scope, for annotations outside this module (which imports nothing of the SDK).
Scope: TypeAlias = sentry_sdk.Scope
#: What a message's processing runs in: a transaction (maybe a no-op one) or a segment span.
ProcessingSpan: TypeAlias = "Transaction | NoOpSpan | StreamedSpan"

#: The only statuses a streamed span has; classic statuses other than ``ok`` become ``error``.
STATUS_OK, STATUS_ERROR_STREAMED, STATUS_ERROR_CLASSIC = "ok", "error", "internal_error"


#: ``sentry_sdk.get_current_scope``, ``get_isolation_scope`` and ``get_client`` without the
#: module-level functions around them: every message and every patched call asks, several times.
_current_scope = sentry_sdk.Scope.get_current_scope
_isolation_scope = sentry_sdk.Scope.get_isolation_scope
_current_client = sentry_sdk.Scope.get_client


def streaming(options: Mapping[str, Any] | None = None) -> bool:
    """Whether the SDK streams spans (``options``: the current client's when not given).

    sentry-sdk 3 knows no other mode; 2.x streams when initialised with
    ``trace_lifecycle="stream"`` (or, before 2.66, ``_experiments={"trace_lifecycle": "stream"}``).
    """
    if _tracing is None:
        return _traces is not None
    if _has_span_streaming_enabled is None:
        return False
    if options is None:
        return _modes(_current_client())[1]
    return bool(_has_span_streaming_enabled(options))


def _modes(client: Any) -> tuple[bool, bool]:
    """``(tracing enabled, spans streamed)`` for ``client``: its options decide both once, and
    every message asks (kept in the client's cache)."""
    return _modes_of(client, cache_of(client))


def _modes_of(client: Any, cache: ClientCache) -> tuple[bool, bool]:
    modes = cache.modes
    if modes is None:
        options = client.options
        modes = cache.modes = (has_tracing_enabled(options), streaming(options))
    return modes


#: A span argument not looked up by the caller (``None`` is a lookup's answer: no current span).
_UNKNOWN: Any = object()


def _span_of(scope: sentry_sdk.Scope, streams: bool) -> Any:
    """The span current on ``scope`` in the client's mode (2.x keeps streamed spans apart)."""
    if streams and _tracing is not None:
        return scope.streamed_span
    return scope.span


def _set_span_of(scope: sentry_sdk.Scope, span: Any, streams: bool) -> None:
    if streams and _tracing is not None:
        scope.streamed_span = span
    else:
        scope.span = span


def _is_noop_streamed(span: Any) -> bool:
    return _NOOP_STREAMED_SPAN is not None and isinstance(span, _NOOP_STREAMED_SPAN)


#: Sentry's name for message-processing and publishing spans (``sentry_sdk.consts.OP``).
OP_PROCESS = "queue.process"
OP_PUBLISH = "queue.publish"
#: The op of the transaction a consumer's processing runs in (sentry-sdk's queue integrations name
#: theirs ``queue.task.<integration>``); each message is a ``queue.process`` span inside it.
OP_TASK = "queue.task.busprop"


def outgoing_values(with_traceparent: bool = False) -> Mapping[str, str] | None:
    """The ``sentry-trace`` and ``baggage`` values of the current span or propagation context.

    Two gaps of the SDK are filled here. With no active span, ``get_traceparent()`` drops the
    sampling flag; the flag of the continued trace is put back, so a consumer of an unsampled
    head publishes ``-0`` and the head's decision survives. And third-party baggage members of
    the continued trace are kept, where ``get_baggage()`` returns Sentry's members only.

    A producer usually sends many messages from one span (every message of an unsampled request,
    whose sends get no span of their own). A span's ids and decision are fixed when it starts
    and its transaction's baggage is frozen on first use, so the values of the last span asked
    about are reused while it stays the current span (with tracing enabled: otherwise the values
    are the propagation context's, which code inside the span may replace). The span is known
    by its ids and decision, so the cache keeps no span alive. In streaming mode the span is the
    current streamed span, whose segment holds the decision and the frozen baggage.
    """
    scope = _current_scope()
    client = scope.get_client()
    cache = cache_of(client)
    return _outgoing_values_of(scope, cache, _modes_of(client, cache), with_traceparent)


def sampled_parent_or_values(
    with_traceparent: bool, integration: str | None = None
) -> tuple[AnySpan | None, Mapping[str, str] | None] | None:
    """What a send asks first, in one lookup of scope and client: ``(parent, None)`` when the
    current span is sampled (the send's ``queue.publish`` span is its child, and the values are
    that span's, asked for once it started), else ``(None, values)``: :func:`outgoing_values`.
    ``None`` when ``integration`` (an identifier) is given and the client has not set it up."""
    scope = _current_scope()
    client = scope.get_client()
    if integration is not None and integration not in client.integrations:
        return None
    cache = cache_of(client)
    modes = cache.modes or _modes_of(client, cache)
    parent = scope.streamed_span if modes[1] and _tracing is not None else scope.span  # _span_of
    if parent is not None and parent.sampled and not _is_noop_streamed(parent):  # span_sampled
        return parent, None
    return None, _outgoing_values_of(scope, cache, modes, with_traceparent, parent)


def _outgoing_values_of(
    scope: sentry_sdk.Scope,
    cache: ClientCache,
    modes: tuple[bool, bool],
    with_traceparent: bool,
    span: Any = _UNKNOWN,
) -> Mapping[str, str] | None:
    """:func:`outgoing_values` given what the caller looked up (``span``: the current span, when known)."""
    key, baggage = _outgoing_key(scope, modes, with_traceparent, span)
    last_key, last_values, last_members = cache.last_outgoing
    if key is not None and key == last_key and _same_members(baggage, last_members):
        return last_values
    values = _outgoing_values(scope, cache, with_traceparent)
    # A ``None`` key never matches, so what it stores is never reused (and holds no span).
    cache.last_outgoing = (key, values, None if baggage is None else _members(baggage))
    return values


def _same_members(
    baggage: Baggage | None, members: tuple[Baggage, dict[str, Any], str | None] | None
) -> bool:
    """Whether ``baggage`` is the one ``members`` was taken from, its members unchanged. The key
    compared before says where the values came from: both are ``None`` (a span's) or neither."""
    if members is None:
        return baggage is None
    last, items, third_party = members
    return baggage is last and baggage.sentry_items == items and baggage.third_party_items == third_party


def _members(baggage: Baggage) -> tuple[Baggage, dict[str, Any], str | None]:
    """A frozen baggage's identity and members, by value: the SDK rewrites members in place
    (``sample_rate`` when a transaction starts in the trace)."""
    return baggage, dict(baggage.sentry_items), baggage.third_party_items


def _outgoing_key(
    scope: sentry_sdk.Scope, modes: tuple[bool, bool], with_traceparent: bool, span: Any = _UNKNOWN
) -> tuple[Hashable | None, Baggage | None]:
    """What the outgoing values depend on: the current span's ids and decision, with tracing
    enabled; otherwise the propagation context's ids and decision and its baggage, once built
    and frozen (compared by identity and members: the context may be given a new one, and the
    SDK rewrites members in place). ``None``: nothing to key on, the values are computed afresh."""
    tracing, streams = modes
    if tracing:
        if span is _UNKNOWN:
            span = _span_of(scope, streams)
        if span is not None:
            return ("span", span.trace_id, span.span_id, span.sampled, with_traceparent), None
    context = scope.get_active_propagation_context()
    baggage = context.baggage
    if baggage is None or baggage.mutable:
        return None, None
    return ("context", context.trace_id, context.span_id, context.parent_sampled, with_traceparent), baggage


def _traceparent(scope: sentry_sdk.Scope) -> str | None:
    """The ``sentry-trace`` value the SDK gives, with the continued trace's flag put back when
    it has none (no active span): the decision without the cost of the baggage."""
    traceparent = scope.get_traceparent()
    if traceparent and traceparent.count("-") == 1:
        sampled = scope.get_active_propagation_context().parent_sampled
        if sampled is not None:
            traceparent += "-1" if sampled else "-0"
    return traceparent


def _outgoing_values(
    scope: sentry_sdk.Scope, cache: ClientCache, with_traceparent: bool
) -> Mapping[str, str] | None:
    traceparent = _traceparent(scope)
    if not traceparent:
        return None
    values = {SENTRY_TRACE: traceparent}
    baggage = scope.get_baggage()
    if baggage is not None:
        serialized = _serialize(baggage, cache)
        if serialized:
            values[BAGGAGE] = serialized
    if with_traceparent:
        trace_id, span_id, *flag = traceparent.split("-")
        values[TRACEPARENT] = f"00-{trace_id}-{span_id}-{'01' if flag == ['1'] else '00'}"
    return values


def _serialize(baggage: Baggage, cache: ClientCache) -> str:
    """``baggage`` serialized with its third-party members, reusing the last result.

    Serializing (percent-encoding every member) is most of the cost of an inject. A producer
    sends many messages with the same frozen baggage, and a consumer forwards each message's
    copy of the same incoming one, so the last members and their serialization are kept and
    compared by value (which also sees the SDK rewriting a member in place).
    """
    items, third_party, serialized = cache.last_serialized
    if not baggage.mutable and baggage.third_party_items == third_party and baggage.sentry_items == items:
        return serialized
    serialized = baggage.serialize(include_third_party=True)
    cache.last_serialized = (dict(baggage.sentry_items), baggage.third_party_items, serialized)
    return serialized


def _incoming_context(incoming: IncomingTrace, cache: ClientCache | None = None) -> PropagationContext | None:
    """The SDK's propagation context for ``incoming``, parsed once per distinct header pair
    (the ``sentry-trace`` header's parent span id aside).

    ``PropagationContext.from_incoming_data`` is most of the cost of continuing a trace (about
    half when the baggage has no ``sample_rand`` and the SDK derives one from the trace id). A
    consumer often sees the same pair many times in a row: every message a producer sent from one
    unsampled span, or from the propagation context of a process with tracing disabled, or from
    many spans of one trace. What the SDK builds from a pair depends on the parent span id in
    one place only, the context's ``parent_span_id`` (the trace id, the decision, the baggage and
    whether the trace is continued at all do not), so a copy is given the message's own. The
    SDK's result is kept (at most ``ClientCache.PARSED_CONTEXTS`` per client: its options decide
    ``strict_trace_continuation``) and each message gets a copy, with its own span id and
    its own baggage (the SDK rewrites a baggage's ``sample_rate`` in place). A pair is kept from
    its second sighting on: a consumer of distinct traces (one per request upstream) then pays
    for no copy and no cache it would never hit. ``None`` when there is no trace to continue.
    """
    sentry_trace = incoming.sentry_trace
    if sentry_trace is None:
        return None
    if cache is None:
        cache = cache_of(_current_client())
    # The header without its parent span id: the messages one trace sends from many spans (a
    # sampled producer's ``queue.publish`` spans, a chain of consumers) share one parse.
    key = (sentry_trace[:32] + sentry_trace[49:], incoming.baggage)
    parsed = cache.parsed.get(key)
    if parsed is None:
        parsed = PropagationContext.from_incoming_data(incoming.as_headers())
        if cache.last_parsed_key != key:
            cache.last_parsed_key = key
            return parsed  # the SDK's own result, used by this message alone
        cache.parsed.put(key, parsed)
    context = _copy_context(parsed)
    if parsed.parent_span_id is not None:  # continued: the SDK took the parent from the header
        context.parent_span_id = sentry_trace[33:49]
    if parsed.baggage is not None:
        context.baggage = Baggage(
            dict(parsed.baggage.sentry_items), parsed.baggage.third_party_items, parsed.baggage.mutable
        )
    return context


_CONTEXT_SLOTS: tuple[str, ...] | None = getattr(PropagationContext, "__slots__", None)
#: The slots of the SDK's ``PropagationContext`` (2.x), copied one by one when they are all it has.
_KNOWN_CONTEXT_SLOTS = frozenset(
    ("_trace_id", "_span_id", "parent_span_id", "parent_sampled", "baggage", "custom_sampling_context")
)
_copies_known_slots = _CONTEXT_SLOTS is not None and set(_CONTEXT_SLOTS) == _KNOWN_CONTEXT_SLOTS


def _copy_context(parsed: PropagationContext) -> PropagationContext:
    """A shallow copy (``copy.copy`` goes through ``__reduce_ex__`` for a slotted class: 5x slower;
    a loop over the slots is still three times the six assignments)."""
    if _CONTEXT_SLOTS is None:
        return copy.copy(parsed)
    context = PropagationContext.__new__(PropagationContext)
    if _copies_known_slots:
        context._trace_id = parsed._trace_id
        context._span_id = parsed._span_id
        context.parent_span_id = parsed.parent_span_id
        context.parent_sampled = parsed.parent_sampled
        context.baggage = parsed.baggage
        context.custom_sampling_context = parsed.custom_sampling_context
        return context
    for name in _CONTEXT_SLOTS:
        setattr(context, name, getattr(parsed, name))
    return context


def continue_propagation(
    scope: sentry_sdk.Scope,
    incoming: IncomingTrace,
    streams: bool | None = None,
    cache: ClientCache | None = None,
) -> bool | None:
    """Make the incoming trace the propagation context of ``scope``; return the head's decision.

    The SDK decides whether the trace is continued at all (``strict_trace_continuation``, a
    foreign ``org_id``), so the decision is read back from the context it built.

    An outer ``sentry_sdk.traces.continue_trace`` (what the SDK's streaming Celery, rq and arq
    integrations call) also gives the current scope a context of its own, which would shadow the
    isolation scope's: the message's context then replaces it there as well, as the SDK's
    ``continue_trace`` of streaming mode does. ``streams`` and ``cache``: the client's mode and
    cache, when the caller looked them up already.
    """
    current = _current_scope()
    streams = streaming() if streams is None else streams
    return _continue_on(scope, current, incoming, streams, cache).parent_sampled


def _continue_on(
    scope: sentry_sdk.Scope,
    current: sentry_sdk.Scope,
    incoming: IncomingTrace,
    streams: bool,
    cache: ClientCache | None,
) -> PropagationContext:
    """:func:`continue_propagation` given the current scope; the context it set."""
    context = _incoming_context(incoming, cache)
    if context is None:
        scope.generate_propagation_context(incoming.as_headers())
        context = scope.get_active_propagation_context()
    else:
        # Private: the SDK has no public setter for a context already parsed (its
        # generate_propagation_context would parse the headers again); tests/test_seam.py lists it.
        scope._propagation_context = context
    if current is not scope and current._propagation_context is not None:
        current._propagation_context = context
    # A span active where the message is processed (the server's, a batch's) is not the
    # message's parent: outgoing messages must carry the continued trace, not that span's.
    _set_span_of(current, None, streams)
    return context


#: What processing a message needs: nothing but the propagation context, an unsampled transaction
#: (segment) that only carries the head's "no" onward, or a transaction (segment) the SDK samples.
NO_TRANSACTION, UNSAMPLED_TRANSACTION, SAMPLED_TRANSACTION = 0, 1, 2


def continue_sent_trace(values: Mapping[str, str] | None) -> None:
    """Link what the current scope reports to the trace a message was sent with: ``values`` as
    :func:`outgoing_values` gave them for the send. The scope's propagation context becomes that
    trace (its id, the decision, the baggage) with the sending span's id as its own, and its span
    is cleared (a span current here is not the send's). For a failure reported after the send, in
    a fork of the scopes, where only the values were kept (no span, no scope of the send's)."""
    if not values:
        return
    sent = tracing_utils.extract_sentrytrace_data(values.get(SENTRY_TRACE))
    if sent is None:
        return
    baggage = values.get(BAGGAGE)
    trace_id, span_id, sampled = sent["trace_id"], sent["parent_span_id"], sent["parent_sampled"]
    context = PropagationContext(
        trace_id=trace_id if isinstance(trace_id, str) else None,
        span_id=span_id if isinstance(span_id, str) else None,
        parent_sampled=sampled if isinstance(sampled, bool) else None,
        baggage=Baggage.from_incoming_header(baggage) if baggage else None,
    )
    scope = _current_scope()
    scope._propagation_context = context  # Private: see _continue_on.
    _set_span_of(scope, None, streaming())


def continue_message(
    scope: sentry_sdk.Scope, incoming: IncomingTrace, *, name: str, origin: str
) -> tuple[int, ProcessingSpan | None]:
    """Continue ``incoming`` on ``scope`` (:func:`continue_propagation`) and say which
    transaction processing the message needs, with the unsampled one already current.

    Tracing disabled: none; the SDK's HTTP integrations then propagate from the scope's
    propagation context. An unsampled head (and no ``traces_sampler`` that could overrule it):
    a transaction that is never sampled (:func:`start_unsampled_transaction`), because with
    tracing enabled the SDK's HTTP integrations take their headers from the current span and send
    nothing without one; building it directly costs a fraction of ``start_transaction``.
    Otherwise (``SAMPLED_TRANSACTION``, ``None``): the SDK decides, as for any transaction. The
    client, its cache and its modes are looked up once, for all of it: this runs per message.
    """
    current = _current_scope()
    client = current.get_client()
    cache = cache_of(client)
    tracing, streams = cache.modes or _modes_of(client, cache)
    context = _continue_on(scope, current, incoming, streams, cache)
    if not tracing:
        return NO_TRANSACTION, None
    if context.parent_sampled is False and client.options.get("traces_sampler") is None:
        return UNSAMPLED_TRANSACTION, _start_unsampled(context, current, name, origin, streams)
    return SAMPLED_TRANSACTION, None


def _transaction_from_context(
    scope: sentry_sdk.Scope, *, name: str, origin: str, sampled: bool | None = None
) -> Transaction:
    """A transaction in the trace :func:`continue_propagation` set on ``scope`` (classic mode).

    Built as ``continue_trace`` builds it, from the propagation context already there:
    ``continue_trace`` would parse the headers a second time.
    """
    return _transaction_of(scope.get_active_propagation_context(), name=name, origin=origin, sampled=sampled)


def _transaction_of(
    context: PropagationContext, *, name: str, origin: str, sampled: bool | None = None
) -> Transaction:
    transaction: Transaction = _tracing.Transaction(
        op=OP_TASK,
        name=name,
        source=_TASK_SOURCE,
        origin=origin,
        trace_id=context.trace_id,
        parent_span_id=context.parent_span_id,
        parent_sampled=context.parent_sampled,
        sampled=sampled,
        baggage=context.baggage,
        same_process_as_parent=False,
    )
    return transaction


#: The source of a message's transaction name (``TransactionSource.TASK``), looked up once.
_TASK_SOURCE: Any = None if _tracing is None else _tracing.TransactionSource.TASK


def _start_segment(name: str, origin: str, data: Mapping[str, Any]) -> StreamedSpan:
    """Start a segment (streaming mode's transaction) in the trace continued on the current scope.

    ``parent_span=None``: whatever span is current around the message is not its parent. The SDK
    samples it; an unsampled segment is a no-op span that still propagates the decision.
    """
    attributes = {"sentry.op": OP_TASK, "sentry.origin": origin, "sentry.segment.name.source": "task"}
    attributes.update(data)
    segment: StreamedSpan = _traces.start_span(name=name, attributes=attributes, parent_span=None)
    return segment


def start_unsampled_transaction(
    scope: sentry_sdk.Scope, *, name: str, origin: str, streams: bool | None = None
) -> ProcessingSpan:
    """Make a never-sampled transaction current: what the SDK propagates inside it says ``-0``.

    It is set on the current scope of the message's isolation scope, which takes it away when
    the processing ends; :func:`drop_unsampled_transaction` then accounts for it. In streaming
    mode the SDK's segment for an unsampled parent is that span already.
    """
    streams = streaming() if streams is None else streams
    return _start_unsampled(scope.get_active_propagation_context(), _current_scope(), name, origin, streams)


def _start_unsampled(
    context: PropagationContext, current: sentry_sdk.Scope, name: str, origin: str, streams: bool
) -> ProcessingSpan:
    """:func:`start_unsampled_transaction` in ``context``, made current on ``current``."""
    if streams:
        return _start_segment(name, origin, {})
    transaction = _transaction_of(context, name=name, origin=origin, sampled=False)
    current.span = transaction
    return transaction


def drop_unsampled_transaction(transaction: ProcessingSpan | None = None) -> None:
    """Count an unsampled transaction in the SDK's client reports, as its ``finish()`` does.

    ``finish()`` itself also writes a debug log record per call, a third of the unsampled path's
    cost; the reports Sentry receives are the same. A streamed no-op segment is ended instead:
    that reports it and takes it off the scope.
    """
    if transaction is not None and _is_streamed(transaction):
        transaction.end()
        return
    client = _current_client()
    transport = client.transport
    if transport is not None and client.is_active():
        reason = "backpressure" if client.monitor and client.monitor.downsample_factor > 0 else "sample_rate"
        transport.record_lost_event(reason, data_category="transaction")
        transport.record_lost_event(reason, data_category="span")


def start_process_transaction(
    scope: sentry_sdk.Scope,
    *,
    name: str,
    origin: str,
    data: dict[str, Any],
    sampling_context: dict[str, Any],
) -> ProcessingSpan:
    """Start (enter) the transaction of a message's processing; the SDK samples it.

    In streaming mode it is a segment span with ``data`` as attributes, and ``sampling_context``
    reaches ``traces_sampler`` through the scope (the SDK's ``set_custom_sampling_context``).
    """
    if streaming():
        sentry_sdk.Scope.set_custom_sampling_context(sampling_context)
        return _start_segment(name, origin, data)
    transaction = _transaction_from_context(scope, name=name, origin=origin)
    if data:
        transaction.update_data(data)
    started = sentry_sdk.start_transaction(transaction, custom_sampling_context=sampling_context)
    started.__enter__()
    return started


def hold_propagation(scope: sentry_sdk.Scope) -> None:
    """Make the trace continued on ``scope`` what the SDK propagates, for work that is no message.

    With tracing enabled the SDK's HTTP integrations send no decision without a current span, so
    a span stands for the trace and its decision. It is never started with ``start_transaction``
    (in streaming mode it is the SDK's no-op span), so nothing under it is recorded or sent, and
    never finished: it lives on the current scope of the isolation scope that holds the work, and
    goes with it.
    """
    if not has_tracing_enabled(_current_client().options):
        return
    context = scope.get_active_propagation_context()
    sampled = context.parent_sampled
    current = _current_scope()
    if streaming():
        # Starting it sets it current on ``current``; it is never ended.
        # Only what propagation reads: nothing else of it is ever looked at.
        _NOOP_STREAMED_SPAN(
            scope=current, trace_id=context.trace_id, baggage=context.baggage, sampled=sampled
        )
        return
    current.span = _transaction_from_context(scope, name="propagation", origin="manual", sampled=sampled)


def sampled_parent() -> AnySpan | None:
    """The current span when it is sampled (and recorded): the parent a ``queue.publish`` span needs."""
    parent = _span_of(_current_scope(), streaming())
    return parent if span_sampled(parent) else None


def start_child_span(
    parent: AnySpan | ProcessingSpan, *, op: str, name: str, origin: str, data: dict[str, Any]
) -> AnySpan:
    """Start (enter) a span under ``parent``: a message's ``queue.process`` or ``queue.publish``.

    It becomes the current span (what is published inside it is its child) until it is finished.
    """
    if _is_streamed(parent):
        attributes = {"sentry.op": op, "sentry.origin": origin}
        attributes.update(data)
        streamed: StreamedSpan = _traces.start_span(name=name, attributes=attributes, parent_span=parent)
        return streamed
    span = parent.start_child(op=op, name=name, origin=origin)
    span.update_data(data)
    span.__enter__()
    return span


def _is_streamed(span: object) -> TypeIs[StreamedSpan]:
    """Whether ``span`` is a streamed span; type checkers then know which API it has."""
    return _STREAMED_SPAN is not None and isinstance(span, _STREAMED_SPAN)


def set_span_data(span: AnySpan | NoOpSpan, key: str, value: Any) -> None:
    """Set one item of span data (an attribute of a streamed span)."""
    if _is_streamed(span):
        span.set_attribute(key, value)
    else:
        span.set_data(key, value)


def set_span_status(span: AnySpan | NoOpSpan, status: str) -> None:
    """Set Sentry's ``status`` on ``span``; a streamed span knows ``ok`` and ``error`` only."""
    if _is_streamed(span):
        span.status = STATUS_OK if status == STATUS_OK else STATUS_ERROR_STREAMED
    else:
        span.set_status(status)


def span_op(span: AnySpan | NoOpSpan) -> str | None:
    """The op of ``span`` (a streamed span's ``sentry.op`` attribute)."""
    if _is_streamed(span):
        op = span.get_attributes().get("sentry.op")
        return op if isinstance(op, str) else None
    return span.op


def finish_span(span: AnySpan | NoOpSpan, error: BaseException | None = None) -> None:
    """Exit ``span`` with Sentry's status: ``ok``, or ``internal_error`` (streaming: ``error``).

    A transaction without a status is stored as ``unknown``, which Sentry's Queues page counts as
    a failure; a status set before (by the user, by a Celery task's state) is kept. The span that
    was current when ``span`` started is current again.
    """
    if span.status is None:
        span.set_status(STATUS_OK)  # what ``error`` does not fail (a clean ``SystemExit``) is ok
    if error is None:
        span.__exit__(None, None, None)
    else:
        span.__exit__(type(error), error, error.__traceback__)


def finish_span_elsewhere(span: AnySpan | NoOpSpan, *, failed: bool) -> None:
    """Finish a span that is no longer current (``ok`` unless a status was set, or failed).

    A classic span is finished without touching the current span. A streamed span puts back, on
    the scope it started on, the span that was current when it started (the SDK offers no other
    end): callers make that span current again before.
    """
    if failed:
        set_span_status(span, STATUS_ERROR_CLASSIC)
    elif span.status is None:
        set_span_status(span, STATUS_OK)
    if _is_streamed(span):
        span.end()
    else:
        span.finish()


def fail_current_span() -> None:
    """Mark the current span and its transaction failed, for an error the caller does not see.

    aio-pika's RPC server turns the function's exception into an error reply, so the processing
    around it ends without one.
    """
    span = _span_of(_current_scope(), streaming())
    if span is None:
        return
    set_span_status(span, STATUS_ERROR_CLASSIC)
    # Private: a streamed span has no public accessor for its segment; tests/test_seam.py lists it.
    segment = span._segment if _is_streamed(span) else span.containing_transaction
    if segment is not None:
        set_span_status(segment, STATUS_ERROR_CLASSIC)


def capture_exception(error: BaseException, *, mechanism: str, handled: bool = False) -> None:
    """Report ``error`` with a mechanism naming busprop, unhandled by default (a consumer raised)."""
    client = _current_client()
    if not client.is_active():
        return
    described = {"type": mechanism, "handled": handled}
    if _tracing is None:  # sentry-sdk 3 reads the client's options itself
        event, hint = event_from_exception(error, mechanism=described)
    else:
        event, hint = event_from_exception(error, client_options=client.options, mechanism=described)
    sentry_sdk.capture_event(event, hint=hint)


def integration_enabled(integration: type[_Integration] | str) -> bool:
    """Whether the current client has ``integration`` (a class or its identifier) set up."""
    identifier = integration if type(integration) is str else integration.identifier  # type: ignore[union-attr]
    return identifier in _current_client().integrations


def enabled_integrations() -> Mapping[str, _Integration]:
    """The integrations the current client has set up, by identifier (one lookup for several)."""
    return _current_client().integrations


def enabled_integration_attribute(identifier: str, name: str) -> Any:
    """Attribute ``name`` of the integration ``identifier`` the current client has set up, or ``None``.

    How an adapter reads the options its Integration was built with, per message: two lookups.
    """
    return getattr(_current_client().integrations.get(identifier), name, None)


def user_listed_integration(identifier: str) -> bool:
    """Whether the current client's ``integrations=[...]`` option listed ``identifier``."""
    listed = _current_client().options.get("integrations") or ()
    return any(getattr(integration, "identifier", None) == identifier for integration in listed)


#: For each integration that leads, the auto-enabled integration it deactivates (see below).
_deactivated_by: dict[str, str] = {}


def _leave_out_deactivated(
    setup_integrations: Any, _instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The SDK's choice of a client's integrations, less those a listed busprop integration leads."""
    enabled = setup_integrations(*args, **kwargs)
    with _capture_internal_exceptions():
        integrations = args[0] if args else kwargs.get("integrations")
        listed = {getattr(integration, "identifier", None) for integration in integrations or ()}
        for lead, other in _deactivated_by.items():
            if lead in enabled and other in enabled and other not in listed:
                del enabled[other]
                logger.info("busprop: %s leads; sentry-sdk's %s integration is left out", lead, other)
    return enabled


def _client_module() -> Any:
    from sentry_sdk import client

    return client


#: The one patch busprop puts on sentry-sdk itself, installed by the busprop Integrations that
#: lead over one of the SDK's (:func:`deactivate_auto_enabled`), through the same mechanism as
#: every client library patch. Not private, but not an extension point either: the SDK has no
#: public hook between choosing a client's integrations and setting them up.
_DEACTIVATING = Patches("busprop.sdk", [(_client_module(), "setup_integrations", _leave_out_deactivated)])


def deactivate_auto_enabled(leader: str, deactivated: str) -> bool:
    """From the next ``sentry_sdk.init`` on, a client with ``leader`` leaves ``deactivated`` out,
    unless the user listed ``deactivated`` in ``integrations=[...]``.

    sentry-sdk does the same for its own integrations (its LangChain integration deactivates its
    OpenAI one), but its table is not open to other integrations, and ``disabled_integrations``
    only acts the first time an integration is set up in a process. So the function that picks a
    client's integrations is wrapped: the integration left out stays patched, and every patch of
    it asks the client for it first, so it does nothing for that client. Returns ``False`` when
    this SDK has no such function (the caller then says so and steps aside).
    """
    if getattr(_client_module(), "setup_integrations", None) is None:
        return False
    _deactivated_by[leader] = deactivated
    _DEACTIVATING.install()
    return True


def restore_auto_enabled(leader: str) -> None:
    """Undo :func:`deactivate_auto_enabled` for ``leader``; the SDK is left as it was once none is left."""
    _deactivated_by.pop(leader, None)
    if not _deactivated_by:
        _DEACTIVATING.uninstall()


def forget_integration(identifier: str) -> None:
    """Let a later ``sentry_sdk.init`` set an uninstalled integration up again.

    sentry-sdk sets each integration up once per process and records it in module-level sets;
    an adapter's ``uninstall()`` restores the client library and then clears that record.
    """
    from sentry_sdk import integrations

    # Private: the SDK has no public way to set an integration up again after it was set up once;
    # tests/test_seam.py lists both names.
    integrations._installed_integrations.discard(identifier)
    integrations._processed_integrations.discard(identifier)


# --- scopes, for adapters whose work outlives one call ---------------------------------------

#: The SDK's base class of integrations and its refusal, for busprop's Integrations.
Integration = _Integration
DidNotEnable = _DidNotEnable
#: The SDK's guard for its own work: anything raised inside is logged (``debug=True``), not raised.
capture_internal_exceptions = _capture_internal_exceptions

#: The current scope and the isolation scope, in that order.
Scopes = tuple[sentry_sdk.Scope, sentry_sdk.Scope]


#: A new isolation scope (and current scope) for one message's work: the SDK's own, called
#: directly (every message enters one).
isolation_scope: Callable[[], AbstractContextManager[sentry_sdk.Scope]] = sentry_sdk.isolation_scope


def current_scopes() -> Scopes:
    """The scopes work runs in now, to run later work in the same ones (:func:`in_scopes`)."""
    return _current_scope(), _isolation_scope()


def current_isolation_scope() -> sentry_sdk.Scope:
    """The isolation scope work runs in now."""
    return _isolation_scope()


@contextmanager
def in_scopes(scopes: Scopes) -> Iterator[None]:
    """Run a block in ``scopes`` (from another thread, task or callback), as they are."""
    scope, isolation = scopes
    with use_isolation_scope(isolation), use_scope(scope):
        yield


def in_isolation_scope(isolation: sentry_sdk.Scope) -> AbstractContextManager[sentry_sdk.Scope]:
    """Run a block in the isolation scope ``isolation`` and a fork of the current scope (what
    the block writes to its current scope stays in the block)."""
    return use_isolation_scope(isolation)


def current_span() -> AnySpan | None:
    """The span new spans and outgoing messages are children of, if any (in the client's mode)."""
    span: AnySpan | None = _span_of(_current_scope(), streaming())
    return span


def set_current_span(span: AnySpan | None) -> None:
    """Make ``span`` the current scope's span (``None``: none)."""
    _set_span_of(_current_scope(), span, streaming())


def current_client() -> Any:
    """The active client, as an opaque key (to remember what was said about it)."""
    return _current_client()


def client_options() -> Mapping[str, Any]:
    """The options the current client was initialised with."""
    return _current_client().options


# --- the sentry-sdk versions busprop is proven with --------------------------------------------

#: The oldest sentry-sdk busprop is tested with (pyproject.toml declares it; ``nox -s matrix`` runs
#: the core and a real-broker flow per bus on it). Older ones do not keep a continued trace's
#: frozen baggage: up to 2.73 the SDK overwrites its ``sample_rate`` with the local rate, so a
#: consumer forwards a rate the head never used; up to 2.46 the trace is not continued at all.
MIN_SDK_VERSION = (2, 74, 0)
#: The first major version busprop is not written for (3.0 streams spans).
UNSUPPORTED_SDK_MAJOR = 3

sdk_check_pending = True


def unsupported_sdk() -> str | None:
    """Why the installed sentry-sdk is outside the range busprop is tested with, or ``None``.

    Reads ``sentry_sdk.VERSION`` on every call; :func:`warn_if_unsupported_sdk` calls it once.
    """
    installed = str(sentry_sdk.VERSION)
    parsed = _version_tuple(installed)
    if parsed is not None and MIN_SDK_VERSION <= parsed < (UNSUPPORTED_SDK_MAJOR, 0, 0):
        return None
    required = ".".join(map(str, MIN_SDK_VERSION))
    return (
        f"busprop needs sentry-sdk>={required},<{UNSUPPORTED_SDK_MAJOR} and sentry-sdk {installed} "
        f'is installed; traces would not be continued correctly (pip install "sentry-sdk>={required},'
        f'<{UNSUPPORTED_SDK_MAJOR}")'
    )


def _version_tuple(version: str) -> tuple[int, ...] | None:
    """``"2.74.0"`` as ``(2, 74, 0)``, padded to three numbers; ``None`` when unparsable."""
    numbers: list[int] = []
    for part in version.split(".")[:3]:
        digits = part[: len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            return None
        numbers.append(int(digits))
        if digits != part:  # a pre-release such as "3.0.0a1": its numbers are enough
            break
    return tuple(numbers + [0] * (3 - len(numbers)))


def require_supported_sdk() -> None:
    """Refuse to set an Integration up on an SDK outside the range: ``sentry_sdk.init`` raises.

    The SDK re-raises :class:`DidNotEnable` for an integration the user passed, so the mismatch
    is an error at start-up, naming both versions, rather than traces silently left broken.
    """
    problem = unsupported_sdk()
    if problem is not None:
        raise DidNotEnable(problem)


def warn_if_unsupported_sdk() -> None:
    """Log one warning per process when the SDK is outside the range (the first call checks).

    For ``continue_trace`` and ``inject``, used without an Integration: their failures are logged
    at debug level only, so on an SDK that is too old nothing else would say why traces break.
    After the first call this is one global read.
    """
    global sdk_check_pending
    if sdk_check_pending:
        sdk_check_pending = False
        problem = unsupported_sdk()
        if problem is not None:
            logger.warning("%s", problem)


# --- what ``busprop inspect`` asks of the SDK ---------------------------------------------------


@dataclass(frozen=True)
class TraceFacts:
    """A trace as the SDK reads it: ids, the head's decision and the baggage's members."""

    trace_id: str
    parent_span_id: str | None
    sampled: bool | None
    #: The ``sentry-*`` members of the baggage, without the prefix (``sample_rand``, ``org_id``...).
    sentry_items: Mapping[str, str]
    #: The other members, as they were written.
    third_party: tuple[str, ...]


def parse_incoming(incoming: IncomingTrace) -> TraceFacts | None:
    """What the SDK reads from ``incoming``, before any check of whether to continue it."""
    data = tracing_utils.extract_sentrytrace_data(incoming.sentry_trace)
    if data is None:
        return None
    baggage = Baggage.from_incoming_header(incoming.baggage)
    sampled = data.get("parent_sampled")
    return TraceFacts(
        trace_id=str(data["trace_id"]),
        parent_span_id=str(data["parent_span_id"]),
        sampled=sampled if isinstance(sampled, bool) else None,
        sentry_items=dict(baggage.sentry_items),
        third_party=tuple(item for item in baggage.third_party_items.split(",") if item),
    )


def continued_trace() -> TraceFacts:
    """The trace the current scope is in: the propagation context a message continued."""
    context = _current_scope().get_active_propagation_context()
    baggage = context.baggage
    return TraceFacts(
        trace_id=context.trace_id,
        parent_span_id=context.parent_span_id,
        sampled=context.parent_sampled,
        sentry_items=dict(baggage.sentry_items) if baggage is not None else {},
        third_party=tuple(item for item in (baggage.third_party_items if baggage else "").split(",") if item),
    )


def org_allows_continuation(incoming: IncomingTrace) -> bool:
    """Whether the SDK's org check (``org_id``, ``strict_trace_continuation``) lets ``incoming`` in.

    The same predicate ``PropagationContext.from_incoming_data`` applies, so a diagnosis can name
    it as the reason a trace was not continued.
    """
    baggage = Baggage.from_incoming_header(incoming.baggage)
    # Private: the SDK has no public form of its strict trace continuation check;
    # tests/test_seam.py lists it.
    return bool(tracing_utils._should_continue_trace(baggage))


def client_org_id() -> str | None:
    """The org id of the current client: its ``org_id`` option, or the one in its DSN's host."""
    parsed = _current_client().parsed_dsn
    return None if parsed is None else parsed.org_id


def tracing_enabled() -> bool:
    """Whether the current client records transactions (``traces_sample_rate`` or ``traces_sampler``)."""
    return has_tracing_enabled(_current_client().options)


def span_sampled(span: ProcessingSpan | AnySpan | None) -> bool:
    """Whether ``span`` is recorded (and sent when it ends): a streamed no-op span is not, even
    when it carries a sampled head's decision (:func:`hold_propagation`'s)."""
    return span is not None and not _is_noop_streamed(span) and bool(span.sampled)


def client_initialised() -> bool:
    """Whether ``sentry_sdk.init`` has been called in this process."""
    return _current_client().is_active()


def init(**options: Any) -> None:
    """``sentry_sdk.init(**options)``: the SDK reads ``SENTRY_DSN`` and its other variables itself."""
    sentry_sdk.init(**options)


def flush() -> None:
    """Hand everything the client holds (streamed spans are sent in batches) to its transport."""
    sentry_sdk.flush()


def keep_envelopes_local(transport: type[Transport]) -> None:
    """Give the current client's envelopes to a new ``transport`` instead of Sentry (or Spotlight).

    For a diagnosis run with the application's own ``sentry_sdk.init``: every option stays as the
    application set it (the DSN too, so its org id), only where envelopes go changes.
    """
    client = _current_client()
    previous = client.transport
    if previous is None:  # no DSN: the client sends nothing anyway
        return
    client.transport = transport(client.options)
    client.spotlight = None
    previous.kill()
