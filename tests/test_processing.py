"""continue_trace: the head decides, nothing leaks, exceptions propagate unchanged."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.tracing import Transaction

import busprop
from busprop import sdk
from busprop.client_cache import ClientCache, cache_of
from tests.conftest import Captured

TRACE_ID = "771a43a4192642f0b136d5159a501700"
PARENT = "b2bd6e9b3e4c5a1f"
FROZEN = (
    f"sentry-trace_id={TRACE_ID},sentry-public_key=upstream,sentry-sample_rate=0.5,"
    "sentry-sample_rand=0.123456789,sentry-sampled={sampled},sentry-release=web%401.0,vendor=acme"
)

Init = Callable[..., Captured]


def message(flag: str | None, sampled: str = "true") -> dict[str, str]:
    trace = f"{TRACE_ID}-{PARENT}" + (f"-{flag}" if flag is not None else "")
    return {"sentry-trace": trace, "baggage": FROZEN.format(sampled=sampled)}


def process(headers: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Consume ``headers`` and publish again from inside; returns the re-published headers."""
    out: dict[str, Any] = {}
    with busprop.continue_trace(headers, system="custom", destination="orders", **kwargs):
        busprop.inject(out, destination="next")
    return out


def test_sampled_head_is_continued_with_queues_data(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace(
        message("1"),
        system="custom",
        destination="orders",
        message_id="m-1",
        body_size=12,
        retry_count=2,
        published_at=1.0,
    ) as transaction:
        assert transaction is not None
    (event,) = captured.transactions()
    trace = event["contexts"]["trace"]
    assert (trace["trace_id"], trace["parent_span_id"], trace["op"]) == (TRACE_ID, PARENT, sdk.OP_TASK)
    assert event["transaction"] == "orders"
    (span,) = process_spans(event)
    data = span["data"]
    assert data["messaging.system"] == "custom"
    assert data["messaging.destination.name"] == "orders"
    assert data["messaging.message.id"] == "m-1"
    assert data["messaging.message.body.size"] == 12
    assert data["messaging.message.retry.count"] == 2
    assert data["messaging.message.receive.latency"] > 0
    assert event["_dsc"]["public_key"] == "upstream"  # the head's frozen DSC, not ours
    assert event["_dsc"]["sample_rand"] == "0.123456789"


def test_sampled_head_is_honoured_at_rate_zero(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=0.0)
    out = process(message("1"))
    assert len(captured.transactions()) == 1
    assert out["sentry-trace"].startswith(TRACE_ID) and out["sentry-trace"].endswith("-1")


def test_unsampled_head_sends_nothing_and_forwards_the_decision(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    out = process(message("0", sampled="false"))
    assert captured.transactions() == []
    assert out["sentry-trace"].startswith(f"{TRACE_ID}-") and out["sentry-trace"].endswith("-0")
    assert set(out["baggage"].split(",")) == set(FROZEN.format(sampled="false").split(","))


def test_unsampled_head_can_be_overruled_by_traces_sampler(sentry_init: Init) -> None:
    seen: list[dict[str, Any]] = []

    def sampler(context: dict[str, Any]) -> float:
        seen.append(context)
        return 1.0

    captured = sentry_init(traces_sampler=sampler)
    process(message("0", sampled="false"))
    assert len(captured.transactions()) == 1
    assert seen[0]["parent_sampled"] is False
    assert seen[0]["messaging"] == {"system": "custom", "destination": "orders", "operation": "process"}


def test_traces_sampler_can_drop_a_destination(sentry_init: Init) -> None:
    captured = sentry_init(traces_sampler=lambda c: 0.0 if c["messaging"]["destination"] == "orders" else 1.0)
    out = process(message(None))
    assert captured.transactions() == []
    assert out["sentry-trace"].endswith("-0")


def test_undecided_head_is_sampled_here(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    out = process(message(None))
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert out["sentry-trace"].endswith("-1")


def test_tracing_disabled_still_propagates_ids_and_decision(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=None)
    out = process(message("1"))
    assert captured.transactions() == []
    assert out["sentry-trace"].startswith(f"{TRACE_ID}-") and out["sentry-trace"].endswith("-1")
    assert "sentry-sample_rand=0.123456789" in out["baggage"]


def test_tracing_disabled_errors_carry_the_trace_id(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=None)
    with (
        pytest.raises(RuntimeError),
        busprop.continue_trace(message("1"), system="custom", destination="orders"),
    ):
        raise RuntimeError("boom")
    (error,) = captured.errors()
    assert error["contexts"]["trace"]["trace_id"] == TRACE_ID


def test_third_party_baggage_members_travel_on(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    out = process(message("1"))
    assert "vendor=acme" in out["baggage"].split(",")
    assert "sentry-public_key=upstream" in out["baggage"].split(",")


def test_no_trace_starts_a_fresh_one(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace({}, system="custom", destination="orders"):
        pass
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["trace_id"] != TRACE_ID
    assert event["contexts"]["trace"].get("parent_span_id") is None


def test_user_exception_propagates_unchanged_and_marks_failure(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    error = ValueError("the user's own")
    with (
        pytest.raises(ValueError) as raised,
        busprop.continue_trace(message("1"), system="c", destination="d"),
    ):
        raise error
    assert raised.value is error
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["status"] == "internal_error"
    (reported,) = captured.errors()
    assert reported["exception"]["values"][-1]["type"] == "ValueError"
    assert reported["exception"]["values"][-1]["mechanism"] == {"type": "busprop", "handled": False}
    assert reported["contexts"]["trace"]["trace_id"] == TRACE_ID


def test_capture_exceptions_off(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    busprop.configure(capture_exceptions=False)
    with pytest.raises(KeyError), busprop.continue_trace(message("1"), system="c", destination="d"):
        raise KeyError("x")
    assert captured.errors() == []
    assert captured.transactions()[0]["contexts"]["trace"]["status"] == "internal_error"


async def test_async_with(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    async with busprop.continue_trace(message("1"), system="c", destination="d") as transaction:
        current = sentry_sdk.get_current_span()
        assert current is not None and current.op == "queue.process"
        assert current.containing_transaction is transaction
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] == TRACE_ID


def test_nothing_leaks_after_the_message(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    before = sentry_sdk.get_traceparent()
    with busprop.continue_trace(message("1"), system="c", destination="d"):
        sentry_sdk.set_tag("leaky", "yes")
    assert sentry_sdk.get_current_span() is None
    assert sentry_sdk.get_traceparent() == before
    assert "leaky" not in sentry_sdk.get_isolation_scope()._tags


def _distinct_messages(count: int) -> list[dict[str, str]]:
    return [{"sentry-trace": f"{index:032x}-{index + 1:016x}-1"} for index in range(1, count + 1)]


async def test_concurrent_asyncio_consumers_keep_their_own_trace(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    messages = _distinct_messages(200)

    async def handle(headers: dict[str, str]) -> None:
        async with busprop.continue_trace(headers, system="c", destination="d"):
            for _ in range(3):
                await asyncio.sleep(0)
                assert sentry_sdk.get_traceparent().startswith(headers["sentry-trace"][:32])  # type: ignore[union-attr]

    await asyncio.gather(*(handle(headers) for headers in messages))
    events = captured.transactions()
    assert len(events) == 200
    assert {
        (e["contexts"]["trace"]["trace_id"], e["contexts"]["trace"]["parent_span_id"]) for e in events
    } == {(h["sentry-trace"][:32], h["sentry-trace"][33:49]) for h in messages}


def test_threads_keep_their_own_trace(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    messages = _distinct_messages(40)
    mismatches: list[str] = []

    def handle(headers: dict[str, str]) -> None:
        with busprop.continue_trace(headers, system="c", destination="d"):
            current = sentry_sdk.get_traceparent() or ""
            if not current.startswith(headers["sentry-trace"][:32]):
                mismatches.append(current)

    threads = [threading.Thread(target=handle, args=(h,)) for h in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []
    assert len(captured.transactions()) == 40


def test_works_without_sentry_initialised() -> None:
    out: dict[str, Any] = {}
    with busprop.continue_trace(message("1"), system="c", destination="d") as transaction:
        busprop.inject(out, destination="x")
    assert transaction is None
    assert out["sentry-trace"].startswith(TRACE_ID)


def test_a_trace_from_another_org_is_not_continued(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0, dsn="http://public@o42.ingest.localhost/1")
    headers = {
        "sentry-trace": f"{TRACE_ID}-{PARENT}-0",
        "baggage": f"sentry-trace_id={TRACE_ID},sentry-org_id=7,sentry-sampled=false",
    }
    with busprop.continue_trace(headers, system="c", destination="d"):
        pass
    (event,) = captured.transactions()  # a fresh trace, sampled here, not the foreign unsampled one
    assert event["contexts"]["trace"]["trace_id"] != TRACE_ID


def test_strict_trace_continuation(sentry_init: Init) -> None:
    captured = sentry_init(
        traces_sample_rate=1.0, dsn="http://public@o42.ingest.localhost/1", strict_trace_continuation=True
    )
    with busprop.continue_trace(message("1"), system="c", destination="d"):  # no org_id in its baggage
        pass
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] != TRACE_ID
    with busprop.continue_trace(
        {"sentry-trace": f"{TRACE_ID}-{PARENT}-1", "baggage": f"sentry-trace_id={TRACE_ID},sentry-org_id=42"},
        system="c",
        destination="d",
    ):
        pass
    assert captured.transactions()[1]["contexts"]["trace"]["trace_id"] == TRACE_ID


@pytest.mark.parametrize("rate", [1.0, None])
def test_unsampled_message_inside_an_ambient_span_forwards_its_own_trace(
    sentry_init: Init, rate: Any
) -> None:
    sentry_init(traces_sample_rate=rate)
    with sentry_sdk.start_transaction(name="ambient server span"):
        out = process(message("0", sampled="false"))
    assert out["sentry-trace"].startswith(f"{TRACE_ID}-") and out["sentry-trace"].endswith("-0")


def test_propagation_scope_continues_without_a_transaction(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    out: dict[str, Any] = {}
    with sentry_sdk.start_transaction(name="ambient"), busprop.propagation_scope(message("1")) as trace:
        assert trace.sentry_trace == f"{TRACE_ID}-{PARENT}-1"
        current = sentry_sdk.get_current_span()  # not the ambient transaction: a stand-in for the trace
        assert current is not None and current.trace_id == TRACE_ID and current.name != "ambient"
        busprop.inject(out, destination="d")
        with busprop.continue_trace({}, system="c", destination="d"):
            pass  # a message without a trace of its own starts a fresh one
    assert out["sentry-trace"].startswith(TRACE_ID)
    assert [e["transaction"] for e in captured.transactions()] == ["d", "ambient"]


def test_repeated_headers_give_each_message_its_own_context(sentry_init: Init) -> None:
    """Contexts parsed once per header pair: every message still gets its own span id and baggage."""
    captured = sentry_init(traces_sample_rate=1.0, traces_sampler=lambda context: 0.25)
    headers = message("0", sampled="false")
    forwarded = [process(headers) for _ in range(3)]
    span_ids = {out["sentry-trace"].split("-")[1] for out in forwarded}
    assert len(span_ids) == 3 and PARENT not in span_ids
    assert all(out["sentry-trace"].startswith(f"{TRACE_ID}-") for out in forwarded)
    assert all("sentry-sample_rate=0.25" in out["baggage"] for out in forwarded)
    # The SDK rewrote each message's sample_rate (traces_sampler); the next message starts from the wire's.
    contexts = [sdk._incoming_context(busprop.carrier.extract(headers)) for _ in range(2)]
    assert contexts[0] is not contexts[1] and contexts[0].baggage is not contexts[1].baggage
    contexts[0].baggage.sentry_items["sample_rate"] = "0.9"
    assert contexts[1].baggage.sentry_items["sample_rate"] == "0.5"
    assert contexts[1].baggage.third_party_items == "vendor=acme"
    # sample_rand 0.123... < 0.25: the sampler keeps all three, each in the wire's trace.
    events = captured.transactions()
    assert [event["contexts"]["trace"]["trace_id"] for event in events] == [TRACE_ID] * 3
    assert {process_spans(event)[0]["span_id"] for event in events} == span_ids


def test_parsed_contexts_follow_the_client_and_stay_bounded(sentry_init: Init) -> None:
    foreign = {
        "sentry-trace": f"{TRACE_ID}-{PARENT}-1",
        "baggage": f"sentry-trace_id={TRACE_ID},sentry-org_id=7,sentry-sampled=true",
    }
    captured = sentry_init(traces_sample_rate=1.0, dsn="http://public@o42.ingest.localhost/1")
    with busprop.continue_trace(foreign, system="c", destination="d"):
        pass
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] != TRACE_ID
    captured = sentry_init(traces_sample_rate=1.0)  # a new client: no org to compare, the trace continues
    with busprop.continue_trace(foreign, system="c", destination="d"):
        pass
    assert captured.transactions()[0]["contexts"]["trace"]["trace_id"] == TRACE_ID
    bound = ClientCache.PARSED_CONTEXTS
    for index in range(bound + 50):
        trace = busprop.carrier.IncomingTrace(f"{index:032x}-{PARENT}-0", None)
        for _ in range(2):  # a pair is kept from its second sighting on
            assert sdk._incoming_context(trace).trace_id == f"{index:032x}"  # type: ignore[union-attr]
    assert len(cache_of(sentry_sdk.get_client()).parsed) == bound


def test_distinct_traces_are_not_kept_and_a_repeated_pair_is(sentry_init: Init) -> None:
    """A consumer of distinct traces copies and caches nothing; a repeated pair is parsed at most twice."""
    sentry_init(traces_sample_rate=1.0)
    cache = cache_of(sentry_sdk.get_client())
    for index in range(20):
        sdk._incoming_context(busprop.carrier.IncomingTrace(f"{index + 1:032x}-{PARENT}-0", None))
    assert len(cache.parsed) == 0
    repeated = busprop.carrier.IncomingTrace(f"{TRACE_ID}-{PARENT}-0", "sentry-sample_rand=0.5,vendor=v")
    contexts = [sdk._incoming_context(repeated) for _ in range(4)]
    assert len(cache.parsed) == 1
    assert len({id(context) for context in contexts}) == 4  # each message its own context and baggage
    assert len({id(context.baggage) for context in contexts if context is not None}) == 4
    assert {context.trace_id for context in contexts if context is not None} == {TRACE_ID}


@pytest.mark.parametrize(
    ("flag", "baggage"),
    [
        ("-1", f"sentry-trace_id={TRACE_ID},sentry-sample_rand=0.25,sentry-sampled=true,vendor=v"),
        ("-0", f"sentry-trace_id={TRACE_ID},sentry-sampled=false"),
        ("", None),  # undecided, and the SDK derives sample_rand from the trace id
        ("-1", f"sentry-trace_id={TRACE_ID},sentry-org_id=7,sentry-sampled=true"),  # not continued
    ],
)
def test_one_trace_from_many_spans_is_parsed_once_as_the_sdk_parses_each(
    sentry_init: Init, flag: str, baggage: str | None
) -> None:
    """Messages of one trace sent from different spans share a parse; each context is what the
    SDK builds from its own header, its parent span id included (a guard of that assumption)."""
    sentry_init(traces_sample_rate=1.0, dsn="http://public@o42.ingest.localhost/1")
    cache = cache_of(sentry_sdk.get_client())
    parents = [f"{index + 1:016x}" for index in range(4)]
    for parent in parents:
        trace = busprop.carrier.IncomingTrace(f"{TRACE_ID}-{parent}{flag}", baggage)
        ours = sdk._incoming_context(trace)
        theirs = sentry_sdk.tracing_utils.PropagationContext.from_incoming_data(trace.as_headers())
        assert ours is not None
        continued = baggage is None or "org_id" not in baggage
        assert ours.parent_span_id == (parent if continued else None) == theirs.parent_span_id
        assert (ours.trace_id == TRACE_ID) is continued is (theirs.trace_id == TRACE_ID)
        assert ours.parent_sampled == theirs.parent_sampled
        assert ours.span_id != theirs.span_id
        assert (ours.baggage is None) is (theirs.baggage is None)
        if ours.baggage is not None and theirs.baggage is not None:
            assert ours.baggage.sentry_items == theirs.baggage.sentry_items
            assert ours.baggage.third_party_items == theirs.baggage.third_party_items
        if not continued:  # a new trace per message, never shared through the cache
            assert ours.trace_id != theirs.trace_id
    assert len(cache.parsed) == 1  # kept from the second message on


def test_details_are_read_only_for_a_transaction(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    calls: list[str] = []

    def details() -> dict[str, Any]:
        calls.append("read")
        return {"message_id": "m-9", "body_size": 3, "extra_data": {"custom.key": "v"}}

    with busprop.continue_trace(message("0", sampled="false"), system="c", destination="d", details=details):
        pass
    assert calls == []  # the unsampled path never reads them
    with busprop.continue_trace(
        message("1"), system="c", destination="d", message_id="given", details=details
    ):
        pass
    assert calls == ["read"]
    (span,) = process_spans(captured.transactions()[0])
    data = span["data"]
    assert (data["messaging.message.id"], data["messaging.message.body.size"], data["custom.key"]) == (
        "m-9",
        3,
        "v",
    )

    def broken() -> dict[str, Any]:
        raise RuntimeError("unreadable")

    with busprop.continue_trace(message("1"), system="c", destination="d", message_id="kept", details=broken):
        pass
    event = captured.transactions()[1]
    assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert process_spans(event)[0]["data"]["messaging.message.id"] == "kept"


# --- what Sentry's Queues page reads: the shape, the statuses, the mechanism -------------------


def process_spans(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for span in event["spans"] if span["op"] == "queue.process"]


def test_a_message_is_one_queue_process_span_inside_its_transaction(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace(message("1"), system="custom", destination="orders", message_id="m-1"):
        inside = sentry_sdk.get_current_span()
        assert inside is not None
        inside_id = inside.span_id
    (event,) = captured.transactions()
    trace = event["contexts"]["trace"]
    assert trace["op"] == sdk.OP_TASK != "queue.process"  # the transaction itself is not a second one
    (span,) = process_spans(event)
    assert span["span_id"] == inside_id  # the body runs in the message's span
    assert span["parent_span_id"] == trace["span_id"]
    assert span["description"] == "orders"
    assert span["data"]["messaging.message.id"] == "m-1"
    assert span["data"]["messaging.destination.name"] == "orders"
    assert span["data"]["messaging.system"] == "custom"
    # The transaction does not repeat the message's data: sent once, on the span the Queues view reads.
    assert [key for key in trace["data"] if key.startswith("messaging.")] == []
    assert (span["status"], trace["status"]) == ("ok", "ok")


def test_a_failing_body_fails_span_and_transaction_and_reports_with_busprops_mechanism(
    sentry_init: Init,
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    error = KeyError("boom")
    processing = busprop.continue_trace(message("1"), system="custom", destination="orders")
    with pytest.raises(KeyError) as raised, processing:
        raise error
    assert raised.value is error
    (event,) = captured.transactions()
    (span,) = process_spans(event)
    assert (span["status"], event["contexts"]["trace"]["status"]) == ("internal_error", "internal_error")
    (reported,) = captured.errors()
    assert reported["exception"]["values"][-1]["mechanism"] == {"type": "busprop", "handled": False}
    assert reported["contexts"]["trace"]["span_id"] == span["span_id"]  # the error links to the sent span


def test_adapter_origins_give_their_own_mechanism(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    processing = busprop.continue_trace(
        message("1"), system="kafka", destination="orders", origin="auto.queue.busprop.kafka"
    )
    with pytest.raises(ValueError), processing:
        raise ValueError("bad record")
    (reported,) = captured.errors()
    assert reported["exception"]["values"][-1]["mechanism"]["type"] == "busprop.kafka"
    (event,) = captured.transactions()
    assert process_spans(event)[0]["origin"] == "auto.queue.busprop.kafka"


def test_a_status_set_in_the_body_is_kept(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace(message("1"), system="custom", destination="orders") as transaction:
        assert transaction is not None
        transaction.set_status("cancelled")
    (event,) = captured.transactions()
    assert event["contexts"]["trace"]["status"] == "cancelled"
    assert process_spans(event)[0]["status"] == "ok"


def test_publish_span_ends_ok(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with (
        sentry_sdk.start_transaction(name="checkout"),
        busprop.publish({}, system="custom", destination="orders", message_id="m-9"),
    ):
        pass
    (event,) = captured.transactions()
    (span,) = [span for span in event["spans"] if span["op"] == "queue.publish"]
    assert span["status"] == "ok"
    assert span["data"]["messaging.message.id"] == "m-9"


# --- the head's decision survives what sentry-sdk itself propagates inside the body ------------


@pytest.mark.parametrize("flag", ["0", "1"])
def test_get_traceparent_in_the_body_carries_the_heads_decision(sentry_init: Init, flag: str) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    sampled = "true" if flag == "1" else "false"
    injected: dict[str, Any] = {}
    with busprop.continue_trace(message(flag, sampled), system="custom", destination="orders"):
        traceparent = sentry_sdk.get_traceparent()
        baggage = sentry_sdk.get_baggage()
        busprop.inject(injected, destination="next")
    assert traceparent is not None and traceparent.startswith(f"{TRACE_ID}-")
    assert traceparent.endswith(f"-{flag}")
    assert traceparent == injected["sentry-trace"]  # exactly what busprop writes
    sentry_members = {m for m in FROZEN.format(sampled=sampled).split(",") if m.startswith("sentry-")}
    assert set((baggage or "").split(",")) == sentry_members  # the frozen DSC, as received
    assert len(captured.transactions()) == (1 if flag == "1" else 0)


def test_unsampled_processing_records_the_dropped_transaction_in_client_reports(
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
    assert lost == [("sample_rate", "transaction"), ("sample_rate", "span")]


def test_a_sampler_that_says_no_still_forwards_no(sentry_init: Init) -> None:
    captured = sentry_init(traces_sampler=lambda context: 0.0)
    with busprop.continue_trace(message(None), system="custom", destination="orders"):
        traceparent = sentry_sdk.get_traceparent()
    assert traceparent is not None and traceparent.endswith("-0")
    assert captured.transactions() == []


@pytest.mark.parametrize("flag", ["0", "1", None])
def test_propagation_scope_propagates_the_heads_decision_and_sends_nothing(
    sentry_init: Init, flag: str | None
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.propagation_scope(message(flag, "true" if flag == "1" else "false")):
        traceparent = sentry_sdk.get_traceparent()
        with sentry_sdk.start_span(op="http.client"):
            pass
    assert traceparent is not None and traceparent.startswith(f"{TRACE_ID}-")
    assert traceparent.endswith({"0": "-0", "1": "-1", None: traceparent[-17:]}[flag])
    assert sentry_sdk.get_current_span() is None  # nothing left behind
    assert captured.transactions() == []


def test_tracing_disabled_keeps_the_trace_id_in_the_body(sentry_init: Init) -> None:
    captured = sentry_init()  # traces_sample_rate=None
    with busprop.continue_trace(message("0", "false"), system="custom", destination="orders") as transaction:
        traceparent = sentry_sdk.get_traceparent()
    assert transaction is None
    assert traceparent is not None and traceparent.startswith(f"{TRACE_ID}-")
    assert captured.transactions() == []


# --- the SDK seam's caches: per client, bounded, thread-safe, no span kept alive ----------------


def test_caches_are_per_client_and_die_with_it(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    first = sentry_sdk.get_client()
    process(message("0", sampled="false"))
    process(message("0", sampled="false"))
    assert len(cache_of(first).parsed) == 1
    sentry_init(traces_sample_rate=1.0)
    assert len(cache_of(sentry_sdk.get_client()).parsed) == 0  # the new client starts empty
    reference = weakref.ref(first)
    del first
    gc.collect()
    assert reference() is None  # no cache keeps a client alive


def test_outgoing_values_keep_no_span_alive(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="checkout") as transaction:
        busprop.inject({}, destination="orders")
        transaction_ids = (transaction.trace_id, transaction.span_id)
    del transaction
    gc.collect()
    alive = [obj for obj in gc.get_objects() if isinstance(obj, Transaction) and obj.name == "checkout"]
    assert alive == []
    key, _, _ = cache_of(sentry_sdk.get_client()).last_outgoing
    assert key is not None and tuple(key[1:3]) == transaction_ids  # remembered by ids, not by object


@pytest.mark.parametrize("rate", [None, 1.0])
def test_values_from_the_propagation_context_follow_a_new_context(
    sentry_init: Init, rate: float | None
) -> None:
    """Without a span the values come from the propagation context and are reused while it stays;
    a new context (a continued message, ``continue_trace``) gives its own at once."""
    sentry_init(traces_sample_rate=rate)
    first: dict[str, Any] = {}
    again: dict[str, Any] = {}
    busprop.inject(first, destination="orders")
    busprop.inject(again, destination="orders")
    assert again == first
    trace = f"{'ab' * 16}-{'cd' * 8}-0"
    baggage = f"sentry-trace_id={'ab' * 16},sentry-sample_rand=0.5,sentry-sampled=false,vendor=kept"
    for _ in range(2):
        with busprop.propagation_scope({"sentry-trace": trace, "baggage": baggage}):
            inside: dict[str, Any] = {}
            busprop.inject(inside, destination="orders")
        assert inside["sentry-trace"].startswith(f"{'ab' * 16}-") and inside["sentry-trace"].endswith("-0")
        assert "vendor=kept" in inside["baggage"] and inside["baggage"] != first["baggage"]
        after: dict[str, Any] = {}
        busprop.inject(after, destination="orders")
        assert after == first  # the outer context again, not the scope's
    sentry_sdk.get_isolation_scope().set_new_propagation_context()
    fresh: dict[str, Any] = {}
    busprop.inject(fresh, destination="orders")
    assert fresh["sentry-trace"].split("-")[0] != first["sentry-trace"].split("-")[0]


def test_a_new_span_with_the_same_cache_never_gets_stale_values(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    seen = set()
    for _ in range(200):  # spans come and go; addresses are reused, ids are not
        with sentry_sdk.start_transaction(name="checkout") as transaction:
            out: dict[str, Any] = {}
            busprop.inject(out, destination="orders")
            assert out["sentry-trace"].startswith(f"{transaction.trace_id}-{transaction.span_id}")
            seen.add(out["sentry-trace"])
    assert len(seen) == 200


def test_caches_from_many_threads_stay_bounded_and_correct(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    errors: list[BaseException] = []
    bound = ClientCache.PARSED_CONTEXTS

    def consume(worker: int) -> None:
        try:
            for index in range(300):
                trace_id = f"{worker + 1:08x}{index:024x}"  # never all zeros (invalid)
                headers = {"sentry-trace": f"{trace_id}-{PARENT}-0"}
                out: dict[str, Any] = {}
                with busprop.continue_trace(headers, system="c", destination="d"):
                    busprop.inject(out, destination="next")
                assert out["sentry-trace"].startswith(trace_id) and out["sentry-trace"].endswith("-0")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=consume, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache_of(sentry_sdk.get_client()).parsed) <= bound


def test_capture_exceptions_of_the_bus_integration(sentry_init: Init) -> None:
    """``bus=`` reads that Integration's ``capture_exceptions`` over :func:`busprop.configure`'s."""
    from busprop.kafka import KafkaIntegration

    captured = sentry_init(traces_sample_rate=1.0, integrations=[KafkaIntegration(capture_exceptions=False)])
    for bus in (KafkaIntegration.identifier, None):
        with (
            pytest.raises(KeyError),
            busprop.continue_trace(message("1"), system="kafka", destination="d", bus=bus),
        ):
            raise KeyError(bus)
    (reported,) = captured.errors()  # the second only: the Kafka bus reports nothing
    assert reported["exception"]["values"][-1]["value"] == "None"
    statuses = [event["contexts"]["trace"]["status"] for event in captured.transactions()]
    assert statuses == ["internal_error", "internal_error"]


@pytest.mark.parametrize("rate", [1.0, 0.0])
def test_messages_sent_from_many_spans_of_one_trace_each_continue_their_own_span(
    sentry_init: Init, rate: float
) -> None:
    """A sampled request's messages each leave from their own ``queue.publish`` span (an unsampled
    one's from the request's never-sampled span): every consumer's transaction, and what it
    forwards, has its own message's span as parent, with the parse shared from the second on."""
    captured = sentry_init(traces_sample_rate=rate)
    sent: list[dict[str, Any]] = []
    with sentry_sdk.start_transaction(name="request", sampled=rate == 1.0):
        for _ in range(4):
            carrier: dict[str, Any] = {}
            with busprop.publish(carrier, system="custom", destination="orders"):
                pass
            sent.append(carrier)
    forwarded = [process(carrier) for carrier in sent]
    parents = [carrier["sentry-trace"].split("-")[1] for carrier in sent]
    for carrier, out in zip(sent, forwarded, strict=True):
        assert out["sentry-trace"].split("-")[0] == carrier["sentry-trace"].split("-")[0]
        assert out["sentry-trace"].endswith("-1" if rate else "-0")
    if rate == 0.0:
        assert len(set(parents)) == 1 and captured.transactions() == []
        return
    assert len(set(parents)) == 4
    consumers = [event for event in captured.transactions() if event["transaction"] == "orders"]
    assert [event["contexts"]["trace"]["parent_span_id"] for event in consumers] == parents
    assert len(cache_of(sentry_sdk.get_client()).parsed) == 1
