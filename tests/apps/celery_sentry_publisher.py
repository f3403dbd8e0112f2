"""A publisher that uses only sentry-sdk's own CeleryIntegration (no busprop), for interoperability.

Usage: ``celery_sentry_publisher.py BROKER BACKEND QUEUE CAPTURE_PATH``: enqueues one task inside a
transaction, waits for its result and writes what it captured to CAPTURE_PATH.
"""

from __future__ import annotations

import sys

import sentry_sdk

from busprop.testing import dump_captured, init_capturing
from tests.apps.celery_app import create_app


def main() -> None:
    broker, backend, queue, path = sys.argv[1:]
    init_capturing(traces_sample_rate=1.0)  # sentry-sdk enables its CeleryIntegration by itself
    app = create_app(broker, backend, queue)
    with sentry_sdk.start_transaction(name="sentry-sdk publisher", op="test"):
        result = app.tasks["busprop_tests.add"].delay(20, 22)
    assert result.get(timeout=20) == 42
    app.close()
    dump_captured(path)


if __name__ == "__main__":
    main()
