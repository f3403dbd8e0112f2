"""Reading and writing trace headers in every container shape buses use."""

from __future__ import annotations

from collections import UserList
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- no stale trace header survives a write ------------------------------------------------------

STALE_TRACE = OTHER.encode()
STALE_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("as_bytes", [False, True])
def test_write_removes_trace_headers_the_outgoing_trace_does_not_have(as_bytes: bool) -> None:
    """A stale ``traceparent`` or Sentry-only ``baggage`` survived next to the new ``sentry-trace``."""
    pairs: list[tuple[str, object]] = [
        ("traceparent", STALE_TRACEPARENT.encode()),
        ("sentry-trace", STALE_TRACE),
        ("baggage", b"sentry-trace_id=0af7651916cd43dd8448eb211c80319c,sentry-sampled=true"),
        ("app", b"1"),
        ("sentry-trace", STALE_TRACE),
    ]
    write(pairs, {"sentry-trace": TRACE}, as_bytes=as_bytes)
    assert pairs == [("sentry-trace", TRACE.encode() if as_bytes else TRACE), ("app", b"1")]
    mapping: dict[str, object] = {
        "traceparent": STALE_TRACEPARENT,
        "baggage": "sentry-sampled=true",
        "app": "1",
    }
    write(mapping, {"sentry-trace": TRACE})
    assert mapping == {"app": "1", "sentry-trace": TRACE}


def test_write_keeps_third_party_baggage_members_when_the_trace_has_no_baggage() -> None:
    headers = {"baggage": "vendor=1,sentry-trace_id=0af7651916cd43dd8448eb211c80319c,other=2"}
    write(headers, {"sentry-trace": TRACE})
    assert headers == {"baggage": "vendor=1,other=2", "sentry-trace": TRACE}


def test_write_changes_nothing_when_a_pair_cannot_be_compared() -> None:
    class Unequal:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no comparison")

        __hash__ = None  # type: ignore[assignment]

    odd = (Unequal(), b"x")
    pairs: list[object] = [("sentry-trace", STALE_TRACE), odd, ("baggage", b"sentry-a=b")]
    with pytest.raises(RuntimeError):  # inject catches it; the container must be as it was
        write(pairs, {"sentry-trace": TRACE, "baggage": "sentry-b=c"}, as_bytes=True)  # type: ignore[arg-type]
    assert pairs == [("sentry-trace", STALE_TRACE), odd, ("baggage", b"sentry-a=b")]


HEADER_KEY = st.sampled_from(["sentry-trace", "baggage", "traceparent", "app", "other"])
HEADER_VALUE = st.one_of(
    st.sampled_from(
        [TRACE, OTHER, STALE_TRACEPARENT, "vendor=1", "sentry-sampled=true,vendor=2", "sentry-x=1"]
    ),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.none(),
)
OUTGOING = st.fixed_dictionaries(
    {"sentry-trace": st.just(TRACE)},
    optional={
        "baggage": st.sampled_from(
            ["sentry-trace_id=771a43a4192642f0b136d5159a501700", "sentry-a=b,vendor=3"]
        ),
        "traceparent": st.just("00-771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-01"),
    },
)


def _members(value: object) -> list[str]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return [member.split("=", 1)[0] for member in text.split(",")]


@given(
    items=st.lists(st.tuples(HEADER_KEY, HEADER_VALUE), max_size=8),
    as_mapping=st.booleans(),
    outgoing=OUTGOING,
    as_bytes=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_after_a_write_each_trace_header_is_there_once_and_none_is_stale(
    items: list[tuple[str, object]], as_mapping: bool, outgoing: dict[str, str], as_bytes: bool
) -> None:
    container: Any = dict(items) if as_mapping else list(items)
    others = [(key, value) for key, value in (container.items() if as_mapping else container)]
    others = [(key, value) for key, value in others if key not in ("sentry-trace", "baggage", "traceparent")]
    write(container, outgoing, as_bytes=as_bytes)
    after = list(container.items()) if as_mapping else list(container)
    keys = [key for key, _ in after]
    assert [(key, value) for key, value in after if key in ("app", "other")] == others  # in place, in order
    encoded = {key: value.encode() if as_bytes else value for key, value in outgoing.items()}
    assert keys.count("sentry-trace") == 1 and dict(after)["sentry-trace"] == encoded["sentry-trace"]
    if "traceparent" in outgoing:
        assert keys.count("traceparent") == 1 and dict(after)["traceparent"] == encoded["traceparent"]
    else:
        assert "traceparent" not in keys
    assert keys.count("baggage") <= 1
    if "baggage" in keys:
        members = _members(dict(after)["baggage"])
        ours = _members(outgoing.get("baggage", ""))
        assert [member for member in members if member.startswith("sentry-")] == [
            member for member in ours if member.startswith("sentry-")
        ], "Sentry members come from the outgoing trace only"
    else:
        assert "baggage" not in outgoing


def test_write_rewrites_a_sequence_that_is_not_a_list() -> None:
    headers: UserList[tuple[str, object]] = UserList(
        [("app", b"1"), ("traceparent", STALE_TRACEPARENT.encode()), ("sentry-trace", STALE_TRACE)]
    )
    write(headers, {"sentry-trace": TRACE, "baggage": "sentry-a=b"}, as_bytes=True)
    assert list(headers) == [("app", b"1"), ("sentry-trace", TRACE.encode()), ("baggage", b"sentry-a=b")]


def test_new_header_lists_written_with_the_same_values_follow_the_encoding_and_keys() -> None:
    """A producer writes the same values object into message after message; what is reused must
    still be in the encoding and under the keys of each call."""
    values = {"sentry-trace": TRACE, "baggage": "sentry-a=b"}
    as_text: list[tuple[str, Any]] = []
    write(as_text, values)
    as_bytes: list[tuple[str, Any]] = []
    write(as_bytes, values, as_bytes=True)
    renamed: list[tuple[str, Any]] = []
    write(renamed, values, keys=CarrierKeys(sentry_trace="sentryTrace"), as_bytes=True)
    again: list[tuple[str, Any]] = []
    write(again, values)
    assert as_text == again == [("sentry-trace", TRACE), ("baggage", "sentry-a=b")]
    assert as_bytes == [("sentry-trace", TRACE.encode()), ("baggage", b"sentry-a=b")]
    assert renamed == [("sentryTrace", TRACE.encode()), ("baggage", b"sentry-a=b")]


@pytest.mark.parametrize("blank", ["", " ", "   "])
def test_a_blank_baggage_is_no_baggage(blank: str) -> None:
    """W3C baggage has at least one member: an empty or blank header is read as absent."""
    from busprop.carrier import parse_baggage

    assert parse_baggage(blank) is None
    assert parse_baggage(blank.encode()) is None
    incoming = extract({"sentry-trace": f"{'a' * 32}-{'b' * 16}-1", "baggage": blank})
    assert incoming.baggage is None


def test_only_lists_and_tuples_are_header_pairs() -> None:
    """A list of headers holds ``(name, value)`` pairs as tuples or lists: any other two-item
    container (a user list, a dict of two keys) is not a header, whatever it unpacks to."""
    trace = f"{'a' * 32}-{'b' * 16}-1"
    assert extract([("sentry-trace", trace)]) is not NO_TRACE
    assert extract([UserList(["sentry-trace", trace])]) is NO_TRACE
    assert extract([{"sentry-trace": None, trace: None}]) is NO_TRACE


@pytest.mark.parametrize("make", [list, UserList])
def test_write_into_an_empty_sequence_encodes_as_asked(make: Any) -> None:
    values = {"sentry-trace": f"{'a' * 32}-{'b' * 16}-1", "baggage": "sentry-trace_id=" + "a" * 32}
    carrier = make()
    write(carrier, values, as_bytes=True)
    assert list(carrier) == [(name, value.encode()) for name, value in values.items()]
