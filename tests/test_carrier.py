"""Reading and writing trace headers in every container shape buses use."""

from __future__ import annotations

import pytest

from busprop.carrier import NO_TRACE, CarrierKeys, extract, write

TRACE = "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"
OTHER = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"


def test_mapping_of_str() -> None:
    trace = extract({"sentry-trace": TRACE, "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700"})
    assert trace.sentry_trace == TRACE
    assert trace.baggage == "sentry-trace_id=771a43a4192642f0b136d5159a501700"
    assert trace.sampled is True


def test_list_of_bytes_pairs_first_usable_value_wins() -> None:
    headers = [
        ("sentry-trace", b"garbage"),
        ("sentry-trace", TRACE.encode()),
        ("sentry-trace", OTHER.encode()),
    ]
    assert extract(headers).sentry_trace == TRACE


def test_tuple_pairs_and_list_pairs() -> None:
    assert extract((("sentry-trace", TRACE.encode()),)).sentry_trace == TRACE
    assert extract([["sentry-trace", TRACE]]).sentry_trace == TRACE


def test_several_containers_are_searched_in_order() -> None:
    outer: dict[str, object] = {"id": 1}
    inner = {"sentry-trace": OTHER}
    assert extract(outer, inner).sentry_trace == OTHER
    assert extract({"sentry-trace": TRACE}, inner).sentry_trace == TRACE
    assert extract(None, inner).sentry_trace == OTHER


def test_baggage_without_sentry_trace_is_no_trace() -> None:
    assert extract({"baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700"}) is NO_TRACE


def test_undecided_flag() -> None:
    assert extract({"sentry-trace": TRACE[:-2]}).sampled is None
    assert extract({"sentry-trace": OTHER}).sampled is False


def test_traceparent_only_is_continued_with_its_flag() -> None:
    trace = extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert trace.sentry_trace == "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"
    unsampled = extract([("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")])
    assert unsampled.sampled is False


def test_sentry_trace_wins_over_traceparent() -> None:
    trace = extract(
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "sentry-trace": TRACE}
    )
    assert trace.sentry_trace == TRACE


def test_custom_keys() -> None:
    keys = CarrierKeys(sentry_trace="sentryTrace")
    assert extract({"sentryTrace": TRACE}, keys=keys).sentry_trace == TRACE
    metadata: dict[str, object] = {"other": 1}
    write(metadata, {"sentry-trace": TRACE, "baggage": "sentry-a=b"}, keys=keys)
    assert metadata == {"other": 1, "sentryTrace": TRACE, "baggage": "sentry-a=b"}


def test_write_replaces_in_place_and_keeps_order() -> None:
    headers = {"a": "1", "sentry-trace": OTHER, "b": "2"}
    write(headers, {"sentry-trace": TRACE})
    assert list(headers.items()) == [("a", "1"), ("sentry-trace", TRACE), ("b", "2")]


def test_write_pairs_replaces_first_removes_later_copies_keeps_others() -> None:
    headers: list[tuple[str, object]] = [
        ("a", b"1"),
        ("sentry-trace", OTHER.encode()),
        ("b", b"2"),
        ("sentry-trace", b"dup"),
        ("c", b"3"),
    ]
    write(headers, {"sentry-trace": TRACE}, as_bytes=True)
    assert headers == [("a", b"1"), ("sentry-trace", TRACE.encode()), ("b", b"2"), ("c", b"3")]


def test_write_pairs_appends_when_absent() -> None:
    headers: list[tuple[str, object]] = [("a", b"1")]
    write(headers, {"sentry-trace": TRACE, "baggage": "sentry-x=1"}, as_bytes=True)
    assert headers == [("a", b"1"), ("sentry-trace", TRACE.encode()), ("baggage", b"sentry-x=1")]


def test_write_merges_baggage_keeping_third_party_members() -> None:
    headers = {"baggage": "vendor=1,sentry-trace_id=old,other=two"}
    write(headers, {"baggage": "sentry-trace_id=new,sentry-sampled=true"})
    assert headers["baggage"] == "vendor=1,other=two,sentry-trace_id=new,sentry-sampled=true"


def test_write_merges_bytes_baggage_in_pairs() -> None:
    headers: list[tuple[str, object]] = [("baggage", b"vendor=1")]
    write(headers, {"baggage": "sentry-trace_id=new"}, as_bytes=True)
    assert headers == [("baggage", b"vendor=1,sentry-trace_id=new")]


@pytest.mark.parametrize("container", [{}, []])
def test_round_trip(container: dict[str, object] | list[tuple[str, object]]) -> None:
    write(
        container,
        {"sentry-trace": TRACE, "baggage": "sentry-sample_rand=0.5"},
        as_bytes=isinstance(container, list),
    )
    trace = extract(container)
    assert trace.sentry_trace == TRACE
    assert trace.baggage == "sentry-sample_rand=0.5"


def test_a_carrier_wins_as_a_whole() -> None:
    first = {"sentry-trace": TRACE}
    second = {"sentry-trace": OTHER, "baggage": "sentry-trace_id=0af7651916cd43dd8448eb211c80319c"}
    assert extract(first, second) == extract(first)
    assert extract({"baggage": "sentry-a=b"}, second).baggage == second["baggage"]


def test_sentry_trace_in_a_later_carrier_beats_traceparent_in_an_earlier_one() -> None:
    first = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert extract(first, {"sentry-trace": TRACE}).sentry_trace == TRACE
