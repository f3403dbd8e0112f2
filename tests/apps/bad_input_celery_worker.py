"""A real ``celery worker`` for tests/test_bad_input.py: its task returns what it saw of its message.

Usage: ``bad_input_celery_worker.py BROKER QUEUE``. The task ``bad_input.echo(payload)`` returns the
payload it received, the ``sentry-trace`` it would send on (busprop's inject, ``-0`` kept), its
transaction's span and parent span ids and sampling decision, and the current span's id (the
``queue.process`` span of a sampled transaction); what the worker would send to Sentry goes to
``$BUSPROP_CAPTURE_DIR`` (one JSON line per event).
"""

from __future__ import annotations

import sys
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration

import busprop
import busprop.celery
from busprop.testing import LOCAL_DSN
from tests.apps.celery_app import JsonLinesTransport, create_app


def echo(payload: Any) -> dict[str, Any]:
    outgoing: dict[str, str] = {}
    busprop.inject(outgoing, destination="bad-input")
    transaction = sentry_sdk.get_current_scope().transaction
    current = sentry_sdk.get_current_span()
    return {
        "payload": payload,
        "sentry_trace": outgoing.get("sentry-trace"),
        "span_id": transaction.span_id if transaction is not None else None,
        "parent_span_id": transaction.parent_span_id if transaction is not None else None,
        "sampled": transaction.sampled if transaction is not None else None,
        "current_span_id": current.span_id if current is not None else None,
    }


def main() -> None:
    broker, queue = sys.argv[1:3]
    sentry_sdk.init(
        dsn=LOCAL_DSN,
        transport=JsonLinesTransport,
        traces_sample_rate=1.0,
        disabled_integrations=[CeleryIntegration],
    )
    app = create_app(broker, broker, queue)
    app.task(name="bad_input.echo")(echo)
    busprop.celery.install(app)
    argv = ["worker", "-P", "solo", "-Q", queue, "-l", "WARNING", "-n", f"{queue}@%h"]
    app.worker_main(argv=[*argv, "--without-gossip", "--without-mingle", "--without-heartbeat"])


if __name__ == "__main__":
    main()
