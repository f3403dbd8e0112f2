"""A Celery worker for ``tests/test_http_hops.py``: its task makes an HTTP request from the task body.

Usage: ``http_hops_celery_app.py BROKER BACKEND QUEUE``. A solo worker with busprop's hook
(sentry-sdk's CeleryIntegration disabled, its HTTP client integrations on as in any app), capturing
to ``$BUSPROP_CAPTURE_DIR`` like ``celery_worker.py``. The task ``busprop_http_hops.call(url)``
records what busprop and sentry-sdk say about the current trace, then GETs ``url`` with urllib,
so the test can compare the request's trace headers with them.
"""

from __future__ import annotations

import sys
import urllib.request
from typing import Any

import sentry_sdk
from celery import shared_task
from sentry_sdk.integrations.celery import CeleryIntegration

import busprop
import busprop.celery
from busprop.testing import LOCAL_DSN
from tests.apps.celery_app import JsonLinesTransport, create_app

TASK = "busprop_http_hops.call"


@shared_task(name=TASK)
def call(url: str) -> dict[str, Any]:
    injected: dict[str, str] = {}
    busprop.inject(injected, destination="x")
    traceparent = sentry_sdk.get_traceparent()
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
    return {"injected": injected, "traceparent": traceparent}


def main() -> None:
    broker, backend, queue = sys.argv[1:4]
    sentry_sdk.init(
        dsn=LOCAL_DSN,
        transport=JsonLinesTransport,
        traces_sample_rate=1.0,
        disabled_integrations=[CeleryIntegration],
    )
    app = create_app(broker, backend, queue)
    busprop.celery.install(app)
    argv = ["worker", "-P", "solo", "-Q", queue, "-l", "WARNING", "-n", f"{queue}@%h"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    app.worker_main(argv=argv)


if __name__ == "__main__":
    main()
