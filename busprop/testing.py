"""Capturing what sentry-sdk would send, without a network.

The demo prints the trace it collects this way, and busprop's tests assert on it; users can do the
same in their own tests: ``sentry_sdk.init(dsn=..., transport=CapturingTransport)`` and read
:data:`CapturingTransport.envelopes`. A DSN is still needed, or ``public_key`` is missing from the
dynamic sampling context.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from busprop import sdk
from busprop.sdk import Envelope, Transport

#: A DSN that points nowhere; with :class:`CapturingTransport` nothing is sent to it.
LOCAL_DSN = "http://public@127.0.0.1/1"


class CapturingTransport(Transport):
    """A sentry-sdk transport that keeps every envelope in memory instead of sending it."""

    envelopes: ClassVar[list[Envelope]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)

    def capture_envelope(self, envelope: Envelope) -> None:
        with self._lock:
            CapturingTransport.envelopes.append(envelope)

    @classmethod
    def clear(cls) -> None:
        with cls._lock:
            cls.envelopes = []

    @classmethod
    def transactions(cls) -> list[dict[str, Any]]:
        """The transaction events captured so far, each with ``_dsc`` set to its envelope's DSC.

        In span streaming mode (``trace_lifecycle="stream"``) spans are sent one by one; each
        segment that was sent is given here in a transaction's shape, with the spans sent in it
        (its ``sentry.op``, ``sentry.origin`` and other attributes as ``op``, ``origin`` and
        ``data``; ``"_streamed": True``), so that one assertion fits both modes.
        """
        found = []
        with cls._lock:
            for envelope in cls.envelopes:
                for item in envelope.items:
                    if item.type == "transaction" and item.payload.json is not None:
                        event = dict(item.payload.json)
                        event["_dsc"] = (envelope.headers or {}).get("trace", {})
                        found.append(event)
        return found + _segments_as_transactions(cls.streamed_spans())

    @classmethod
    def streamed_spans(cls) -> list[dict[str, Any]]:
        """The spans streamed so far, in the shape of a transaction's spans, with ``_dsc`` each."""
        found = []
        with cls._lock:
            for envelope in cls.envelopes:
                for item in envelope.items:
                    payload = item.payload.json
                    if item.type == "span" and payload is not None:
                        dsc = (envelope.headers or {}).get("trace", {})
                        found += [_span_shape(span, dsc) for span in payload.get("items", ())]
        return found

    @classmethod
    def errors(cls) -> list[dict[str, Any]]:
        """The error events captured so far."""
        found = []
        with cls._lock:
            for envelope in cls.envelopes:
                for item in envelope.items:
                    if item.type == "event" and item.payload.json is not None:
                        found.append(dict(item.payload.json))
        return found


def _span_shape(span: dict[str, Any], dsc: dict[str, Any]) -> dict[str, Any]:
    """A streamed span's JSON as a classic span: attribute values unwrapped into ``data``."""
    data = {
        key: value["value"] if isinstance(value, dict) and "value" in value else value
        for key, value in (span.get("attributes") or {}).items()
    }
    return {
        "trace_id": span.get("trace_id"),
        "span_id": span.get("span_id"),
        "parent_span_id": span.get("parent_span_id"),
        "op": data.get("sentry.op"),
        "origin": data.get("sentry.origin"),
        "description": span.get("name"),
        "status": span.get("status"),
        "start_timestamp": span.get("start_timestamp"),
        "timestamp": span.get("end_timestamp"),
        "data": data,
        "is_segment": span.get("is_segment"),
        "_dsc": dsc,
    }


def _segments_as_transactions(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each streamed segment as a transaction event holding the other spans of its segment."""
    events = []
    for segment in spans:
        if not segment["is_segment"]:
            continue
        trace = {key: segment[key] for key in ("trace_id", "span_id", "op", "origin", "status", "data")}
        if segment["parent_span_id"] is not None:
            trace["parent_span_id"] = segment["parent_span_id"]
        children = [
            span
            for span in spans
            if not span["is_segment"] and span["data"].get("sentry.segment.id") == segment["span_id"]
        ]
        events.append(
            {
                "type": "transaction",
                "transaction": segment["description"],
                "contexts": {"trace": trace},
                "spans": children,
                "start_timestamp": segment["start_timestamp"],
                "timestamp": segment["timestamp"],
                "_dsc": segment["_dsc"],
                "_streamed": True,
            }
        )
    return events


def init_capturing(**options: Any) -> None:
    """``sentry_sdk.init`` with :class:`CapturingTransport` and :data:`LOCAL_DSN` (for test processes)."""
    CapturingTransport.clear()
    options.setdefault("dsn", LOCAL_DSN)
    options.setdefault("transport", CapturingTransport)
    sdk.init(**options)


def dump_captured(path: str) -> None:
    """Flush the SDK and write the captured transactions and errors to ``path`` as JSON.

    A test that runs producers and consumers as separate processes reads it back with
    ``json.load`` to assert on what each process would have sent.
    """
    import json

    sdk.flush()
    with open(path, "w", encoding="utf-8") as file:
        json.dump(
            {"transactions": CapturingTransport.transactions(), "errors": CapturingTransport.errors()},
            file,
            default=str,
        )
