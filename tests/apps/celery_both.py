"""busprop's hook and sentry-sdk's CeleryIntegration in one process, as after a plain ``sentry_sdk.init()``.

Usage: ``celery_both.py BROKER QUEUE CAPTURE_PATH``: runs one eager task, then publishes ``echo`` to a
worker, and writes what it captured, what the worker saw and whether busprop led.
"""

from __future__ import annotations

import json
import sys

import sentry_sdk

import busprop.celery
from busprop.testing import CapturingTransport, init_capturing
from tests.apps.celery_app import create_app


def main() -> None:
    broker, queue, path = sys.argv[1:]
    init_capturing(traces_sample_rate=1.0)  # sentry-sdk enables its CeleryIntegration by itself
    eager = create_app("memory://", "cache+memory://", "eager")
    eager.conf.task_always_eager = True
    app = create_app(broker, broker, queue)
    busprop.celery.install(app)
    eager.tasks["busprop_tests.add"].delay(1, 1).get()
    with sentry_sdk.start_transaction(name="root", op="test"):
        result = app.tasks["busprop_tests.echo"].delay()
    seen = result.get(timeout=20)
    sentry_sdk.flush()
    output = {
        "busprop_leading": busprop.celery.is_leading(),
        "seen": seen,
        "transactions": CapturingTransport.transactions(),
    }
    with open(path, "w", encoding="utf-8") as file:
        json.dump(output, file, default=str)
    app.close()


if __name__ == "__main__":
    main()
