"""A real Celery worker process for busprop's tests: ``celery worker`` on the given broker and pool.

Usage: ``celery_worker.py BROKER BACKEND QUEUE POOL CONCURRENCY MODE [--beat SCHEDULE_FILE]``; MODE is
``busprop`` (busprop's hook, sentry-sdk's CeleryIntegration disabled), ``busprop-stream`` (the same
with span streaming), ``integration`` (a default init, sentry-sdk's CeleryIntegration auto-enabled,
with ``busprop.celery.CeleryIntegration()`` listed) or ``sentry`` (only sentry-sdk's integration). What the worker captures goes to ``$BUSPROP_CAPTURE_DIR``.
"""

from __future__ import annotations

import sys

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration

import busprop.celery
from busprop.testing import LOCAL_DSN
from tests.apps.celery_app import JsonLinesTransport, create_app


def main() -> None:
    broker, backend, queue, pool, concurrency, mode, *rest = sys.argv[1:]
    options: dict = {"dsn": LOCAL_DSN, "transport": JsonLinesTransport, "traces_sample_rate": 1.0}
    if mode == "busprop-stream":
        options["trace_lifecycle"] = "stream"
        mode = "busprop"
    if mode == "busprop":
        options["disabled_integrations"] = [CeleryIntegration]
    if mode == "integration":
        options["integrations"] = [busprop.celery.CeleryIntegration()]
    sentry_sdk.init(**options)
    app = create_app(broker, backend, queue)
    if mode == "busprop":
        busprop.celery.install(app)
    argv = ["worker", "-P", pool, "-c", concurrency, "-Q", queue, "-l", "WARNING", "-n", f"{queue}@%h"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if rest and rest[0] == "--beat":
        argv += ["-B", "-s", rest[1]]
    app.worker_main(argv=argv)


if __name__ == "__main__":
    main()
