"""The SDK seam's span helpers, in classic and span-streaming mode, without a broker.

Adapters call these on every message; what each must do is what Sentry then receives (op, status,
data, parent, sampling) and what stays current afterwards. Each test runs once per lifecycle:
``static`` (transactions) and ``stream`` (``trace_lifecycle="stream"``, streamed segments).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sentry_sdk

from busprop import sdk
from busprop.carrier import IncomingTrace
from tests.conftest import Captured
from tests.test_streaming import by_name, root_span

Init = Callable[..., Captured]
TRACE = "771a43a4192642f0b136d5159a501700"
PARENT = "b01e1e1e1e1e1e1e"
FAILED = {"static": "internal_error", "stream": "error"}

pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")


@pytest.fixture(params=["static", "stream"])
def lifecycle(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def init(sentry_init: Init, lifecycle: str) -> Init:
    """The shared fixture in the test's lifecycle."""

    def start(**options: Any) -> Captured:
        options.setdefault("trace_lifecycle", lifecycle)
        return sentry_init(**options)

    return start


def child(event: dict[str, Any], op: str) -> dict[str, Any]:
    (span,) = [span for span in event["spans"] if span["op"] == op]
    return span


def test_a_child_span_has_its_op_origin_data_parent_and_status(init: Init, lifecycle: str) -> None:
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        span = sdk.start_child_span(
            root, op=sdk.OP_PUBLISH, name="orders", origin="auto.busprop.test", data={"given": 1}
        )
        assert sdk.span_op(span) == sdk.OP_PUBLISH
        assert sdk.current_span() is span  # what is published inside it is its child
        sdk.set_span_data(span, "set.later", "x")
        sdk.finish_span(span)
        assert sdk.current_span() is root
    event = by_name(captured, "root")
    published = child(event, sdk.OP_PUBLISH)
    assert published["origin"] == "auto.busprop.test"
    assert published["status"] == "ok"
    assert published["parent_span_id"] == event["contexts"]["trace"]["span_id"]
    assert published["data"]["given"] == 1
    assert published["data"]["set.later"] == "x"


def test_span_op_of_the_root_and_of_a_streamed_span_without_one(init: Init, lifecycle: str) -> None:
    init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        assert sdk.span_op(root) == "test"
        if lifecycle == "stream":
            root.set_attribute("sentry.op", 7)
            assert sdk.span_op(root) is None


@pytest.mark.parametrize("status", ["ok", "cancelled", "internal_error"])
def test_set_span_status_maps_to_the_modes_statuses(init: Init, lifecycle: str, status: str) -> None:
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        span = sdk.start_child_span(root, op=sdk.OP_PROCESS, name="orders", origin="manual", data={})
        sdk.set_span_status(span, status)
        assert span.status == (status if lifecycle == "static" or status == "ok" else "error")
        sdk.finish_span(span)
    expected = status if lifecycle == "static" or status == "ok" else "error"
    assert child(by_name(captured, "root"), sdk.OP_PROCESS)["status"] == expected


def test_finish_span_keeps_a_status_set_before_and_fails_on_an_error(init: Init, lifecycle: str) -> None:
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        kept = sdk.start_child_span(root, op="kept", name="kept", origin="manual", data={})
        sdk.set_span_status(kept, "cancelled")
        sdk.finish_span(kept)
        failed = sdk.start_child_span(root, op="failed", name="failed", origin="manual", data={})
        sdk.finish_span(failed, ValueError("boom"))
    event = by_name(captured, "root")
    assert child(event, "kept")["status"] == ("cancelled" if lifecycle == "static" else "error")
    assert child(event, "failed")["status"] == FAILED[lifecycle]


@pytest.mark.parametrize(
    ("failed", "preset", "expected"),
    [
        (False, None, {"static": "ok", "stream": "ok"}),
        (True, None, FAILED),
        (False, "cancelled", {"static": "cancelled", "stream": "error"}),
        (True, "ok", FAILED),
    ],
)
def test_finish_span_elsewhere_sets_the_status_and_leaves_the_current_span(
    init: Init, lifecycle: str, failed: bool, preset: str | None, expected: dict[str, str]
) -> None:
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        span = sdk.start_child_span(root, op=sdk.OP_PUBLISH, name="elsewhere", origin="manual", data={})
        if preset is not None:
            sdk.set_span_status(span, preset)
        if lifecycle == "static":
            sdk.set_current_span(root)  # the span is no longer current where it is finished
        sdk.finish_span_elsewhere(span, failed=failed)
        assert sdk.current_span() is root
        assert span.status == expected[lifecycle]
    finished = child(by_name(captured, "root"), sdk.OP_PUBLISH)
    assert finished["status"] == expected[lifecycle]
    assert finished["timestamp"] is not None


def test_finish_span_elsewhere_of_a_classic_span_without_a_status_sets_ok(sentry_init: Init) -> None:
    """Classic only: a streamed span always has a status (``ok`` until set)."""
    sentry_init(traces_sample_rate=1.0)
    with root_span("static", "root") as root:
        span = sdk.start_child_span(root, op=sdk.OP_PUBLISH, name="elsewhere", origin="manual", data={})
        assert span.status is None
        sdk.set_current_span(root)
        sdk.finish_span_elsewhere(span, failed=False)
        assert span.status == "ok"
        assert span.timestamp is not None


def test_span_sampled_and_sampled_parent(init: Init, lifecycle: str) -> None:
    init(traces_sample_rate=1.0)
    assert not sdk.span_sampled(None)
    assert sdk.sampled_parent() is None  # nothing current
    with root_span(lifecycle, "root") as root:
        assert sdk.span_sampled(root)
        assert sdk.sampled_parent() is root
    init(traces_sample_rate=0.0)
    with root_span(lifecycle, "root") as unsampled:
        assert not sdk.span_sampled(unsampled)
        assert sdk.sampled_parent() is None


def test_a_sampled_process_transaction_is_a_new_segment_with_the_queues_data(
    init: Init, lifecycle: str
) -> None:
    captured = init(traces_sample_rate=1.0)
    with sentry_sdk.isolation_scope() as scope:
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", "sentry-sample_rand=0.5"))
        transaction = sdk.start_process_transaction(
            scope,
            name="orders",
            origin="auto.busprop.test",
            data={"messaging.destination.name": "orders"},
            sampling_context={"busprop": {"destination": "orders"}},
        )
        assert sdk.span_sampled(transaction)
        assert sdk.span_op(transaction) == sdk.OP_TASK
        if lifecycle == "static":  # its parent is in the producer's process
            assert transaction.same_process_as_parent is False
        sdk.finish_span(transaction)
    event = by_name(captured, "orders")
    trace = event["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == (TRACE, PARENT)
    assert trace["op"] == sdk.OP_TASK
    assert trace["origin"] == "auto.busprop.test"
    assert trace["status"] == "ok"
    assert trace["data"]["messaging.destination.name"] == "orders"
    if lifecycle == "stream":
        assert trace["data"]["sentry.segment.name.source"] == "task"
    else:
        assert event["transaction_info"] == {"source": "task"}


def test_the_process_transaction_has_no_parent_span_from_around_the_message(
    init: Init, lifecycle: str
) -> None:
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "around"), sentry_sdk.isolation_scope() as scope:
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", "sentry-sample_rand=0.5"))
        transaction = sdk.start_process_transaction(
            scope, name="orders", origin="manual", data={}, sampling_context={}
        )
        sdk.finish_span(transaction)
    trace = by_name(captured, "orders")["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"]) == (TRACE, PARENT)
    assert all(span["op"] != sdk.OP_TASK for span in by_name(captured, "around")["spans"])


def test_the_sampling_context_reaches_traces_sampler(init: Init, lifecycle: str) -> None:
    seen: list[dict[str, Any]] = []

    def sampler(context: dict[str, Any]) -> float:
        seen.append(context)
        return 1.0

    init(traces_sampler=sampler)
    with sentry_sdk.isolation_scope() as scope:
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", "sentry-sample_rand=0.5"))
        transaction = sdk.start_process_transaction(
            scope, name="orders", origin="manual", data={}, sampling_context={"busprop": {"n": 1}}
        )
        sdk.finish_span(transaction)
    assert [context.get("busprop") for context in seen] == [{"n": 1}]
    assert seen[0]["parent_sampled"] is True


class LostEvents:
    """What the client's transport was told it lost."""

    def __init__(self) -> None:
        self.lost: list[tuple[str, str | None]] = []

    def record(self, reason: str, data_category: str | None = None, **_: Any) -> None:
        self.lost.append((reason, data_category))


@pytest.fixture
def lost(monkeypatch: pytest.MonkeyPatch) -> Callable[[], LostEvents]:
    def attach() -> LostEvents:
        events = LostEvents()
        monkeypatch.setattr(sentry_sdk.get_client().transport, "record_lost_event", events.record)
        return events

    return attach


def test_an_unsampled_transaction_propagates_no_and_is_counted_as_lost(
    init: Init, lifecycle: str, lost: Callable[[], LostEvents]
) -> None:
    captured = init(traces_sample_rate=1.0)
    events = lost()
    with sentry_sdk.isolation_scope() as scope:
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-0", "sentry-sample_rand=0.9"))
        transaction = sdk.start_unsampled_transaction(scope, name="orders", origin="manual")
        assert not sdk.span_sampled(transaction)
        assert transaction.name == "orders"  # what code inside reads as the current span's name
        traceparent = sentry_sdk.get_traceparent() or ""
        assert traceparent.startswith(f"{TRACE}-") and traceparent.endswith("-0")
        sdk.drop_unsampled_transaction(transaction)
    assert captured.transactions() == []
    if lifecycle == "static":
        assert events.lost == [("sample_rate", "transaction"), ("sample_rate", "span")]
    else:
        assert events.lost and {reason for reason, _ in events.lost} == {"sample_rate"}


def test_an_unsampled_transaction_under_backpressure_says_so(
    sentry_init: Init, lost: Callable[[], LostEvents], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Classic only: a streamed no-op segment reports itself, and the SDK chooses the reason."""
    sentry_init(traces_sample_rate=1.0, enable_backpressure_handling=True)
    events = lost()
    monitor = sentry_sdk.get_client().monitor
    assert monitor is not None
    monkeypatch.setattr(monitor, "_downsample_factor", 1)
    sdk.drop_unsampled_transaction(None)
    assert events.lost == [("backpressure", "transaction"), ("backpressure", "span")]
    monkeypatch.setattr(monitor, "_downsample_factor", 0)
    sdk.drop_unsampled_transaction(None)
    assert events.lost[2:] == [("sample_rate", "transaction"), ("sample_rate", "span")]


def test_dropping_without_an_active_client_reports_nothing(
    init: Init, lost: Callable[[], LostEvents]
) -> None:
    init(traces_sample_rate=1.0)
    events = lost()
    sentry_sdk.get_client().close()
    sdk.drop_unsampled_transaction(None)
    assert events.lost == []


def test_a_span_held_for_propagation_is_no_parent_even_for_a_sampled_head(init: Init, lifecycle: str) -> None:
    """What ``hold_propagation`` makes current carries ``-1`` onward but is never sent (classic:
    a transaction never started, so whatever starts under it is not recorded either)."""
    captured = init(traces_sample_rate=1.0)
    with sentry_sdk.isolation_scope() as scope:
        incoming = f"sentry-trace_id={TRACE},sentry-sample_rand=0.5,sentry-sample_rate=0.25,vendor=x"
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", incoming))
        sdk.hold_propagation(scope)
        held = sdk.current_span()
        if lifecycle == "stream":
            held = sentry_sdk.get_current_scope().streamed_span
        assert held is not None
        assert held.sampled is True  # the decision it carries onward
        if lifecycle == "stream":  # the SDK's no-op span: nothing under it could be recorded
            assert not sdk.span_sampled(held)
            assert sdk.sampled_parent() is None
        assert (sentry_sdk.get_traceparent() or "").startswith(f"{TRACE}-")
        assert (sentry_sdk.get_traceparent() or "").endswith("-1")
        values = sdk.outgoing_values()
        assert values is not None
        assert set(values["baggage"].split(",")) == set(incoming.split(","))  # the head's, frozen
    assert captured.transactions() == []


def test_a_process_segment_never_has_the_current_span_as_parent(init: Init, lifecycle: str) -> None:
    """Even without ``continue_propagation`` clearing it first, the span current around a message
    is not its transaction's parent."""
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "around") as around:
        transaction = sdk.start_process_transaction(
            sentry_sdk.get_current_scope(), name="orders", origin="manual", data={}, sampling_context={}
        )
        sdk.finish_span(transaction)
    trace = by_name(captured, "orders")["contexts"]["trace"]
    assert trace.get("parent_span_id") != around.span_id
    assert by_name(captured, "around")["spans"] == []


def test_a_child_span_has_the_given_parent_even_when_another_span_is_current(
    init: Init, lifecycle: str
) -> None:
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        current = sdk.start_child_span(root, op="current", name="current", origin="manual", data={})
        given = sdk.start_child_span(root, op="given", name="given", origin="manual", data={})
        sdk.finish_span(given)
        sdk.finish_span(current)
    event = by_name(captured, "root")
    assert child(event, "given")["parent_span_id"] == event["contexts"]["trace"]["span_id"]
    assert child(event, "current")["parent_span_id"] == event["contexts"]["trace"]["span_id"]


def test_set_current_span_sets_the_current_span_of_the_mode(init: Init, lifecycle: str) -> None:
    init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        span = sdk.start_child_span(root, op=sdk.OP_PUBLISH, name="orders", origin="manual", data={})
        assert sdk.current_span() is span
        sdk.set_current_span(root)
        assert sdk.current_span() is root
        scope = sentry_sdk.get_current_scope()
        assert (scope.streamed_span if lifecycle == "stream" else scope.span) is root
        sdk.finish_span_elsewhere(span, failed=False)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (SystemExit(0), {"static": "ok", "stream": "ok"}),
        (SystemExit(None), {"static": "ok", "stream": "ok"}),
        (SystemExit(3), FAILED),
        (KeyboardInterrupt(), FAILED),
    ],
)
def test_finish_span_with_a_clean_exit_is_ok_and_with_another_is_failed(
    init: Init, lifecycle: str, error: BaseException, expected: dict[str, str]
) -> None:
    """The SDK does not count a clean ``SystemExit`` as an error: such a span is ``ok``, never
    left without a status (``unknown``, a failure on the Queues page)."""
    captured = init(traces_sample_rate=1.0)
    with root_span(lifecycle, "root") as root:
        span = sdk.start_child_span(root, op=sdk.OP_PROCESS, name="orders", origin="manual", data={})
        sdk.finish_span(span, error)
        assert sdk.current_span() is root
    assert child(by_name(captured, "root"), sdk.OP_PROCESS)["status"] == expected[lifecycle]


def test_outgoing_values_follow_the_current_span_inside_a_continued_trace(init: Init, lifecycle: str) -> None:
    """The continued trace's frozen baggage stays the same from span to span: the values are
    each current span's all the same (the cache keys on the span, in either mode)."""
    init(traces_sample_rate=1.0)
    with sentry_sdk.isolation_scope() as scope:
        incoming = f"sentry-trace_id={TRACE},sentry-sample_rand=0.5,sentry-sampled=true"
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", incoming))
        transaction = sdk.start_process_transaction(
            scope, name="orders", origin="manual", data={}, sampling_context={}
        )
        first = sdk.outgoing_values()
        span = sdk.start_child_span(transaction, op=sdk.OP_PUBLISH, name="orders", origin="manual", data={})
        second = sdk.outgoing_values()
        sdk.finish_span(span)
        third = sdk.outgoing_values()
        sdk.finish_span(transaction)
    assert first is not None and second is not None and third is not None
    assert first["sentry-trace"] == f"{TRACE}-{transaction.span_id}-1"
    assert second["sentry-trace"] == f"{TRACE}-{span.span_id}-1"
    assert third["sentry-trace"] == first["sentry-trace"]


def test_continuing_a_trace_clears_the_span_current_around_the_message(init: Init, lifecycle: str) -> None:
    """What is sent while the message is processed carries its trace, not the span around it."""
    init(traces_sample_rate=1.0)
    with root_span(lifecycle, "around"), sentry_sdk.isolation_scope() as scope:
        assert sdk.current_span() is not None
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", None))
        assert sdk.current_span() is None
        assert sdk.sampled_parent() is None
        values = sdk.outgoing_values()
        assert values is not None
        assert values["sentry-trace"].startswith(f"{TRACE}-")


def test_a_transaction_made_current_elsewhere_names_the_events_there(init: Init, lifecycle: str) -> None:
    """A transaction made current with ``set_current_span`` in another scope than the one it
    started on: an error captured there belongs to it (its trace, its name)."""
    captured = init(traces_sample_rate=1.0)
    with sentry_sdk.isolation_scope():
        root = root_span(lifecycle, "root").__enter__()
    sdk.set_current_span(root)
    sentry_sdk.capture_message("inside")
    sdk.set_current_span(None)
    root.__exit__(None, None, None)
    (inside,) = captured.errors()
    assert inside["transaction"] == "root"
    assert inside["contexts"]["trace"]["trace_id"] == root.trace_id
