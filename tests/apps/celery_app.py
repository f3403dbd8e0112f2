"""The Celery app busprop's tests run: its tasks, and a transport that writes what a worker captured.

Imported by the test module (the publishing side) and by ``celery_worker.py`` (the worker side),
so both register the same task names on an app bound to the broker under test.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import sentry_sdk
from celery import Celery, shared_task
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

TRACE_KEYS = ("sentry-trace", "baggage", "sentry-task-enqueued-time")


class JsonLinesTransport(Transport):
    """Appends each captured transaction, error and batch of streamed spans to
    ``$BUSPROP_CAPTURE_DIR/<pid>.jsonl`` at once, so prefork children and long-lived workers can be
    read while they run."""

    def capture_envelope(self, envelope: Envelope) -> None:
        directory = os.environ["BUSPROP_CAPTURE_DIR"]
        lines = []
        for item in envelope.items:
            if item.type in ("transaction", "event", "span") and item.payload.json is not None:
                dsc = (envelope.headers or {}).get("trace", {})
                lines.append(
                    json.dumps({"type": item.type, "event": item.payload.json, "dsc": dsc}, default=str)
                )
        if lines:
            with open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as file:
                file.write("\n".join(lines) + "\n")


def create_app(broker: str, backend: str, queue: str) -> Celery:
    app = Celery("busprop_tests", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"polling_interval": 0.05},
        result_expires=600,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=4,
    )
    if os.environ.get("BUSPROP_BEAT_EVERY"):
        every = float(os.environ["BUSPROP_BEAT_EVERY"])
        app.conf.beat_schedule = {"tick": {"task": "busprop_tests.tick", "schedule": every}}
    return app


def _seen_headers(request: Any) -> dict[str, Any]:
    """What trace headers a task received, at the top level and in the nested headers dict."""
    nested = request.headers or {}
    return {
        "top": {key: vars(request).get(key) for key in TRACE_KEYS},
        "nested": {key: nested.get(key) for key in TRACE_KEYS},
        "traceparent": sentry_sdk.get_traceparent(),
        "eta": request.eta,
    }


@shared_task(name="busprop_tests.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="busprop_tests.double")
def double(x: int) -> int:
    return x * 2


@shared_task(name="busprop_tests.total")
def total(values: list[int]) -> int:
    return sum(values)


@shared_task(name="busprop_tests.fail")
def fail() -> None:
    raise ValueError("boom")


@shared_task(name="busprop_tests.record_error")
def record_error(task_id: str) -> str:
    return task_id


@shared_task(name="busprop_tests.retry_once", bind=True, max_retries=3)
def retry_once(self: Any) -> int:
    if self.request.retries < 1:
        raise self.retry(countdown=0)
    return int(self.request.retries)


@shared_task(name="busprop_tests.echo", bind=True)
def echo(self: Any, *args: Any) -> dict[str, Any]:
    return _seen_headers(self.request)


@shared_task(name="busprop_tests.spawn", bind=True)
def spawn(self: Any) -> str:
    """Publishes a task from inside a task, for the head's decision to travel on."""
    return str(echo.delay().id)


@shared_task(name="busprop_tests.traceparent")
def traceparent(pause: float = 0.0) -> str | None:
    time.sleep(pause)
    return sentry_sdk.get_traceparent()


@shared_task(name="busprop_tests.tick")
def tick() -> None:
    return None
