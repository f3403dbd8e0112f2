"""A solo ``celery worker`` with sentry-sdk in a given state, for the fault tests.

Usage: ``faults_celery_worker.py MODE BROKER BACKEND|- QUEUE``; MODE is one of ``faults_common.MODES``.
busprop's hook is installed in every mode but ``bare``.
"""

from __future__ import annotations

import sys

import busprop.celery
from tests.apps.faults_common import create_app, init_sentry


def main() -> None:
    mode, broker, backend, queue = sys.argv[1:5]
    init_sentry(mode)
    app = create_app(broker, None if backend == "-" else backend, queue)
    if mode != "bare":
        busprop.celery.install(app)
    argv = ["worker", "-P", "solo", "-Q", queue, "-l", "WARNING", "-n", f"{queue}@%h"]
    app.worker_main(argv=[*argv, "--without-gossip", "--without-mingle", "--without-heartbeat"])


if __name__ == "__main__":
    main()
