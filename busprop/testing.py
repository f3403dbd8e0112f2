"""Capturing what sentry-sdk would send, without a network.

The demo prints the trace it collects this way, and busprop's tests assert on it; users can do the
same in their own tests: ``sentry_sdk.init(dsn=..., transport=CapturingTransport)`` and read
:data:`CapturingTransport.envelopes`. A DSN is still needed, or ``public_key`` is missing from the
dynamic sampling context.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

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
        """The transaction events captured so far, each with ``_dsc`` set to its envelope's DSC."""
        found = []
        with cls._lock:
            for envelope in cls.envelopes:
                for item in envelope.items:
                    if item.type == "transaction" and item.payload.json is not None:
                        event = dict(item.payload.json)
                        event["_dsc"] = (envelope.headers or {}).get("trace", {})
                        found.append(event)
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


def init_capturing(**options: Any) -> None:
    """``sentry_sdk.init`` with :class:`CapturingTransport` and :data:`LOCAL_DSN` (for test processes)."""
    import sentry_sdk

    CapturingTransport.clear()
    options.setdefault("dsn", LOCAL_DSN)
    options.setdefault("transport", CapturingTransport)
    sentry_sdk.init(**options)


def dump_captured(path: str) -> None:
    """Flush the SDK and write the captured transactions and errors to ``path`` as JSON.

    A test that runs producers and consumers as separate processes reads it back with
    ``json.load`` to assert on what each process would have sent.
    """
    import json

    import sentry_sdk

    sentry_sdk.flush()
    with open(path, "w", encoding="utf-8") as file:
        json.dump(
            {"transactions": CapturingTransport.transactions(), "errors": CapturingTransport.errors()},
            file,
            default=str,
        )
