"""Celery quick start on Redis, as ``pip install "busprop[celery]"`` alone must run it.

Two processes, as in the documentation: ``celery -A quickstart_celery worker`` runs the task, and
``python quickstart_celery.py`` enqueues it inside a ``checkout`` transaction and waits for its
result; the task runs in the checkout's trace. Each process writes what Sentry would receive to
``$BUSPROP_CAPTURE`` (the worker when it shuts down). Redis is ``$REDIS_URL``; the queue is
``$QUICKSTART_QUEUE``.
"""

from __future__ import annotations

import os
from typing import Any

import sentry_sdk
from celery import Celery
from celery.signals import worker_shutdown
from sentry_sdk.integrations.celery import CeleryIntegration

import busprop.celery
from busprop.testing import dump_captured, init_capturing

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# in your service: sentry_sdk.init(dsn=..., traces_sample_rate=1.0, disabled_integrations=[CeleryIntegration])
init_capturing(traces_sample_rate=1.0, disabled_integrations=[CeleryIntegration])
app = Celery("shop", broker=REDIS_URL, backend=REDIS_URL)
app.conf.task_default_queue = os.environ.get("QUICKSTART_QUEUE", "shop")
busprop.celery.install(app)


@app.task(name="shop.charge")  # type: ignore[untyped-decorator]
def charge(order_id: int) -> int:
    print(f"consumed {sentry_sdk.get_traceparent()}")  # the checkout's trace (in the worker's log)
    return order_id


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _write_capture(**_: Any) -> None:
    dump_captured(os.environ["BUSPROP_CAPTURE"])


if __name__ == "__main__":
    with sentry_sdk.start_transaction(op="http.server", name="checkout") as checkout:
        result = charge.delay(42)  # a `queue.publish` span; the headers are written inside it
    print("produced", checkout.trace_id)
    assert result.get(timeout=30) == 42
    app.close()
    dump_captured(os.environ["BUSPROP_CAPTURE"])
