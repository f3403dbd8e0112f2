"""Span streaming mode (``sentry_sdk.init(trace_lifecycle="stream")``) gets what classic mode gets.

In streaming mode sentry-sdk sends each span on its own (envelope items of type ``span``), the
transaction API returns no-op spans and the statuses are ``ok`` and ``error``. The ``sentry_init``
fixture of this module initialises that mode; :class:`busprop.testing.CapturingTransport` gives
each streamed segment in a transaction's shape, so that:

- the core tests whose bodies use only busprop's API and what Sentry receives are imported from
  their modules and run here again, unchanged, in streaming mode;
- the core tests that start the producer's span with the transaction API have a counterpart here,
  the root span started with ``sentry_sdk.traces.start_span``;
- what only streaming mode has (an outer ``sentry_sdk.traces.continue_trace``, the span items'
  shape) and one real-broker flow per bus (Celery on Redis, WebSockets on loopback) run in both
  modes, parametrised by ``lifecycle``.

Any ``DeprecationWarning`` is an error here: busprop must not call what streaming mode deprecates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import sentry_sdk
from websockets.asyncio.client import connect as bare_connect
from websockets.asyncio.server import serve

import busprop
import busprop.celery
from busprop import sdk
from busprop import websockets as traced_ws
from busprop.testing import CapturingTransport, _segments_as_transactions, _span_shape
from tests.conftest import Captured
from tests.test_celery import Worker, start_worker, stop_worker
from tests.test_decorators import (  # noqa: F401  (collected again here, in streaming mode)
    test_a_failing_headers_function_never_reaches_user_code,
    test_default_headers_is_the_first_argument,
)
from tests.test_http_hops import (  # noqa: F401
    hop_server,
    test_consumer_decorator_async_handler_http_request_carries_the_heads_trace,
    test_consumer_decorator_sync_handler_http_request_carries_the_heads_trace,
    test_continue_trace_body_http_request_carries_the_heads_trace,
    test_sync_with_continue_trace_body_http_request_carries_the_heads_trace,
    test_traced_iterator_loop_body_http_request_carries_the_heads_trace,
)
from tests.test_processing import (  # noqa: F401
    PARENT,
    TRACE_ID,
    message,
    process,
    test_a_sampler_that_says_no_still_forwards_no,
    test_a_trace_from_another_org_is_not_continued,
    test_adapter_origins_give_their_own_mechanism,
    test_caches_are_per_client_and_die_with_it,
    test_caches_from_many_threads_stay_bounded_and_correct,
    test_concurrent_asyncio_consumers_keep_their_own_trace,
    test_details_are_read_only_for_a_transaction,
    test_get_traceparent_in_the_body_carries_the_heads_decision,
    test_no_trace_starts_a_fresh_one,
    test_nothing_leaks_after_the_message,
    test_parsed_contexts_follow_the_client_and_stay_bounded,
    test_repeated_headers_give_each_message_its_own_context,
    test_sampled_head_is_continued_with_queues_data,
    test_sampled_head_is_honoured_at_rate_zero,
    test_strict_trace_continuation,
    test_third_party_baggage_members_travel_on,
    test_threads_keep_their_own_trace,
    test_traces_sampler_can_drop_a_destination,
    test_tracing_disabled_errors_carry_the_trace_id,
    test_tracing_disabled_keeps_the_trace_id_in_the_body,
    test_tracing_disabled_still_propagates_ids_and_decision,
    test_undecided_head_is_sampled_here,
    test_unsampled_head_can_be_overruled_by_traces_sampler,
    test_unsampled_head_sends_nothing_and_forwards_the_decision,
)
from tests.test_publishing import (  # noqa: F401
    test_inject_bytes_into_pairs,
    test_inject_never_raises_into_user_code,
    test_no_span_outside_a_transaction_but_ids_travel,
    test_propagation_targets,
    test_reused_baggage_serialization_sees_members_rewritten_in_place,
)

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

Init = Callable[..., Captured]
LIFECYCLES = ["static", "stream"]
#: The status a failure ends with, by lifecycle.
FAILED = {"static": "internal_error", "stream": "error"}


@pytest.fixture
def sentry_init(sentry_init: Init) -> Init:
    """The shared fixture, in span streaming mode unless ``trace_lifecycle`` is given."""

    def init(**options: Any) -> Captured:
        options.setdefault("trace_lifecycle", "stream")
        return sentry_init(**options)

    return init


def root_span(lifecycle: str, name: str) -> AbstractContextManager[Any]:
    """A producer's own span, as an application starts it in each mode (``.trace_id`` on both)."""
    if lifecycle == "stream":
        return sentry_sdk.traces.start_span(name=name, attributes={"sentry.op": "test"})
    return sentry_sdk.start_transaction(name=name, op="test")


def by_name(captured: Captured, name: str) -> dict[str, Any]:
    (event,) = [event for event in captured.transactions() if event["transaction"] == name]
    return event


def process_span(event: dict[str, Any]) -> dict[str, Any]:
    (span,) = [span for span in event["spans"] if span["op"] == sdk.OP_PROCESS]
    trace = event["contexts"]["trace"]
    assert (span["trace_id"], span["parent_span_id"]) == (trace["trace_id"], trace["span_id"])
    return span


# --- the core, streaming counterparts of tests that start spans with the transaction API ----------


def test_spans_arrive_as_span_items_with_typed_attributes(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace(message("1"), system="custom", destination="orders", body_size=12):
        pass
    sentry_sdk.flush()
    items = [item for envelope in CapturingTransport.envelopes for item in envelope.items]
    assert {item.type for item in items} == {"span"}
    spans = [span for item in items for span in item.payload.json["items"]]  # type: ignore[index]
    segment = next(span for span in spans if span["is_segment"])
    process = next(span for span in spans if not span["is_segment"])
    assert segment["attributes"]["sentry.op"] == {"type": "string", "value": sdk.OP_TASK}
    assert process["attributes"]["sentry.op"] == {"type": "string", "value": sdk.OP_PROCESS}
    assert process["attributes"]["messaging.message.body.size"] == {"type": "integer", "value": 12}
    assert "messaging.message.body.size" not in segment["attributes"]
    assert (segment["trace_id"], segment["parent_span_id"], segment["status"]) == (TRACE_ID, PARENT, "ok")
    (event,) = captured.transactions()
    assert event["_streamed"] is True and event["contexts"]["trace"]["span_id"] == segment["span_id"]


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_a_message_is_one_queue_process_span_inside_its_segment(sentry_init: Init, lifecycle: str) -> None:
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    with busprop.continue_trace(message("1"), system="custom", destination="orders", message_id="m-1"):
        pass
    (event,) = captured.transactions()
    trace = event["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"], trace["op"]) == (TRACE_ID, PARENT, sdk.OP_TASK)
    assert trace["origin"] == "auto.queue.busprop"
    span = process_span(event)
    assert (span["description"], span["origin"]) == ("orders", "auto.queue.busprop")
    assert span["data"]["messaging.message.id"] == "m-1"
    assert span["data"]["messaging.destination.name"] == "orders"
    assert span["data"]["messaging.system"] == "custom"
    assert [key for key in trace["data"] if key.startswith("messaging.")] == []  # not sent twice
    assert (span["status"], trace["status"]) == ("ok", "ok")


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_a_failing_body_fails_both_and_the_error_links_to_the_sent_span(
    sentry_init: Init, lifecycle: str
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    error = ValueError("the user's own")
    with (
        pytest.raises(ValueError) as raised,
        busprop.continue_trace(message("1"), system="custom", destination="orders"),
    ):
        raise error
    assert raised.value is error
    (event,) = captured.transactions()
    span = process_span(event)
    assert (span["status"], event["contexts"]["trace"]["status"]) == (FAILED[lifecycle],) * 2
    (reported,) = captured.errors()
    assert reported["exception"]["values"][-1]["mechanism"] == {"type": "busprop", "handled": False}
    assert reported["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert reported["contexts"]["trace"]["span_id"] == span["span_id"]


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_a_status_set_on_the_processing_is_the_modes_own(sentry_init: Init, lifecycle: str) -> None:
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    with busprop.continue_trace(message("1"), system="custom", destination="orders") as processing_span:
        assert processing_span is not None
        sdk.set_span_status(processing_span, "cancelled")
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["status"] == {"static": "cancelled", "stream": "error"}[lifecycle]
    assert process_span(event)["status"] == "ok"


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_publish_span_is_the_consumers_parent(sentry_init: Init, lifecycle: str) -> None:
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    headers: dict[str, Any] = {}
    with (
        root_span(lifecycle, "checkout") as root,
        busprop.publish(headers, system="custom", destination="orders", message_id="m1", body_size=5) as span,
    ):
        assert span is not None
    with busprop.continue_trace(headers, system="custom", destination="orders"):
        pass
    producer, consumer = by_name(captured, "checkout"), by_name(captured, "orders")
    (publish_span,) = producer["spans"]
    assert (publish_span["op"], publish_span["description"], publish_span["status"]) == (
        "queue.publish",
        "orders",
        "ok",
    )
    assert publish_span["parent_span_id"] == producer["contexts"]["trace"]["span_id"]
    assert publish_span["data"]["messaging.message.id"] == "m1"
    assert publish_span["data"]["messaging.message.body.size"] == 5
    assert publish_span["data"]["messaging.destination.name"] == "orders"
    assert headers["sentry-trace"] == f"{root.trace_id}-{publish_span['span_id']}-1"
    assert consumer["contexts"]["trace"]["parent_span_id"] == publish_span["span_id"]
    assert consumer["contexts"]["trace"]["trace_id"] == root.trace_id


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_a_failing_publish_fails_its_span(sentry_init: Init, lifecycle: str) -> None:
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    with (
        root_span(lifecycle, "checkout"),
        pytest.raises(ConnectionError),
        busprop.publish({}, system="c", destination="d"),
    ):
        raise ConnectionError("broker down")
    (producer,) = captured.transactions()
    assert producer["spans"][0]["status"] == FAILED[lifecycle]


def test_a_users_span_in_the_body_is_a_child_of_the_queue_process_span(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with (
        busprop.continue_trace(message("1"), system="custom", destination="orders"),
        sentry_sdk.traces.start_span(name="charge card", attributes={"sentry.op": "function"}),
    ):
        pass
    (event,) = captured.transactions()
    (user_span,) = [span for span in event["spans"] if span["op"] == "function"]
    assert (user_span["trace_id"], user_span["parent_span_id"]) == (TRACE_ID, process_span(event)["span_id"])


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_an_unsampled_message_inside_an_ambient_span_forwards_its_own_trace(
    sentry_init: Init, lifecycle: str
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    with root_span(lifecycle, "ambient"):
        out = process(message("0", sampled="false"))
    assert out["sentry-trace"].startswith(f"{TRACE_ID}-") and out["sentry-trace"].endswith("-0")
    assert [event["transaction"] for event in captured.transactions()] == ["ambient"]


def test_unsampled_processing_is_reported_as_a_dropped_span(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentry_init(traces_sample_rate=1.0)
    lost: list[tuple[str, str | None]] = []
    transport = sentry_sdk.get_client().transport
    assert transport is not None
    monkeypatch.setattr(
        transport,
        "record_lost_event",
        lambda reason, data_category=None, **_: lost.append((reason, data_category)),
    )
    process(message("0", sampled="false"))
    assert lost == [("sample_rate", "span")]


@pytest.mark.parametrize("flag", ["0", "1", None])
def test_propagation_scope_propagates_the_heads_decision_and_sends_nothing(
    sentry_init: Init, flag: str | None
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    out: dict[str, Any] = {}
    with (
        sentry_sdk.traces.start_span(name="ambient"),
        busprop.propagation_scope(message(flag, "true" if flag == "1" else "false")),
    ):
        traceparent = sentry_sdk.get_traceparent()
        with busprop.publish(out, system="custom", destination="d") as publish_span:
            assert publish_span is None  # the stand-in for the trace records nothing
        with sentry_sdk.traces.start_span(name="http.client"):
            pass
    assert traceparent is not None and traceparent.startswith(f"{TRACE_ID}-")
    assert traceparent.endswith({"0": "-0", "1": "-1", None: traceparent[-17:]}[flag])
    assert out["sentry-trace"] == traceparent
    assert sentry_sdk.traces.get_current_span() is None  # nothing left behind
    assert [event["transaction"] for event in captured.transactions()] == ["ambient"]


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_the_seams_span_functions_work_on_either_kind_of_span(sentry_init: Init, lifecycle: str) -> None:
    """What adapters call instead of a span's own methods (a Kafka delivery report, say)."""
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    with root_span(lifecycle, "checkout"), busprop.publish({}, system="kafka", destination="orders") as span:
        assert span is not None and sdk.span_op(span) == sdk.OP_PUBLISH
        sdk.set_span_data(span, "messaging.destination.partition.id", "3")
        sdk.set_span_status(span, "internal_error")
    (publish_span,) = by_name(captured, "checkout")["spans"]
    assert publish_span["data"]["messaging.destination.partition.id"] == "3"
    assert publish_span["status"] == FAILED[lifecycle]


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_fail_current_span_fails_the_span_and_its_segment(sentry_init: Init, lifecycle: str) -> None:
    """An error the processing never sees (aio-pika's RPC server turns it into a reply)."""
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    with busprop.continue_trace(message("1"), system="custom", destination="orders"):
        sdk.fail_current_span()
    (event,) = captured.transactions()
    assert (process_span(event)["status"], event["contexts"]["trace"]["status"]) == (FAILED[lifecycle],) * 2


# --- an outer trace never shadows the message's ---------------------------------------------------


OUTER_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize("rate", [1.0, None])
@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_an_outer_streaming_continue_trace_never_shadows_the_messages_trace(
    sentry_init: Init, lifecycle: str, rate: float | None
) -> None:
    """What sentry-sdk's streaming Celery, rq and arq integrations do around a task, and then busprop."""
    captured = sentry_init(traces_sample_rate=rate, trace_lifecycle=lifecycle)
    out: dict[str, Any] = {}
    with sentry_sdk.isolation_scope():
        sentry_sdk.traces.continue_trace({"sentry-trace": f"{OUTER_TRACE}-{PARENT}-1"})
        with busprop.continue_trace(message("1"), system="custom", destination="orders"):
            traceparent = sentry_sdk.get_traceparent()
            busprop.inject(out, destination="next")
        assert (sentry_sdk.get_traceparent() or "").startswith(OUTER_TRACE)  # the outer trace is back
    assert out["sentry-trace"].startswith(f"{TRACE_ID}-") and out["sentry-trace"].endswith("-1")
    assert traceparent is not None and traceparent.startswith(f"{TRACE_ID}-")
    traces = {event["contexts"]["trace"]["trace_id"] for event in captured.transactions()}
    assert traces == ({TRACE_ID} if rate is not None else set())


def test_a_message_inside_a_streamed_segment_is_its_own_segment(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.isolation_scope():
        sentry_sdk.traces.continue_trace({"sentry-trace": f"{OUTER_TRACE}-{PARENT}-1"})
        with (
            sentry_sdk.traces.start_span(name="outer task", parent_span=None),
            busprop.continue_trace(message("1"), system="custom", destination="orders"),
        ):
            pass
    events = {event["transaction"]: event["contexts"]["trace"] for event in captured.transactions()}
    assert (events["orders"]["trace_id"], events["orders"]["parent_span_id"]) == (TRACE_ID, PARENT)
    assert events["outer task"]["trace_id"] == OUTER_TRACE


# --- Celery on Redis, a real worker in each mode -------------------------------------------------


@pytest.fixture(scope="module", params=LIFECYCLES)
def celery_worker(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Worker]]:
    lifecycle = request.param
    worker = start_worker(
        tmp_path_factory,
        name=f"redis-threads-{lifecycle}",
        broker=redis_url,
        backend=redis_url,
        pool="threads",
        concurrency=2,
        mode="busprop-stream" if lifecycle == "stream" else "busprop",
    )
    yield lifecycle, worker
    stop_worker(worker)


def worker_transactions(worker: Worker, message_id: str) -> list[dict[str, Any]]:
    """The worker's transactions (streamed segments in a transaction's shape) of one task message.

    By the message id of their ``queue.process`` span: a streamed root span takes its trace id from
    the scope, which the worker's warm-up task (sent by sentry-sdk's CeleryIntegration, patched into
    this process) carried too.
    """

    def found() -> list[dict[str, Any]]:
        spans = [
            _span_shape(span, event["_dsc"])
            for event in worker.events("span")
            for span in event.get("items", ())
        ]
        events = worker.events() + _segments_as_transactions(spans)
        return [
            event
            for event in events
            if any(
                span["op"] == sdk.OP_PROCESS and span["data"].get("messaging.message.id") == message_id
                for span in event["spans"]
            )
        ]

    worker.wait_for(lambda _: bool(found()), kind="span" if "stream" in worker.name else "transaction")
    return found()


@pytest.mark.broker
def test_celery_task_continues_the_publish_span(sentry_init: Init, celery_worker: tuple[str, Worker]) -> None:
    lifecycle, worker = celery_worker
    captured = sentry_init(
        traces_sample_rate=1.0, trace_lifecycle=lifecycle, auto_enabling_integrations=False
    )
    busprop.celery.install(worker.app)
    try:
        with root_span(lifecycle, "root") as root:
            result = worker.app.tasks["busprop_tests.add"].delay(2, 3)
            assert result.get(timeout=10) == 5
    finally:
        busprop.celery.uninstall()
    producer = by_name(captured, "root")
    (publish,) = [span for span in producer["spans"] if span["op"] == "queue.publish"]
    assert (publish["parent_span_id"], publish["status"]) == (producer["contexts"]["trace"]["span_id"], "ok")
    assert publish["data"]["messaging.message.id"] == result.id
    (task,) = worker_transactions(worker, result.id)
    assert task["contexts"]["trace"]["trace_id"] == root.trace_id
    trace = task["contexts"]["trace"]
    assert (trace["parent_span_id"], trace["op"], trace["status"]) == (publish["span_id"], sdk.OP_TASK, "ok")
    assert task["transaction"] == "busprop_tests.add"
    span = process_span(task)
    assert span["status"] == "ok"
    assert span["data"]["messaging.message.id"] == result.id
    assert span["data"]["messaging.destination.name"] == worker.queue
    assert span["data"]["messaging.message.retry.count"] == 0
    assert [key for key in trace["data"] if key.startswith("messaging.")] == []  # not sent twice
    assert task["_dsc"]["trace_id"] == root.trace_id


# --- WebSockets on loopback, in each mode ---------------------------------------------------------


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
async def test_websocket_message_continues_the_senders_publish_span(
    sentry_init: Init, lifecycle: str
) -> None:
    captured = sentry_init(traces_sample_rate=1.0, trace_lifecycle=lifecycle)
    inside: list[str | None] = []

    async def handler(ws: traced_ws.TracedConnection) -> None:
        async for _message in ws:
            inside.append(sentry_sdk.get_traceparent())

    served = traced_ws.traced_handler(handler)
    async with serve(served, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"
        async with bare_connect(url) as bare:
            client = traced_ws.traced(bare)
            with root_span(lifecycle, "client") as root:
                await client.send(json.dumps({"message": "hi"}))
        for _ in range(200):
            if inside:
                break
            await asyncio.sleep(0.01)
    client_event = by_name(captured, "client")
    (publish,) = client_event["spans"]
    assert (publish["op"], publish["status"]) == ("queue.publish", "ok")
    assert publish["data"]["messaging.system"] == "websocket"
    assert publish["data"]["messaging.message.body.size"] > 0
    (server_event,) = [e for e in captured.transactions() if e["contexts"]["trace"]["op"] == sdk.OP_TASK]
    trace = server_event["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == (root.trace_id, publish["span_id"])
    span = process_span(server_event)
    assert span["data"]["messaging.system"] == "websocket"
    assert (inside[0] or "").startswith(f"{root.trace_id}-{span['span_id']}-1")
