"""The span data Sentry's Queues view reads, built in one place for every adapter.

Keys are sentry-sdk's ``SPANDATA.MESSAGING_*`` names (``sentry_sdk.consts.SPANDATA``), plus the
OpenTelemetry messaging attributes an adapter knows (partition, offset, routing key), passed
through ``extra``. ``None`` values are left out so spans only claim what is known.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BODY_SIZE = "messaging.message.body.size"
RETRY_COUNT = "messaging.message.retry.count"
RECEIVE_LATENCY = "messaging.message.receive.latency"
OPERATION = "messaging.operation.type"


def messaging_data(
    *,
    system: str,
    destination: str,
    operation: str,
    message_id: str | None = None,
    body_size: int | None = None,
    retry_count: int | None = None,
    published_at: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Span data for one message. ``published_at`` is the publish time in epoch seconds."""
    data: dict[str, Any] = {SYSTEM: system, DESTINATION: destination, OPERATION: operation}
    if message_id is not None:
        data[MESSAGE_ID] = message_id
    if body_size is not None:
        data[BODY_SIZE] = body_size
    if retry_count is not None:
        data[RETRY_COUNT] = retry_count
    if published_at is not None:
        data[RECEIVE_LATENCY] = max(0.0, (time.time() - published_at) * 1000.0)
    if extra:
        data.update((key, value) for key, value in extra.items() if value is not None)
    return data
