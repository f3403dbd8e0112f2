"""Per-message cost of busprop's core against the bare sentry-sdk recipe, measured in one run.

The bare recipes are what a user would write by hand with sentry-sdk alone:
- inject: ``get_traceparent()`` + ``get_baggage()`` into a dict, inside a sampled transaction;
- continue: what Sentry's docs give for custom Queues instrumentation, per message:
  ``isolation_scope()`` + ``continue_trace()`` + ``start_transaction()`` and a ``queue.process``
  span with the Queues data (busprop's consumer has the same shape).
A transport that drops envelopes stands in for the network, so the figures are CPU cost only.
Run: ``python bench/bench_core.py [--messages N]``. Not a test: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import sentry_sdk
from sentry_sdk.transport import Transport

import busprop

SAMPLED = {
    "sentry-trace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1",
    "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key=k,sentry-sample_rate=1.0,"
    "sentry-sample_rand=0.42,sentry-sampled=true,vendor=acme",
}
UNSAMPLED = {
    "sentry-trace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-0",
    "baggage": SAMPLED["baggage"].replace("sampled=true", "sampled=false"),
}


class DroppingTransport(Transport):
    def capture_envelope(self, envelope: Any) -> None:
        pass


def per_message(work: Callable[[], None], messages: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(messages):
            work()
        best = min(best, (time.perf_counter() - start) / messages)
    return best * 1e6


def bare_inject() -> None:
    headers = {"sentry-trace": sentry_sdk.get_traceparent(), "baggage": sentry_sdk.get_baggage()}
    assert headers


def busprop_inject() -> None:
    busprop.inject({}, destination="orders")


def in_new_span(inject: Callable[[], None]) -> Callable[[], None]:
    """Each message sent from a span of its own (as a sampled ``queue.publish`` span would be)."""

    def work() -> None:
        with sentry_sdk.start_span(op="send"):
            inject()

    return work


def distinct_traces(headers: dict[str, str], count: int = 1024) -> Iterator[dict[str, str]]:
    """``headers`` with ``count`` different trace ids, round and round: every message a new trace."""
    trace_id = headers["sentry-trace"][:32]
    variants = [
        {key: value.replace(trace_id, f"{index:032x}") for key, value in headers.items()}
        for index in range(count)
    ]
    return itertools.cycle(variants)


def bare_continue(
    headers: dict[str, str] | Iterator[dict[str, str]], *, as_busprop: bool = False
) -> Callable[[], None]:
    """The recipe; ``as_busprop``: with the two data keys and the statuses busprop adds to it."""
    stream = itertools.repeat(headers) if isinstance(headers, dict) else headers

    def work() -> None:
        with sentry_sdk.isolation_scope():
            transaction = sentry_sdk.continue_trace(next(stream), op="function", name="orders")
            with (
                sentry_sdk.start_transaction(transaction) as started,
                sentry_sdk.start_span(op="queue.process", name="orders") as span,
            ):
                span.set_data("messaging.message.id", "m-1")
                span.set_data("messaging.destination.name", "orders")
                span.set_data("messaging.message.body.size", 42)
                span.set_data("messaging.message.receive.latency", 1.5)
                span.set_data("messaging.message.retry.count", 0)
                if as_busprop:
                    span.set_data("messaging.system", "custom")
                    span.set_data("messaging.operation.type", "process")
                    span.set_status("ok")
                    started.set_status("ok")

    return work


def busprop_continue(headers: dict[str, str] | Iterator[dict[str, str]]) -> Callable[[], None]:
    stream = itertools.repeat(headers) if isinstance(headers, dict) else headers

    def work() -> None:
        with busprop.continue_trace(
            next(stream),
            system="custom",
            destination="orders",
            message_id="m-1",
            body_size=42,
            retry_count=0,
            published_at=time.time() - 0.0015,
        ):
            pass

    return work


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    messages = parser.parse_args().messages
    sentry_sdk.init(dsn="http://public@127.0.0.1/1", transport=DroppingTransport, traces_sample_rate=1.0)
    rows: list[tuple[str, float, float]] = []
    with sentry_sdk.start_transaction(name="bench"):
        rows.append(
            (
                "inject (inside a transaction)",
                per_message(bare_inject, messages),
                per_message(busprop_inject, messages),
            )
        )
        rows.append(
            (
                "inject, each from a new span",
                per_message(in_new_span(bare_inject), messages),
                per_message(in_new_span(busprop_inject), messages),
            )
        )
    rows.append(
        (
            "continue, sampled head",
            per_message(bare_continue(SAMPLED), messages),
            per_message(busprop_continue(SAMPLED), messages),
        )
    )
    rows.append(
        (
            "  the recipe with busprop's span data and statuses",
            per_message(bare_continue(SAMPLED, as_busprop=True), messages),
            per_message(busprop_continue(SAMPLED), messages),
        )
    )
    rows.append(
        (
            "continue, unsampled head",
            per_message(bare_continue(UNSAMPLED), messages),
            per_message(busprop_continue(UNSAMPLED), messages),
        )
    )
    rows.append(
        (
            "  every message a new trace",
            per_message(bare_continue(distinct_traces(UNSAMPLED)), messages),
            per_message(busprop_continue(distinct_traces(UNSAMPLED)), messages),
        )
    )
    sentry_sdk.init(dsn="http://public@127.0.0.1/1", transport=DroppingTransport, traces_sample_rate=None)
    rows.append(
        (
            "continue, tracing disabled",
            per_message(bare_continue(SAMPLED), messages),
            per_message(busprop_continue(SAMPLED), messages),
        )
    )
    rows.append(
        (
            "  every message a new trace",
            per_message(bare_continue(distinct_traces(SAMPLED)), messages),
            per_message(busprop_continue(distinct_traces(SAMPLED)), messages),
        )
    )
    print(f"{'per message':<52} {'bare sentry-sdk':>16} {'busprop':>10} {'ratio':>7}")
    for label, bare, ours in rows:
        print(f"{label:<52} {bare:>13.1f} µs {ours:>7.1f} µs {ours / bare:>6.2f}x")


if __name__ == "__main__":
    main()
