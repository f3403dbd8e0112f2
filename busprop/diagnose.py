"""``busprop inspect``: what this process would do with the trace headers of one message.

A trace that breaks at a queue breaks for a handful of reasons: headers busprop cannot use, an
org check of sentry-sdk, a destination outside ``propagation_targets``. Rather than restate those
rules, the diagnosis runs busprop's own consumer path on the headers (:func:`continue_trace`,
then :func:`inject` inside it) under the application's sentry-sdk client and busprop options, with
envelopes kept in memory, and reports what came out. Each reason is read from the check busprop
or the SDK applies: the parsers and caps of :mod:`busprop.carrier`, the SDK's org check,
:func:`busprop.config.should_propagate`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from busprop import sdk
from busprop.carrier import (
    BAGGAGE,
    MAX_BAGGAGE_LENGTH,
    MAX_TRACE_HEADER_LENGTH,
    SENTRY_TRACE,
    TRACEPARENT,
    IncomingTrace,
    extract,
    parse_baggage,
    parse_sentry_trace,
    traceparent_to_sentry_trace,
    write,
)
from busprop.config import get_config
from busprop.processing import continue_trace
from busprop.publishing import inject
from busprop.testing import CapturingTransport

#: The variable many applications read ``traces_sample_rate`` from; sentry-sdk itself does not.
SAMPLE_RATE_VARIABLE = "SENTRY_TRACES_SAMPLE_RATE"

CONTINUED, FRESH_TRACE, NOT_FORWARDED = "continued", "fresh-trace", "not-forwarded"


class UsageError(ValueError):
    """The command line or the ``--config`` module cannot be used (exit status 2)."""


@dataclass
class Diagnosis:
    """What :func:`diagnose` found; ``verdict`` and ``reason`` say whether the trace goes through."""

    #: Each header given, by name: ``usable``, ``malformed`` or ``oversized``.
    headers: dict[str, str]
    #: The trace the message carries as the SDK reads it (``None``: none usable).
    incoming: sdk.TraceFacts | None
    #: The sentry-sdk and busprop options in force.
    process: dict[str, object]
    #: :data:`CONTINUED`, :data:`FRESH_TRACE` (here) or :data:`NOT_FORWARDED` (at the next hop).
    verdict: str
    #: A short code (``continued``, ``malformed-header``, ``org-mismatch``...) and its explanation.
    reason: str
    explanation: str
    #: The trace the message's processing ran in.
    trace: sdk.TraceFacts
    #: Whether this process records (sends) a transaction for the message, and why.
    recorded: bool
    recording: str
    #: Transactions of the trace this run would have sent to Sentry (0 without a DSN).
    transactions_would_send: int
    destination: str | None
    #: The trace headers a message sent from the processing would carry.
    forwarded: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """0 when the trace goes through this process, 1 when it breaks here or at the next hop."""
        return 0 if self.verdict == CONTINUED else 1


def load_configuration(module: str | None, environ: Mapping[str, str]) -> str:
    """Set sentry-sdk and busprop up as the application does; return who initialised the SDK.

    ``module`` (imported from the working directory too) may call ``sentry_sdk.init`` and
    ``busprop.configure``. When it does not initialise the SDK, it is initialised here the way
    an application without options would be: sentry-sdk reads ``SENTRY_DSN`` and its other
    variables itself, and ``SENTRY_TRACES_SAMPLE_RATE``, when set, gives ``traces_sample_rate``.
    Either way envelopes are kept in memory, never sent.
    """
    if module is not None:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(module)
        except Exception as error:
            raise UsageError(f"--config {module}: {type(error).__name__}: {error}") from error
        if sdk.client_initialised():
            sdk.keep_envelopes_local(CapturingTransport)
            return f"--config {module}"
    options: dict[str, object] = {"transport": CapturingTransport}
    rate = environ.get(SAMPLE_RATE_VARIABLE)
    if rate:
        try:
            options["traces_sample_rate"] = float(rate)
        except ValueError:
            raise UsageError(f"{SAMPLE_RATE_VARIABLE}={rate!r} is not a number") from None
    sdk.init(**options)
    return f"busprop inspect, from the environment ({SAMPLE_RATE_VARIABLE}: {rate or 'unset'})"


def _check(name: str, value: str | None) -> str | None:
    """``usable``, ``oversized`` or ``malformed``, by the parser busprop reads ``name`` with."""
    if value is None:
        return None
    if name == BAGGAGE:
        usable, limit = parse_baggage(value) is not None, MAX_BAGGAGE_LENGTH
    elif name == SENTRY_TRACE:
        usable, limit = parse_sentry_trace(value) is not None, MAX_TRACE_HEADER_LENGTH
    else:
        usable, limit = traceparent_to_sentry_trace(value) is not None, MAX_TRACE_HEADER_LENGTH
    if usable:
        return "usable"
    return "oversized" if len(value) > limit else "malformed"


def _describe_process(initialised_by: str) -> dict[str, object]:
    options = sdk.client_options()
    config = get_config()
    return {
        "sentry_sdk.init": initialised_by,
        "dsn": "set" if options.get("dsn") else "unset (nothing is sent)",
        "org_id": sdk.client_org_id(),
        "strict_trace_continuation": bool(options.get("strict_trace_continuation")),
        "traces_sample_rate": options.get("traces_sample_rate"),
        "traces_sampler": options.get("traces_sampler") is not None,
        "tracing_enabled": sdk.tracing_enabled(),
        "propagation_targets": list(config.propagation_targets),
        "write_traceparent": config.write_traceparent,
    }


def _why_fresh(headers: dict[str, str], incoming: IncomingTrace) -> tuple[str, str]:
    """Why no trace was continued: no usable header, or the SDK's org check refused it."""
    if incoming.sentry_trace is None:
        given = {name: verdict for name, verdict in headers.items() if name != BAGGAGE}
        for problem in ("oversized", "malformed"):
            names = [name for name, verdict in given.items() if verdict == problem]
            if names:
                limit = (
                    f" (longer than {MAX_TRACE_HEADER_LENGTH} characters)" if problem == "oversized" else ""
                )
                return f"{problem}-header", f"{' and '.join(names)} {problem}{limit}: busprop ignores it"
        return "no-trace-header", "neither sentry-trace nor traceparent was given"
    if sdk.org_allows_continuation(incoming):
        return "sdk-refused", "sentry-sdk started a new trace for a reason busprop inspect does not know"
    theirs = sdk.parse_incoming(incoming)
    their_org = theirs.sentry_items.get("org_id") if theirs is not None else None
    ours = sdk.client_org_id()
    if their_org is not None and ours is not None:
        return "org-mismatch", f"the baggage's org_id {their_org} is not this process's org {ours}"
    return (
        "strict-org-missing",
        "strict_trace_continuation is on and one org id is missing "
        f"(baggage: {their_org}, this process: {ours})",
    )


def _why_recorded(recorded: bool, incoming: sdk.TraceFacts | None, continued: bool) -> str:
    options = sdk.client_options()
    if not sdk.tracing_enabled():
        return "tracing disabled (no traces_sample_rate nor traces_sampler): ids propagate, no transaction"
    head = incoming.sampled if incoming is not None and continued else None
    if head is not None and options.get("traces_sampler") is None:
        return "the head sampled this trace" if recorded else "the head decided not to sample (-0): by design"
    chooser = "traces_sampler" if options.get("traces_sampler") is not None else "traces_sample_rate"
    return f"{'sampled' if recorded else 'not sampled'} by this process's {chooser}"


def diagnose(
    headers: Mapping[str, str],
    *,
    destination: str | None = None,
    system: str = "inspect",
    initialised_by: str = "",
) -> Diagnosis:
    """Continue the trace of ``headers`` with busprop's consumer path and report what came out.

    Call :func:`load_configuration` first. The processing's transaction, if sampled, goes to the
    in-memory transport, where it is counted.
    """
    checks = {name: verdict for name, value in headers.items() if (verdict := _check(name, value))}
    incoming = extract(headers)
    facts = sdk.parse_incoming(incoming)
    CapturingTransport.clear()
    processing = continue_trace(headers, system=system, destination=destination or system)
    forwarded: dict[str, str] = {}
    with processing:
        trace = sdk.continued_trace()
        recorded = sdk.span_sampled(processing.transaction)
        if destination is None:  # inject without its propagation_targets check
            values = sdk.outgoing_values(get_config().write_traceparent)
            if values:
                write(forwarded, values)
        else:
            inject(forwarded, destination=destination)
    continued = facts is not None and trace.trace_id == facts.trace_id
    notes: list[str] = []
    if continued:
        verdict, reason, explanation = CONTINUED, "continued", "the trace is continued"
    else:
        verdict, (reason, explanation) = FRESH_TRACE, _why_fresh(checks, incoming)
    if not forwarded and verdict == CONTINUED:
        verdict, reason = NOT_FORWARDED, "destination-excluded"
        explanation = f"{destination!r} matches no propagation_targets: no trace headers are written"
    if destination is None:
        notes.append("no --destination: propagation_targets were not checked")
    if checks.get(BAGGAGE) not in (None, "usable"):
        notes.append(
            f"baggage {checks[BAGGAGE]}: ignored, so the trace's sampling values and org id are lost"
        )
    if incoming.sentry_trace is not None and checks.get(SENTRY_TRACE) != "usable":
        notes.append("trace read from traceparent")
    sdk.flush()
    sent = [
        event
        for event in CapturingTransport.transactions()
        if event["_dsc"].get("trace_id") == trace.trace_id
    ]
    return Diagnosis(
        headers=checks,
        incoming=facts,
        process=_describe_process(initialised_by),
        verdict=verdict,
        reason=reason,
        explanation=explanation,
        trace=trace,
        recorded=recorded,
        recording=_why_recorded(recorded, facts, continued),
        transactions_would_send=len(sent),
        destination=destination,
        forwarded=forwarded,
        notes=notes,
    )


def render(diagnosis: Diagnosis) -> str:
    """The diagnosis as aligned text, one fact a line."""
    lines: list[str] = ["incoming"]
    for name, verdict in diagnosis.headers.items():
        lines.append(f"  {name:<28}{verdict}")
    lines += _trace_lines(diagnosis.incoming)
    lines.append("this process")
    lines += [f"  {name:<28}{_text(value)}" for name, value in diagnosis.process.items()]
    lines.append(f"{'verdict':<30}{diagnosis.verdict.upper()} ({diagnosis.reason})")
    lines.append(f"  {'why':<28}{diagnosis.explanation}")
    lines.append("  the trace of the processing:")
    lines += _trace_lines(diagnosis.trace)
    lines.append(f"  {'recorded here':<28}{'yes' if diagnosis.recorded else 'no'}: {diagnosis.recording}")
    sent = diagnosis.transactions_would_send
    lines.append(f"  {'would send':<28}{sent} transaction{'' if sent == 1 else 's'} (kept here, not sent)")
    lines.append(f"forwarded to {diagnosis.destination or '(any destination)'}")
    for name in (SENTRY_TRACE, BAGGAGE, TRACEPARENT):
        if name in diagnosis.forwarded:
            lines.append(f"  {name:<28}{diagnosis.forwarded[name]}")
    if not diagnosis.forwarded:
        lines.append("  (no trace headers)")
    lines += [f"note: {note}" for note in diagnosis.notes]
    return "\n".join(lines)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return "-" if value is None else str(value)


def _trace_lines(facts: sdk.TraceFacts | None) -> list[str]:
    if facts is None:
        return ["  (no usable trace)"]
    sampled = {True: "yes (-1)", False: "no (-0)", None: "undecided (no flag)"}[facts.sampled]
    items = facts.sentry_items
    return [
        f"  {'trace id':<28}{facts.trace_id}",
        f"  {'parent span id':<28}{facts.parent_span_id}",
        f"  {'sampled':<28}{sampled}",
        f"  {'sample_rate':<28}{items.get('sample_rate', '-')}",
        f"  {'sample_rand':<28}{items.get('sample_rand', '-')}",
        f"  {'org id':<28}{items.get('org_id', '-')}",
        f"  {'third-party baggage':<28}{', '.join(facts.third_party) or '-'}",
    ]


def as_json(diagnosis: Diagnosis) -> dict[str, object]:
    """The diagnosis as plain data for ``--json``."""

    def trace(facts: sdk.TraceFacts | None) -> dict[str, object] | None:
        if facts is None:
            return None
        return {
            "trace_id": facts.trace_id,
            "parent_span_id": facts.parent_span_id,
            "sampled": facts.sampled,
            "sample_rate": facts.sentry_items.get("sample_rate"),
            "sample_rand": facts.sentry_items.get("sample_rand"),
            "org_id": facts.sentry_items.get("org_id"),
            "baggage": dict(facts.sentry_items),
            "third_party_baggage": list(facts.third_party),
        }

    return {
        "headers": diagnosis.headers,
        "incoming": trace(diagnosis.incoming),
        "process": diagnosis.process,
        "verdict": diagnosis.verdict,
        "reason": diagnosis.reason,
        "explanation": diagnosis.explanation,
        "trace": trace(diagnosis.trace),
        "recorded": diagnosis.recorded,
        "recording": diagnosis.recording,
        "transactions_would_send": diagnosis.transactions_would_send,
        "destination": diagnosis.destination,
        "forwarded": diagnosis.forwarded,
        "notes": diagnosis.notes,
        "exit_status": diagnosis.exit_status,
    }
