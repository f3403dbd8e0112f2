"""The Celery leg: an order pipeline over Celery's in-memory broker, run by a worker in a thread.

checkout enqueues a chain (reserve stock, then charge the payment) and a group (receipt and
warehouse notification); the worker runs them in another thread, and the charge step enqueues an
invoice itself. Every task continues the trace from the message headers alone.
"""

from __future__ import annotations

import time
from typing import Any

TITLE = "Celery (in-memory broker, worker thread)"
ORDER = 20

QUEUE = "orders"


def reserve_stock(order_id: int) -> int:
    time.sleep(0.002)
    return order_id


def charge_payment(order_id: int) -> int:
    time.sleep(0.003)
    from celery import current_task

    current_task.app.tasks["demo.create_invoice"].delay(order_id)
    return order_id


def create_invoice(order_id: int) -> str:
    time.sleep(0.001)
    return f"invoice-{order_id}"


def send_receipt(order_id: int) -> str:
    time.sleep(0.001)
    return f"receipt-{order_id}"


def notify_warehouse(order_id: int) -> str:
    time.sleep(0.001)
    return f"picked-{order_id}"


TASKS = (reserve_stock, charge_payment, create_invoice, send_receipt, notify_warehouse)


def _create_app() -> Any:
    from celery import Celery

    app = Celery("busprop_demo", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        broker_transport_options={"polling_interval": 0.005},
        worker_hijack_root_logger=False,
    )
    for function in TASKS:
        app.task(name=f"demo.{function.__name__}")(function)
    return app


def _checkout(app: Any) -> None:
    from celery import chain, group

    tasks = app.tasks
    order = chain(tasks["demo.reserve_stock"].s(42), tasks["demo.charge_payment"].s()).apply_async()
    notices = group(tasks["demo.send_receipt"].s(42), tasks["demo.notify_warehouse"].s(42)).apply_async()
    order.get(timeout=5, interval=0.005)
    notices.get(timeout=5, interval=0.005)


def _wait_for_queue_to_drain(app: Any, timeout: float = 5.0) -> None:
    """The invoice is enqueued by a task: wait until the worker has taken it off the queue."""
    deadline = time.monotonic() + timeout
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while time.monotonic() < deadline and channel.queue_declare(QUEUE, passive=True).message_count:
            time.sleep(0.005)


def run() -> str | None:
    try:
        from celery.contrib.testing.worker import start_worker

        import busprop.celery
    except ImportError:
        return "celery is not installed (pip install 'busprop[celery]')"
    app = _create_app()
    busprop.celery.install(app)
    try:  # a failure raises: the leg failed
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="ERROR", shutdown_timeout=10):
            _checkout(app)
            _wait_for_queue_to_drain(app)
    finally:
        busprop.celery.uninstall()
        app.close()
    return None
