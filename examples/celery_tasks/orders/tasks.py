"""The pipeline: validate, reserve stock and charge in a chain; then the confirmation and the
warehouse notification as a group. Charging enqueues the invoice itself."""

from __future__ import annotations

import time
from typing import Any

from orders.app import app

Order = dict[str, Any]


@app.task(name="orders.validate_order")
def validate_order(order: Order) -> Order:
    if not order.get("items"):
        raise ValueError(f"order {order['id']} has no items")
    return {**order, "total": sum(item["price"] * item["quantity"] for item in order["items"])}


@app.task(name="orders.reserve_stock")
def reserve_stock(order: Order) -> Order:
    time.sleep(0.01)  # the warehouse database
    return {**order, "reserved": True}


@app.task(name="orders.charge_payment", bind=True, max_retries=3)
def charge_payment(self: Any, order: Order) -> Order:
    time.sleep(0.02)  # the payment provider
    issue_invoice.delay(order["id"], order["total"])
    return {**order, "paid": True}


@app.task(name="orders.issue_invoice")
def issue_invoice(order_id: int, total: float) -> str:
    return f"INV-{order_id}-{total:.2f}"


@app.task(name="orders.send_confirmation")
def send_confirmation(order_id: int) -> str:
    time.sleep(0.005)  # the mail server
    return f"confirmation sent for order {order_id}"


@app.task(name="orders.notify_warehouse")
def notify_warehouse(order_id: int) -> str:
    return f"warehouse notified for order {order_id}"
