"""sentry-sdk alone: what busprop asks of sentry-sdk for one message, written by hand around the bare
client, with no busprop code.

The benchmarks run it beside busprop so that a goal busprop misses can be read against what the SDK
work busprop's guarantees need costs by itself, in the same run: if this misses the goal too, the
cost the goal cannot absorb is sentry-sdk's; busprop's own cost is the difference between the two.

What busprop asks of the SDK, by mode (``"off"``: ``traces_sample_rate=None``; ``"unsampled"``: an
unsampled head; ``"sampled"``):

- consuming (:func:`processing`): an isolation scope per message, so that nothing of one message
  leaks into the next; the SDK's parse of the message's ``sentry-trace`` and ``baggage`` made the
  scope's propagation context; for an unsampled head, a never-sampled transaction made current (so
  that the SDK's own HTTP calls in the handler carry the head's ``-0``), counted as dropped; for a
  sampled head, the transaction and its ``queue.process`` span with the Queues data, status ``ok``
  on both.
- producing (:func:`publishing`): the two header values read from the SDK; under a sampled parent,
  inside a ``queue.publish`` span with the Queues data and status ``ok``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

#: The transaction op and origin busprop gives a consumed message (a Kafka record, here).
OP = "queue.task.busprop"
ORIGIN = "auto.queue.busprop.kafka"
#: The Queues key of an AMQP message's routing key (a publish span's ``extra``).
ROUTING_KEY = "messaging.rabbitmq.destination.routing_key"


def processing(
    headers: dict[str, str],
    name: str,
    mode: str,
    data: Mapping[str, Any] | None = None,
    origin: str = ORIGIN,
) -> AbstractContextManager[None]:
    """Around one message's handler: the SDK work busprop asks for to process it (``mode``: off,
    unsampled or sampled, as the module says; ``data``: the sampled span's Queues data). Returns
    the one context manager of that mode, so that no layer of this script's own is counted."""
    if mode == "sampled":
        return _sampled(headers, name, data or {}, origin)
    return _unsampled(headers, name, traced=mode == "unsampled")


@contextmanager
def _unsampled(headers: dict[str, str], name: str, traced: bool) -> Iterator[None]:
    import sentry_sdk
    from sentry_sdk.tracing import Transaction, TransactionSource

    with sentry_sdk.isolation_scope() as scope:
        scope.generate_propagation_context(headers)
        if traced:
            context = scope.get_active_propagation_context()
            sentry_sdk.get_current_scope().span = Transaction(
                op=OP,
                name=name,
                source=TransactionSource.TASK,
                trace_id=context.trace_id,
                parent_span_id=context.parent_span_id,
                parent_sampled=context.parent_sampled,
                sampled=False,
                baggage=context.baggage,
                same_process_as_parent=False,
            )
        yield
        if traced:
            client = sentry_sdk.get_client()
            reason = (
                "backpressure" if client.monitor and client.monitor.downsample_factor > 0 else "sample_rate"
            )
            client.transport.record_lost_event(reason, data_category="transaction")
            client.transport.record_lost_event(reason, data_category="span")


@contextmanager
def _sampled(headers: dict[str, str], name: str, data: Mapping[str, Any], origin: str) -> Iterator[None]:
    import sentry_sdk
    from sentry_sdk.tracing import TransactionSource

    with sentry_sdk.isolation_scope():
        transaction = sentry_sdk.continue_trace(
            headers, op=OP, name=name, source=TransactionSource.TASK, origin=origin
        )
        with sentry_sdk.start_transaction(transaction) as started:
            with sentry_sdk.start_span(op="queue.process", name=name, origin=origin) as span:
                span.update_data(dict(data))
                yield
                span.set_status("ok")
            started.set_status("ok")


@contextmanager
def publishing(
    destination: str,
    body_size: int,
    system: str,
    origin: str = ORIGIN,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, str]]:
    """Around one send: the trace headers sentry-sdk gives it, inside a ``queue.publish`` span with
    busprop's Queues data (``extra``: the client's own keys) when the current span is sampled (as
    busprop starts one only then)."""
    import sentry_sdk

    parent = sentry_sdk.get_current_span()
    if parent is None or not parent.sampled:
        yield _headers()
        return
    with sentry_sdk.start_span(op="queue.publish", name=destination, origin=origin) as span:
        span.update_data(
            {
                "messaging.system": system,
                "messaging.destination.name": destination,
                "messaging.operation.type": "publish",
                "messaging.message.body.size": body_size,
                **(extra or {}),
            }
        )
        yield _headers()
        span.set_status("ok")


def kafka_data(
    topic: str, partition: int, offset: int, body_size: int, timestamp_ms: float
) -> dict[str, Any]:
    """The Queues data busprop gives a consumed Kafka record's ``queue.process`` span."""
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": "process",
        "messaging.message.id": f"{topic}/{partition}/{offset}",
        "messaging.message.body.size": body_size,
        "messaging.message.receive.latency": max(0.0, time.time() * 1000 - timestamp_ms),
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
    }


def amqp_data(
    destination: str,
    message_id: str | None,
    body_size: int,
    redelivered: bool,
    published_at: float,
    routing_key: str,
    delivery_tag: int,
) -> dict[str, Any]:
    """The Queues data busprop gives a consumed AMQP message's ``queue.process`` span (a message
    id only when the message has one: pika's have none unless the publisher gives one)."""
    data = {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": destination,
        "messaging.operation.type": "process",
        "messaging.message.body.size": body_size,
        "messaging.message.retry.count": int(redelivered),
        "messaging.message.receive.latency": max(0.0, (time.time() - published_at) * 1000.0),
        ROUTING_KEY: routing_key,
        "messaging.rabbitmq.message.delivery_tag": delivery_tag,
    }
    if message_id is not None:
        data["messaging.message.id"] = message_id
    return data


def _headers() -> dict[str, str]:
    import sentry_sdk

    headers = {"sentry-trace": sentry_sdk.get_traceparent() or ""}
    baggage = sentry_sdk.get_baggage()
    if baggage:
        headers["baggage"] = baggage
    return headers


#: The ``traces_sample_rate`` of each mode.
RATES: dict[str, float | None] = {"off": None, "unsampled": 0.0, "sampled": 1.0}


def init(mode: str) -> None:
    """sentry-sdk set up as busprop's benchmarks set it up, without busprop's integrations."""
    from bench_peers import init_dropping

    init_dropping(RATES[mode])
