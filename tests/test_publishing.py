"""inject and publish: the consumer's parent is the publish span; targets are enforced."""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import copy
from collections.abc import Callable
from typing import Any

import pytest
import sentry_sdk

import busprop
from busprop import sdk
from tests.conftest import Captured

Init = Callable[..., Captured]


def test_publish_span_is_the_consumers_parent(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    headers: dict[str, Any] = {}
    with (
        sentry_sdk.start_transaction(name="checkout") as root,
        busprop.publish(headers, system="custom", destination="orders", message_id="m1", body_size=5) as span,
    ):
        assert span is not None
    with busprop.continue_trace(headers, system="custom", destination="orders"):
        pass
    consumer, producer = sorted(captured.transactions(), key=lambda e: e["transaction"] != "orders")
    (publish_span,) = producer["spans"]
    assert publish_span["op"] == "queue.publish"
    assert publish_span["description"] == "orders"
    assert publish_span["data"]["messaging.message.id"] == "m1"
    assert publish_span["data"]["messaging.message.body.size"] == 5
    assert publish_span["data"]["messaging.destination.name"] == "orders"
    assert headers["sentry-trace"] == f"{root.trace_id}-{publish_span['span_id']}-1"
    assert consumer["contexts"]["trace"]["parent_span_id"] == publish_span["span_id"]
    assert consumer["contexts"]["trace"]["trace_id"] == root.trace_id


def test_publish_exception_marks_span_and_propagates(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with (
        sentry_sdk.start_transaction(name="checkout"),
        pytest.raises(ConnectionError),
        busprop.publish({}, system="c", destination="d"),
    ):
        raise ConnectionError("broker down")
    (producer,) = captured.transactions()
    assert producer["spans"][0]["status"] == "internal_error"


def test_no_span_outside_a_transaction_but_ids_travel(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    headers: dict[str, Any] = {}
    with busprop.publish(headers, system="c", destination="d") as span:
        assert span is None
    assert headers["sentry-trace"] == sentry_sdk.get_traceparent()
    assert "sentry-trace_id=" in headers["baggage"]


def test_unsampled_transaction_sends_minus_zero_without_a_span(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=0.0)
    headers: dict[str, Any] = {}
    with (
        sentry_sdk.start_transaction(name="checkout"),
        busprop.publish(headers, system="c", destination="d") as s,
    ):
        assert s is None
    assert headers["sentry-trace"].endswith("-0")
    assert "sentry-sampled=false" in headers["baggage"]


def test_propagation_targets(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=[r"^orders$", "payments"])
    allowed: dict[str, Any] = {}
    denied: dict[str, Any] = {"keep": "me"}
    assert busprop.inject(allowed, destination="orders") is True
    assert busprop.inject(denied, destination="audit") is False
    assert busprop.inject({}, destination="eu.payments.v1") is True
    assert "sentry-trace" in allowed
    assert denied == {"keep": "me"}


def test_empty_propagation_targets_send_nothing(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=[])
    headers: dict[str, Any] = {}
    with sentry_sdk.start_transaction(name="t"), busprop.publish(headers, system="c", destination="orders"):
        pass
    assert headers == {}


def test_write_traceparent(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(write_traceparent=True)
    headers: dict[str, Any] = {}
    with sentry_sdk.start_transaction(name="t") as root:
        busprop.inject(headers, destination="d")
    assert headers["traceparent"] == f"00-{root.trace_id}-{root.span_id}-01"
    assert busprop.extract({"traceparent": headers["traceparent"]}).sentry_trace == headers["sentry-trace"]


def test_inject_bytes_into_pairs(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    headers: list[tuple[str, Any]] = [("sentry-trace", b"old"), ("app", b"1")]
    busprop.inject(headers, destination="t", as_bytes=True)
    assert [key for key, _ in headers] == ["sentry-trace", "app", "baggage"]
    assert all(isinstance(value, bytes) for _, value in headers)


def test_inject_never_raises_into_user_code(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    frozen: Any = frozenset()
    assert busprop.inject(frozen, destination="d") is False


def test_values_reused_within_one_span_follow_the_current_span(sentry_init: Init) -> None:
    """Sends from one span reuse its values; a new span, a new client or tracing off never do."""
    sentry_init(traces_sample_rate=0.0)
    sent: list[dict[str, Any]] = []

    def send() -> dict[str, Any]:
        sent.append({})
        busprop.inject(sent[-1], destination="orders")
        return sent[-1]

    with sentry_sdk.start_transaction(name="first") as first:
        assert send() == send()
        assert send()["sentry-trace"] == f"{first.trace_id}-{first.span_id}-0"
    with sentry_sdk.start_transaction(name="second") as second:
        assert send()["sentry-trace"] == f"{second.trace_id}-{second.span_id}-0"
        assert f"sentry-trace_id={second.trace_id}" in sent[-1]["baggage"]
    sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="third") as third:
        assert send()["sentry-trace"] == f"{third.trace_id}-{third.span_id}-1"
        with busprop.publish(sent[-1], system="custom", destination="orders") as span:
            assert span is not None and sent[-1]["sentry-trace"] == f"{third.trace_id}-{span.span_id}-1"
        busprop.configure(write_traceparent=True)
        assert send()["traceparent"] == f"00-{third.trace_id}-{third.span_id}-01"


def test_write_replaces_in_place_and_appends_to_a_new_list() -> None:
    pairs: list[tuple[str, Any]] = []
    busprop.carrier.write(pairs, {"sentry-trace": "a", "baggage": "sentry-x=1"}, as_bytes=True)
    assert pairs == [("sentry-trace", b"a"), ("baggage", b"sentry-x=1")]
    pairs = [("k", b"v"), ("baggage", b"vendor=1,sentry-x=0"), ("sentry-trace", b"old")]
    busprop.carrier.write(pairs, {"sentry-trace": "a", "baggage": "sentry-x=1"}, as_bytes=True)
    assert pairs == [("k", b"v"), ("baggage", b"vendor=1,sentry-x=1"), ("sentry-trace", b"a")]


def test_reused_baggage_serialization_sees_members_rewritten_in_place(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=None)
    incoming = {
        "sentry-trace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f",
        "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sample_rate=0.5,vendor=a",
    }
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    with busprop.propagation_scope(incoming):
        busprop.inject(first, destination="d")
        context = sentry_sdk.get_isolation_scope().get_active_propagation_context()
        assert context.baggage is not None
        context.baggage.sentry_items["sample_rate"] = "0.25"  # as the SDK does when a transaction starts
        busprop.inject(second, destination="d")
    assert "sentry-sample_rate=0.5" in first["baggage"] and "vendor=a" in first["baggage"]
    assert "sentry-sample_rate=0.25" in second["baggage"] and "vendor=a" in second["baggage"]


def test_with_tracing_disabled_values_follow_the_propagation_context_inside_one_span(
    sentry_init: Init,
) -> None:
    sentry_init(traces_sample_rate=None)
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    # sentry-sdk's continue_trace sets the isolation scope's trace: this test's own, not the process's
    with sentry_sdk.isolation_scope(), sentry_sdk.start_transaction(name="not traced"):
        busprop.inject(first, destination="d")
        sentry_sdk.continue_trace({"sentry-trace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"})
        busprop.inject(second, destination="d")
    assert not first["sentry-trace"].startswith("771a43a4192642f0b136d5159a501700")
    assert second["sentry-trace"].startswith("771a43a4192642f0b136d5159a501700-")


STALE = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
    "baggage": "vendor=kept,sentry-trace_id=0af7651916cd43dd8448eb211c80319c,sentry-sample_rand=0.1",
}


def without_baggage(values: Any) -> Any:
    """What the SDK gives in a process where ``sentry_sdk.init`` was never called: no baggage."""
    return None if values is None else {key: value for key, value in values.items() if key != "baggage"}


@pytest.mark.parametrize("write_traceparent", [False, True])
@pytest.mark.parametrize("sdk_state", ["not initialised", "tracing disabled", "sampled"])
def test_after_inject_the_carrier_holds_our_trace_once_and_nothing_stale(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch, sdk_state: str, write_traceparent: bool
) -> None:
    """A forwarded message kept the upstream ``traceparent``, and Sentry's upstream baggage when the
    SDK had none to write: a consumer continued the wrong trace, or ours with its sample_rand."""
    sentry_init(traces_sample_rate=1.0 if sdk_state == "sampled" else None)
    if sdk_state == "not initialised":
        outgoing = sdk.outgoing_values
        monkeypatch.setattr(sdk, "outgoing_values", lambda *args: without_baggage(outgoing(*args)))
    busprop.configure(write_traceparent=write_traceparent)
    pairs: list[tuple[str, Any]] = [("app", b"1"), *((key, value.encode()) for key, value in STALE.items())]
    pairs.append(("sentry-trace", STALE["sentry-trace"].encode()))
    mapping: dict[str, Any] = {"app": "1", **STALE}
    with (
        sentry_sdk.start_transaction(name="forwarder") if sdk_state == "sampled" else contextlib.nullcontext()
    ):
        assert busprop.inject(pairs, destination="orders", as_bytes=True) is True
        assert busprop.inject(mapping, destination="orders") is True
        ours = sentry_sdk.get_traceparent()
    assert ours is not None
    for headers in ({key: value.decode() for key, value in pairs}, mapping):
        assert headers["app"] == "1"
        assert headers["sentry-trace"].split("-")[:2] == ours.split("-")[:2]
        assert ("traceparent" in headers) is write_traceparent
        if write_traceparent:
            assert headers["traceparent"].split("-")[1:3] == ours.split("-")[:2]
        assert "0af7651916cd43dd8448eb211c80319c" not in headers["baggage"]
        assert "sentry-sample_rand=0.1" not in headers["baggage"].split(",")  # a member, not a prefix
        assert headers["baggage"].startswith("vendor=kept")
    names = [key for key, _ in pairs]
    assert sorted(names) == sorted({"app", "sentry-trace", "baggage", *(["traceparent"] * write_traceparent)})


def test_inject_outside_the_targets_never_touches_the_carrier(sentry_init: Init) -> None:
    """By design: busprop writes nothing for such a destination, and removes nothing either."""
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=["^orders$"])
    headers = dict(STALE)
    with sentry_sdk.start_transaction(name="forwarder"):
        assert busprop.inject(headers, destination="partner.audit") is False
    assert headers == STALE


@pytest.mark.parametrize("sampled", [False, True])
def test_publish_on_a_bus_follows_that_buss_integration(sentry_init: Init, sampled: bool) -> None:
    """``bus=`` applies the options given to that bus's Integration, inside a sampled span or not."""
    from busprop.kafka import KafkaIntegration

    sentry_init(
        traces_sample_rate=1.0 if sampled else None,
        integrations=[KafkaIntegration(write_traceparent=True, propagation_targets=["^orders$"])],
    )
    written: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        if sampled:
            stack.enter_context(sentry_sdk.start_transaction(name="producer"))
        for name, destination, bus in [
            ("kafka", "orders", KafkaIntegration.identifier),
            ("kafka elsewhere", "payments", KafkaIntegration.identifier),
            ("global", "orders", None),
        ]:
            headers = written[name] = {}
            with busprop.publish(headers, system="kafka", destination=destination, bus=bus) as span:
                assert (span is not None) is sampled
    assert set(written["kafka"]) == {"sentry-trace", "baggage", "traceparent"}
    assert written["kafka elsewhere"] == {}
    assert set(written["global"]) == {"sentry-trace", "baggage"}
    span_id = written["kafka"]["sentry-trace"].split("-")[1]
    assert written["kafka"]["traceparent"].split("-")[2] == span_id


def test_inject_on_a_bus_follows_that_buss_integration(sentry_init: Init) -> None:
    from busprop.kafka import KafkaIntegration

    sentry_init(
        traces_sample_rate=1.0,
        integrations=[KafkaIntegration(write_traceparent=True, propagation_targets=["^orders$"])],
    )
    on_the_bus: dict[str, Any] = {}
    elsewhere: dict[str, Any] = {}
    unnamed: dict[str, Any] = {}
    assert busprop.inject(on_the_bus, destination="orders", bus=KafkaIntegration.identifier) is True
    assert busprop.inject(elsewhere, destination="payments", bus=KafkaIntegration.identifier) is False
    assert busprop.inject(unnamed, destination="payments") is True  # busprop.configure's: every destination
    assert set(on_the_bus) == {"sentry-trace", "baggage", "traceparent"}
    assert elsewhere == {}
    assert set(unnamed) == {"sentry-trace", "baggage"}


@pytest.mark.parametrize("make", [collections.OrderedDict, collections.UserDict, collections.UserList])
def test_inject_writes_into_any_mutable_mapping_or_list(sentry_init: Init, make: Callable[[], Any]) -> None:
    sentry_init(traces_sample_rate=1.0)
    carrier = make()
    assert busprop.inject(carrier, destination="orders") is True
    keys = set(carrier) if isinstance(carrier, collections.abc.Mapping) else {key for key, _ in carrier}
    assert keys == {"sentry-trace", "baggage"}


@pytest.mark.parametrize("carrier", [bytearray(b"sentry-trace"), "sentry-trace", (), frozenset()])
def test_inject_never_writes_into_what_is_no_carrier(sentry_init: Init, carrier: Any) -> None:
    sentry_init(traces_sample_rate=1.0)
    before = copy.copy(carrier)
    assert busprop.inject(carrier, destination="orders") is False
    assert carrier == before


def test_inject_without_values_from_the_sdk_writes_nothing_and_says_so(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defensive: sentry-sdk always has a trace to give today; if it had none, nothing is written."""
    sentry_init(traces_sample_rate=1.0)
    monkeypatch.setattr(sdk, "outgoing_values", lambda with_traceparent=False: None)
    carrier: dict[str, Any] = {}
    assert busprop.inject(carrier, destination="orders") is False
    assert carrier == {}


def test_start_publish_for_an_integration_the_client_lacks_does_nothing(sentry_init: Init) -> None:
    """A patched send asks for its Integration: a client without it gets the send as it was."""
    from busprop.kafka import KafkaIntegration
    from busprop.publishing import NOT_ENABLED, Route, finish_publish, start_publish

    route = Route("kafka")  # values as str unless a route asks for bytes
    sentry_init(traces_sample_rate=1.0)
    headers: dict[str, Any] = {}
    with sentry_sdk.start_transaction(name="producer"):
        assert start_publish(route, headers, "orders", integration=KafkaIntegration.identifier) is NOT_ENABLED
    assert headers == {}
    captured = sentry_init(traces_sample_rate=1.0, integrations=[KafkaIntegration()])
    with sentry_sdk.start_transaction(name="producer") as root:
        span = start_publish(
            route, headers, "orders", name="order 7", integration=KafkaIntegration.identifier
        )
        assert not isinstance(span, type(NOT_ENABLED))
        finish_publish(span)
    (producer,) = captured.transactions()
    (publish_span,) = producer["spans"]
    assert publish_span["description"] == "order 7"
    assert headers["sentry-trace"] == f"{root.trace_id}-{publish_span['span_id']}-1"


@pytest.mark.parametrize("make", [collections.UserDict, collections.UserList])
def test_publish_names_its_span_and_writes_into_any_mutable_mapping_or_list(
    sentry_init: Init, make: Callable[[], Any]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    carrier = make()
    with (
        sentry_sdk.start_transaction(name="producer"),
        busprop.publish(carrier, system="custom", destination="orders", name="order 7") as span,
    ):
        assert span is not None
    keys = set(carrier) if isinstance(carrier, collections.abc.Mapping) else {key for key, _ in carrier}
    assert keys == {"sentry-trace", "baggage"}
    (producer,) = captured.transactions()
    assert producer["spans"][0]["description"] == "order 7"


def test_outgoing_values_follow_each_unsampled_span_under_one_continued_trace(sentry_init: Init) -> None:
    """Reused values are keyed on the current span when there is one: two unsampled transactions
    under one continued (frozen) propagation context must not share the first one's headers."""
    sentry_init(traces_sample_rate=0.0)
    incoming = {
        "sentry-trace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-0",
        "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sampled=false,sentry-sample_rand=0.5",
    }
    with sentry_sdk.isolation_scope():
        sentry_sdk.continue_trace(incoming)
        for name in ("first", "second"):
            with sentry_sdk.start_transaction(name=name, sampled=False) as transaction:
                headers: dict[str, Any] = {}
                with busprop.publish(headers, system="custom", destination="orders") as span:
                    assert span is None  # an unsampled parent: no span, the current span's values
                assert headers["sentry-trace"] == f"{transaction.trace_id}-{transaction.span_id}-0"


@pytest.mark.parametrize("sampled", [True, False])
def test_publish_writes_under_the_callers_keys(sentry_init: Init, sampled: bool) -> None:
    """A carrier with its own names (as WebSocket metadata's ``sentryTrace``) gets them, and only
    them, from ``publish`` (the span's values, or the current trace's without one) and ``inject``."""
    sentry_init(traces_sample_rate=1.0)
    carrier: dict[str, Any] = {}
    keys = busprop.CarrierKeys(sentry_trace="sentryTrace")
    with contextlib.ExitStack() as stack:
        if sampled:
            stack.enter_context(sentry_sdk.start_transaction(name="producer"))
        with busprop.publish(carrier, system="c", destination="d", keys=keys) as span:
            assert (span is not None) is sampled
        injected: dict[str, Any] = {}
        assert busprop.inject(injected, destination="d", keys=keys) is True
    assert set(carrier) == set(injected) == {"sentryTrace", "baggage"}


class Destination(str):
    """A ``str`` subclass, as some frameworks hand out for names."""


def test_a_str_subclass_destination_is_matched_as_the_string_it_holds(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    written: dict[str, Any] = {}
    with busprop.publish(written, system="c", destination=Destination("orders")):
        pass
    assert set(written) == {"sentry-trace", "baggage"}
    from busprop.kafka import KafkaIntegration

    sentry_init(traces_sample_rate=1.0, integrations=[KafkaIntegration(propagation_targets=["^payments$"])])
    on_the_bus: dict[str, Any] = {}
    with busprop.publish(
        on_the_bus, system="kafka", destination=Destination("orders"), bus=KafkaIntegration.identifier
    ):
        pass
    assert on_the_bus == {}  # the bus's own targets apply to it as to a plain str
    busprop.configure(propagation_targets=["^payments$"])
    outside: dict[str, Any] = {}
    with busprop.publish(outside, system="c", destination=Destination("orders")):
        pass
    assert outside == {}
