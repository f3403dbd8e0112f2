"""Runs the producer of ``examples/celery_tasks`` with capturing; usage: ``celery_example_producer.py PATH``.
Writes the captured transactions and the checkout's trace id to PATH."""

from __future__ import annotations

import json
import sys

import busprop.celery
from busprop.testing import CapturingTransport, init_capturing
from tests.processes import ROOT

sys.path.insert(0, str(ROOT / "examples" / "celery_tasks"))


def main() -> None:
    init_capturing(traces_sample_rate=1.0, integrations=[busprop.celery.CeleryIntegration()])
    from orders.app import app
    from orders.producer import checkout

    trace_id = checkout(timeout=30)
    app.close()
    with open(sys.argv[1], "w", encoding="utf-8") as file:
        json.dump(
            {"trace_id": trace_id, "transactions": CapturingTransport.transactions()}, file, default=str
        )


if __name__ == "__main__":
    main()
