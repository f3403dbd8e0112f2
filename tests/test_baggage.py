"""Baggage merging: Sentry's members replaced, third-party members kept, the W3C cap enforced."""

from __future__ import annotations

from busprop.baggage import MAX_LENGTH, MAX_MEMBERS, has_only_sentry_members, merge_baggage


def test_sentry_members_replaced_others_kept_in_order() -> None:
    merged = merge_baggage("a=1,sentry-trace_id=old,b=2", "sentry-trace_id=new,sentry-sample_rand=0.25")
    assert merged == "a=1,b=2,sentry-trace_id=new,sentry-sample_rand=0.25"


def test_third_party_members_of_the_continued_trace_are_added_once() -> None:
    merged = merge_baggage("a=1", "a=9,c=3,sentry-trace_id=x")
    assert merged == "a=1,c=3,sentry-trace_id=x"


def test_properties_and_spaces_survive() -> None:
    merged = merge_baggage(" userId=alice;prop , x=%2F", "sentry-trace_id=x")
    assert merged == "userId=alice;prop,x=%2F,sentry-trace_id=x"


def test_no_existing_baggage() -> None:
    assert merge_baggage(None, "sentry-trace_id=x") == "sentry-trace_id=x"
    assert merge_baggage("", "") == ""


def test_cap_drops_whole_third_party_members_first() -> None:
    big = ",".join(f"k{i}={'v' * 100}" for i in range(100))
    sentry = "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sampled=true"
    merged = merge_baggage(big, sentry)
    assert len(merged) <= MAX_LENGTH
    assert merged.endswith(sentry)
    members = merged.split(",")
    assert all(member.startswith("k") and member.endswith("v" * 100) for member in members[:-2])


def test_member_count_cap() -> None:
    many = ",".join(f"k{i}=v" for i in range(300))
    merged = merge_baggage(many, "sentry-trace_id=x")
    assert len(merged.split(",")) == MAX_MEMBERS
    assert merged.endswith("sentry-trace_id=x")


def test_a_baggage_of_exactly_the_maximum_length_is_kept_whole() -> None:
    members = ["a=" + "1" * 3998, "b=" + "2" * 3998, "c=" + "3" * 188]  # 4000 + 1 + 4000 + 1 + 190
    merged = merge_baggage(None, ",".join([*members, "sentry-trace_id=x"]))
    assert merged.split(",") == [*members[:2], "sentry-trace_id=x"]  # room for Sentry's member first
    exact = merge_baggage(None, ",".join(members))
    assert len(exact) == MAX_LENGTH
    assert exact.split(",") == members


def test_a_key_repeated_in_the_outgoing_baggage_is_kept_once() -> None:
    assert merge_baggage(None, "vendor=1,vendor=2,sentry-trace_id=x") == "vendor=1,sentry-trace_id=x"
    assert merge_baggage("vendor=0", "vendor=1,other=2") == "vendor=0,other=2"


def test_only_sentry_members_whatever_the_blanks() -> None:
    assert has_only_sentry_members(" sentry-trace_id=x , sentry-sample_rand=0.5,,")
    assert not has_only_sentry_members("sentry-trace_id=x,vendor=1")
    assert not has_only_sentry_members("sentry-trace_id=x, vendor=1 sentry-a=1")
