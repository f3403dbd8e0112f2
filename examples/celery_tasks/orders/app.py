"""The Celery app, Sentry and busprop, set up the same way in the producer and in the worker.

Broker and result backend come from ``ORDERS_BROKER_URL`` and ``ORDERS_RESULT_BACKEND`` (Redis on
127.0.0.1 by default; ``amqp://guest:guest@127.0.0.1:5672//`` works as the broker too). Sentry reads
``SENTRY_DSN`` (and ``SENTRY_SPOTLIGHT=1`` sends everything to a local Spotlight instead).
"""

from __future__ import annotations

import os

import sentry_sdk
from celery import Celery

import busprop.celery

REDIS = "redis://127.0.0.1:6379/0"

app = Celery(
    "orders",
    broker=os.environ.get("ORDERS_BROKER_URL", REDIS),
    backend=os.environ.get("ORDERS_RESULT_BACKEND", REDIS),
    include=["orders.tasks"],
)
app.conf.update(
    task_default_queue=os.environ.get("ORDERS_QUEUE", "orders"),
    broker_connection_retry_on_startup=True,
    result_expires=3600,
)


def init_sentry() -> None:
    """Initialise Sentry with busprop's Celery Integration, unless the host process already did.

    sentry-sdk turns its own CeleryIntegration on whenever Celery is installed; busprop's, listed
    here, leaves it out of the client, so each task is traced once, by busprop. A host process that
    initialised Sentry without busprop's Integration gets ``busprop.celery.install(app)`` instead.
    """
    if not sentry_sdk.get_client().is_active():
        sentry_sdk.init(
            dsn=os.environ.get("SENTRY_DSN"),
            traces_sample_rate=1.0,
            integrations=[busprop.celery.CeleryIntegration()],
        )
    if sentry_sdk.get_client().get_integration(busprop.celery.CeleryIntegration) is None:
        busprop.celery.install(app)


init_sentry()
