"""What the fault tests' processes share: the SDK states under test, and a Celery app with two tasks.

A process under test starts with sentry-sdk in one of these states (``MODES``), chosen by name on its
command line, so "never initialised" really is a process where ``sentry_sdk.init`` was never called.
"""

from __future__ import annotations

import os
from typing import Any

import sentry_sdk
from celery import Celery
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.transport import Transport

from busprop.testing import LOCAL_DSN

#: none: never initialised; disabled: ``init()`` without a DSN; raising: a transport that raises;
#: bare: no SDK and no busprop at all (the baseline); busprop: tracing every message.
MODES = ("none", "disabled", "raising", "bare", "busprop")


class RaisingTransport(Transport):
    """A transport whose every send fails, as a broken network or a full disk would make it."""

    calls = 0

    def capture_envelope(self, envelope: Envelope) -> None:
        RaisingTransport.calls += 1
        marker = os.environ.get("FAULTS_TRANSPORT_CALLS")
        if marker:
            with open(marker, "a", encoding="utf-8") as file:
                file.write("1\n")
        raise RuntimeError("the transport is down")


class DroppingTransport(Transport):
    """A transport that sends nothing: the process records what it needs itself."""

    def capture_envelope(self, envelope: Envelope) -> None:
        return None


def init_sentry(mode: str) -> None:
    """Put sentry-sdk in ``mode``. sentry-sdk's own Celery integration stays off, so busprop leads."""
    assert mode in MODES, mode
    if mode in ("none", "bare"):
        return
    off: dict[str, Any] = {"disabled_integrations": [CeleryIntegration]}
    if mode == "disabled":
        sentry_sdk.init(**off)
    elif mode == "raising":
        sentry_sdk.init(dsn=LOCAL_DSN, transport=RaisingTransport, traces_sample_rate=1.0, **off)
    else:
        sentry_sdk.init(dsn=LOCAL_DSN, transport=DroppingTransport, traces_sample_rate=1.0, **off)


def create_app(broker: str, backend: str | None, queue: str) -> Celery:
    app = Celery("busprop_faults", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"polling_interval": 0.05},
        worker_hijack_root_logger=False,
        task_ignore_result=backend is None,
    )
    app.task(name="faults.identity")(identity)
    app.task(name="faults.record")(record)
    return app


def identity(payload: Any) -> Any:
    return payload


def record(sequence: int) -> int:
    """Appends ``sequence`` and the trace it runs in to ``$FAULTS_RECORD`` (one line per run)."""
    with open(os.environ["FAULTS_RECORD"], "a", encoding="utf-8") as file:
        file.write(f"{sequence} {sentry_sdk.get_traceparent() or '-'}\n")
    return sequence
