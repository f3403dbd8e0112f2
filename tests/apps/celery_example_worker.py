"""Runs ``examples/celery_tasks`` as its README says (``celery -A orders.app worker``), capturing what
Sentry would receive into ``$BUSPROP_CAPTURE_DIR``. Usage: ``celery_example_worker.py POOL``."""

from __future__ import annotations

import sys

import sentry_sdk

import busprop.celery
from busprop.testing import LOCAL_DSN
from tests.apps.celery_app import JsonLinesTransport
from tests.processes import ROOT

sys.path.insert(0, str(ROOT / "examples" / "celery_tasks"))


def main() -> None:
    sentry_sdk.init(
        dsn=LOCAL_DSN,
        transport=JsonLinesTransport,
        traces_sample_rate=1.0,
        integrations=[busprop.celery.CeleryIntegration()],
    )
    from orders.app import app

    queue = app.conf.task_default_queue
    app.worker_main(
        ["worker", "-P", sys.argv[1], "-c", "2", "-l", "WARNING", "-n", f"{queue}@%h", "--without-gossip"]
    )


if __name__ == "__main__":
    main()
