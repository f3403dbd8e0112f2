"""Checkout: one Sentry transaction that enqueues the whole pipeline and waits for it.

Run from this directory with ``python -m orders.producer`` while a worker runs
(``celery -A orders.app worker``); it prints the trace id every task shares.
"""

from __future__ import annotations

import sentry_sdk
from celery import chain, group

from orders.app import app
from orders.tasks import charge_payment, notify_warehouse, reserve_stock, send_confirmation, validate_order

ORDER = {
    "id": 1001,
    "items": [{"sku": "mug", "price": 12.5, "quantity": 2}, {"sku": "tea", "price": 6.0, "quantity": 1}],
}


def checkout(order: dict = ORDER, timeout: float = 30) -> str:
    """Enqueue the pipeline for ``order`` inside a ``checkout`` transaction; returns its trace id."""
    with sentry_sdk.start_transaction(op="http.server", name="POST /checkout") as transaction:
        pipeline = chain(validate_order.s(order), reserve_stock.s(), charge_payment.s()).apply_async()
        notices = group(send_confirmation.s(order["id"]), notify_warehouse.s(order["id"])).apply_async()
        paid = pipeline.get(timeout=timeout)
        notices.get(timeout=timeout)
    print(f"order {paid['id']} paid ({paid['total']:.2f}); trace {transaction.trace_id}")
    return transaction.trace_id


def main() -> None:
    checkout()
    sentry_sdk.flush()
    app.close()


if __name__ == "__main__":
    main()
