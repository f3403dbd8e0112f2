"""What the SDK seam's functions do on their own, without a broker.

The adapters reach most of ``busprop/sdk.py`` through real brokers; the functions below are the ones
only the Celery Integration, ``busprop inspect`` and error reporting use, pinned here one by one so
that the fast tests (and ``./dev.sh mutate``, which runs only those) check what each returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations import _installed_integrations
from sentry_sdk.integrations.argv import ArgvIntegration
from sentry_sdk.tracing_utils import PropagationContext
from sentry_sdk.transport import Transport

from busprop import sdk
from busprop.carrier import IncomingTrace
from busprop.client_cache import BoundedMap
from tests.conftest import Captured

Init = Callable[..., Captured]
LEAD = "busprop_test_lead"
TRACE = "771a43a4192642f0b136d5159a501700"
PARENT = "b01e1e1e1e1e1e1e"


class Lead(sdk.Integration):
    """An integration that leads over sentry-sdk's auto-enabled ``argv`` in these tests."""

    identifier = LEAD
    set_up = 0
    flavour = "plain"

    @staticmethod
    def setup_once() -> None:
        Lead.set_up += 1


@pytest.fixture
def leading() -> Iterator[None]:
    """``Lead`` deactivates ``argv`` for the test, and nothing of it is left after."""
    assert sdk.deactivate_auto_enabled(LEAD, "argv")
    yield
    sdk.restore_auto_enabled(LEAD)
    sdk.forget_integration(LEAD)


def test_a_leading_integration_leaves_the_auto_enabled_one_out_and_says_so(
    sentry_init: Init, leading: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="busprop")
    sentry_init(integrations=[Lead()])
    enabled = sentry_sdk.get_client().integrations
    assert LEAD in enabled
    assert "argv" not in enabled
    assert "dedupe" in enabled  # only the one it leads over
    assert [record.getMessage() for record in caplog.records if record.name == "busprop"] == [
        f"busprop: {LEAD} leads; sentry-sdk's argv integration is left out"
    ]
    assert {record.levelno for record in caplog.records if record.name == "busprop"} == {logging.INFO}


def test_the_deactivated_integration_stays_when_the_user_lists_it(sentry_init: Init, leading: None) -> None:
    sentry_init(integrations=[Lead(), ArgvIntegration()])
    assert {LEAD, "argv"} <= set(sentry_sdk.get_client().integrations)


def test_without_the_leader_nothing_is_left_out(sentry_init: Init, leading: None) -> None:
    sentry_init()
    assert "argv" in sentry_sdk.get_client().integrations


def test_the_choice_is_made_the_same_when_the_sdk_names_its_arguments(leading: None) -> None:
    setup_integrations = sdk._client_module().setup_integrations
    try:
        by_keyword = setup_integrations(integrations=[Lead()], with_defaults=True)
        listed = setup_integrations(integrations=[Lead(), ArgvIntegration()], with_defaults=True)
    finally:
        sdk.forget_integration(LEAD)
    assert LEAD in by_keyword
    assert "argv" not in by_keyword
    assert "argv" in listed


def test_restoring_the_last_leader_puts_the_sdk_back(sentry_init: Init) -> None:
    original = sdk._client_module().setup_integrations
    assert sdk.deactivate_auto_enabled(LEAD, "argv")
    assert sdk.deactivate_auto_enabled(LEAD + "_2", "argv")
    assert sdk._client_module().setup_integrations is not original
    sdk.restore_auto_enabled(LEAD)
    assert sdk._client_module().setup_integrations is not original  # the second leader still leads
    sentry_init(integrations=[Lead()])
    assert "argv" in sentry_sdk.get_client().integrations  # LEAD no longer leads
    sdk.restore_auto_enabled(LEAD + "_2")
    sdk.forget_integration(LEAD)
    assert sdk._client_module().setup_integrations is original


def test_a_forgotten_integration_is_set_up_again_by_the_next_init(sentry_init: Init) -> None:
    before = Lead.set_up
    sentry_init(integrations=[Lead()])
    sentry_init(integrations=[Lead()])
    assert Lead.set_up == before + 1  # once per process
    assert LEAD in _installed_integrations
    sdk.forget_integration(LEAD)
    assert LEAD not in _installed_integrations
    sentry_init(integrations=[Lead()])
    assert Lead.set_up == before + 2
    sdk.forget_integration(LEAD)


def test_which_integrations_the_user_listed(sentry_init: Init) -> None:
    sentry_init(integrations=[Lead()])
    try:
        assert sdk.user_listed_integration(LEAD)
        assert not sdk.user_listed_integration("argv")  # enabled by default, not listed
        assert sdk.integration_enabled(Lead)
        assert sdk.integration_enabled("argv")
        assert not sdk.integration_enabled("busprop_absent")
        assert sdk.enabled_integration_attribute(LEAD, "flavour") == "plain"
        assert sdk.enabled_integration_attribute(LEAD, "colour") is None
        assert sdk.enabled_integration_attribute("busprop_absent", "flavour") is None
        assert LEAD in sdk.enabled_integrations()
    finally:
        sdk.forget_integration(LEAD)
    sentry_init()
    assert not sdk.user_listed_integration(LEAD)
    assert not sdk.integration_enabled(LEAD)


@pytest.mark.parametrize("handled", [False, True])
def test_capture_exception_names_busprop_as_the_mechanism(sentry_init: Init, handled: bool) -> None:
    captured = sentry_init()
    try:
        raise ValueError("the handler's own")
    except ValueError as error:
        sdk.capture_exception(error, mechanism="busprop.test", handled=handled)
    (event,) = captured.errors()
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "the handler's own"
    assert exception["mechanism"]["type"] == "busprop.test"
    assert exception["mechanism"]["handled"] is handled


def test_capture_exception_is_unhandled_by_default(sentry_init: Init) -> None:
    captured = sentry_init()
    sdk.capture_exception(KeyError("k"), mechanism="busprop.test")
    (event,) = captured.errors()
    assert event["exception"]["values"][0]["mechanism"] == {"type": "busprop.test", "handled": False}


def test_capture_exception_without_a_client_does_nothing(sentry_init: Init) -> None:
    captured = sentry_init()
    sentry_sdk.get_global_scope().set_client(None)  # as before sentry_sdk.init
    assert not sentry_sdk.get_client().is_active()
    sdk.capture_exception(ValueError("nobody"), mechanism="busprop.test")
    assert captured.errors() == []


class Kept(Transport):
    """A transport that keeps what it is given (the diagnosis's local transport)."""

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.given = options

    def capture_envelope(self, envelope: Any) -> None:
        pass


def test_keep_envelopes_local_swaps_the_transport_and_kills_the_old_one(sentry_init: Init) -> None:
    sentry_init(spotlight=False)
    client = sentry_sdk.get_client()
    previous = client.transport
    assert previous is not None
    killed: list[bool] = []
    previous.kill = lambda: killed.append(True)  # type: ignore[method-assign]
    client.spotlight = object()  # type: ignore[assignment]
    sdk.keep_envelopes_local(Kept)
    assert isinstance(client.transport, Kept)
    assert client.transport.given is client.options
    assert client.spotlight is None
    assert killed == [True]


def test_keep_envelopes_local_without_a_dsn_changes_nothing() -> None:
    sentry_sdk.init()
    client = sentry_sdk.get_client()
    before = getattr(client, "transport", None)
    sdk.keep_envelopes_local(Kept)
    assert getattr(client, "transport", None) is before


@pytest.mark.parametrize(
    ("dsn", "org"),
    [("https://key@o123.ingest.sentry.io/1", "123"), ("http://public@127.0.0.1/1", None)],
)
def test_client_org_id_comes_from_the_dsn(sentry_init: Init, dsn: str, org: str | None) -> None:
    sentry_init(dsn=dsn)
    assert sdk.client_org_id() == org


def test_client_org_id_option_wins(sentry_init: Init) -> None:
    sentry_init(dsn="https://key@o123.ingest.sentry.io/1", org_id="456")
    assert sdk.client_org_id() == "456"


def test_no_client_has_no_org_id() -> None:
    sentry_sdk.init()
    assert sdk.client_org_id() is None


def test_parse_incoming_reads_ids_decision_and_members() -> None:
    facts = sdk.parse_incoming(
        IncomingTrace(f"{TRACE}-{PARENT}-1", "sentry-sample_rand=0.25,sentry-org_id=7,vendor=a,other=b")
    )
    assert facts == sdk.TraceFacts(
        trace_id=TRACE,
        parent_span_id=PARENT,
        sampled=True,
        sentry_items={"sample_rand": "0.25", "org_id": "7"},
        third_party=("vendor=a", "other=b"),
    )


@pytest.mark.parametrize(("suffix", "sampled"), [("-0", False), ("", None)])
def test_parse_incoming_decision(suffix: str, sampled: bool | None) -> None:
    facts = sdk.parse_incoming(IncomingTrace(f"{TRACE}-{PARENT}{suffix}", None))
    assert facts is not None
    assert facts.sampled is sampled
    assert facts.sentry_items == {}
    assert facts.third_party == ()


def test_parse_incoming_of_junk_is_none() -> None:
    assert sdk.parse_incoming(IncomingTrace("junk", "sentry-sample_rand=0.5")) is None


def test_continued_trace_is_what_the_scope_continued(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.isolation_scope():
        sentry_sdk.continue_trace(
            {
                "sentry-trace": f"{TRACE}-{PARENT}-0",
                "baggage": f"sentry-trace_id={TRACE},sentry-sample_rand=0.5,vendor=x",
            }
        )
        facts = sdk.continued_trace()
    assert facts.trace_id == TRACE
    assert facts.parent_span_id == PARENT
    assert facts.sampled is False
    assert facts.sentry_items == {"trace_id": TRACE, "sample_rand": "0.5"}
    assert facts.third_party == ("vendor=x",)


@pytest.mark.parametrize(
    ("baggage", "org_id", "strict", "allowed"),
    [
        ("sentry-org_id=7", "7", True, True),
        ("sentry-org_id=8", "7", False, False),
        (None, "7", False, True),
        (None, "7", True, False),
        (None, None, True, True),
    ],
)
def test_org_allows_continuation_as_the_sdk_decides(
    sentry_init: Init, baggage: str | None, org_id: str | None, strict: bool, allowed: bool
) -> None:
    options: dict[str, Any] = {"strict_trace_continuation": strict}
    if org_id is not None:
        options["org_id"] = org_id
    sentry_init(**options)
    assert sdk.org_allows_continuation(IncomingTrace(f"{TRACE}-{PARENT}-1", baggage)) is allowed


def test_scopes_are_entered_as_they_are_and_an_isolation_scope_with_a_fork_of_the_current(
    sentry_init: Init,
) -> None:
    sentry_init()
    with sentry_sdk.isolation_scope():
        scopes = sdk.current_scopes()
        with sdk.in_scopes(scopes):
            assert sentry_sdk.get_current_scope() is scopes[0]
        with sdk.in_isolation_scope(scopes[1]) as isolation:
            assert isolation is scopes[1]
            assert sdk.current_isolation_scope() is scopes[1]
            assert sentry_sdk.get_current_scope() is not scopes[0]
            sentry_sdk.get_current_scope().set_tag("fork", "yes")
        assert "fork" not in scopes[0]._tags


def test_tracing_enabled_and_client_initialised(sentry_init: Init) -> None:
    sentry_init()
    assert sdk.client_initialised()
    assert not sdk.tracing_enabled()
    sentry_init(traces_sample_rate=0.0)
    assert sdk.tracing_enabled()
    sentry_sdk.get_global_scope().set_client(None)
    assert not sdk.client_initialised()


def test_an_sdk_without_the_choice_of_integrations_cannot_be_led(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk, "_client_module", lambda: object())
    assert sdk.deactivate_auto_enabled(LEAD, "argv") is False
    assert LEAD not in sdk._deactivated_by


def test_restoring_a_leader_never_registered_changes_nothing() -> None:
    before = dict(sdk._deactivated_by)
    sdk.restore_auto_enabled("busprop_never_registered")
    assert sdk._deactivated_by == before


def test_the_choice_of_integrations_reads_past_an_object_without_an_identifier(leading: None) -> None:
    def choose(integrations: list[Any], with_defaults: bool) -> dict[str, Any]:
        return {LEAD: Lead(), "argv": ArgvIntegration(), "dedupe": object()}

    chosen = sdk._leave_out_deactivated(choose, None, ([object(), Lead()],), {"with_defaults": True})
    assert set(chosen) == {LEAD, "dedupe"}


def test_an_object_without_an_identifier_is_not_a_listed_integration(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentry_init(integrations=[ArgvIntegration()])
    options = sentry_sdk.get_client().options
    monkeypatch.setitem(options, "integrations", [object(), *options["integrations"]])
    assert sdk.user_listed_integration("argv")
    assert not sdk.user_listed_integration("busprop_kafka")


def test_version_numbers_past_the_third_are_ignored() -> None:
    assert sdk._version_tuple("2.76.0.1") == (2, 76, 0)
    assert sdk._version_tuple("3") == (3, 0, 0)


def test_continued_trace_of_a_fresh_scope_has_no_members(sentry_init: Init) -> None:
    sentry_init()
    with sentry_sdk.isolation_scope() as scope:
        scope._propagation_context = PropagationContext()  # as the SDK starts one: no baggage yet
        facts = sdk.continued_trace()
    assert facts.sentry_items == {}
    assert facts.third_party == ()
    assert facts.parent_span_id is None


def test_continued_trace_lists_every_third_party_member(sentry_init: Init) -> None:
    sentry_init()
    with sentry_sdk.isolation_scope():
        sentry_sdk.continue_trace(
            {"sentry-trace": f"{TRACE}-{PARENT}-1", "baggage": "vendor=x,sentry-sample_rand=0.5,other=y z"}
        )
        facts = sdk.continued_trace()
    assert facts.third_party == ("vendor=x", "other=y z")


@pytest.mark.parametrize("rate", [None, 1.0])
def test_outgoing_values_are_reused_while_nothing_they_depend_on_changes(
    sentry_init: Init, rate: float | None
) -> None:
    """Classic mode; a span's values with tracing enabled, the propagation context's without."""
    sentry_init(traces_sample_rate=rate)
    incoming = {"sentry-trace": f"{TRACE}-{PARENT}-1", "baggage": f"sentry-trace_id={TRACE},vendor=x"}
    with sentry_sdk.isolation_scope():
        sentry_sdk.continue_trace(incoming)
        transaction = sentry_sdk.start_transaction(name="producer") if rate else None
        if transaction is not None:
            transaction.__enter__()
        first = sdk.outgoing_values()
        assert first is not None
        assert sdk.outgoing_values() is first
        if transaction is not None:
            transaction.__exit__(None, None, None)
        else:
            baggage = sentry_sdk.get_current_scope().get_active_propagation_context().baggage
            assert baggage is not None
            baggage.third_party_items = "vendor=y"  # the SDK rewrites members in place
            changed = sdk.outgoing_values()
            assert changed is not first
            assert changed is not None and changed["baggage"].endswith("vendor=y")
            assert sdk.outgoing_values() is changed


@pytest.mark.parametrize("rate", [None, 0.0])
def test_sampled_parent_or_values_outside_a_sampled_span_gives_the_values(
    sentry_init: Init, rate: float | None
) -> None:
    sentry_init(traces_sample_rate=rate)
    with sentry_sdk.isolation_scope():
        sentry_sdk.continue_trace({"sentry-trace": f"{TRACE}-{PARENT}-0", "baggage": "vendor=x"})
        parent, values = sdk.sampled_parent_or_values(True)
        assert parent is None
        assert values is not None
        assert values["sentry-trace"].startswith(f"{TRACE}-") and values["sentry-trace"].endswith("-0")
        assert values["traceparent"].startswith(f"00-{TRACE}-") and values["traceparent"].endswith("-00")
        assert sdk.sampled_parent_or_values(False)[1] == {
            key: value for key, value in values.items() if key != "traceparent"
        }


def test_sampled_parent_or_values_inside_a_sampled_span_gives_the_span(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="producer") as transaction:
        assert sdk.sampled_parent_or_values(True) == (transaction, None)


def test_a_bounded_map_keeps_the_newest_entries() -> None:
    entries: BoundedMap[str] = BoundedMap(2)
    entries.put("a", "1")
    entries.put("b", "2")
    assert (entries.get("a"), entries.get("b"), len(entries)) == ("1", "2", 2)
    entries.put("c", "3")
    assert (entries.get("a"), entries.get("b"), entries.get("c"), len(entries)) == (None, "2", "3", 2)


def test_capture_exception_without_the_classic_tracing_module(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The branch for a sentry-sdk without ``sentry_sdk.tracing`` (3.x), which reads the client's
    options itself: the same event, the same mechanism."""
    captured = sentry_init()
    monkeypatch.setattr(sdk, "_tracing", None)
    try:
        raise ValueError("the handler's own")
    except ValueError as error:
        sdk.capture_exception(error, mechanism="busprop.test")
    (event,) = captured.errors()
    (exception,) = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", "the handler's own")
    assert exception["mechanism"] == {"type": "busprop.test", "handled": False}


@pytest.mark.parametrize("traces_sample_rate", [None, 1.0])
def test_the_sdks_own_continue_trace_inside_a_message_takes_effect(
    sentry_init: Init, traces_sample_rate: float | None
) -> None:
    """The message's context is set on its isolation scope, and on the current scope only when
    that scope has a context of its own to shadow it: code inside that continues another trace
    with sentry-sdk's ``continue_trace`` propagates that trace."""
    sentry_init(traces_sample_rate=traces_sample_rate)
    other = "0af7651916cd43dd8448eb211c80319c"
    with sentry_sdk.isolation_scope() as scope:
        sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", None))
        assert (sentry_sdk.get_traceparent() or "").startswith(f"{TRACE}-")
        sentry_sdk.continue_trace({"sentry-trace": f"{other}-{PARENT}-1"})
        assert (sentry_sdk.get_traceparent() or "").startswith(f"{other}-")


def test_a_pair_seen_again_continues_as_the_first_time(sentry_init: Init) -> None:
    """From its second sighting a header pair is parsed once and copied per message: each copy
    behaves as the SDK's own parse (a baggage without Sentry's members stays open, so the
    consumer's transaction fills in the trace's members as head, every time)."""
    sentry_init(traces_sample_rate=1.0)
    sent = []
    for _ in range(3):
        with sentry_sdk.isolation_scope() as scope:
            sdk.continue_propagation(scope, IncomingTrace(f"{TRACE}-{PARENT}-1", "vendor=x"))
            transaction = sdk.start_process_transaction(
                scope, name="orders", origin="manual", data={}, sampling_context={}
            )
            values = sdk.outgoing_values()
            sdk.finish_span(transaction)
        assert values is not None
        sent.append(values["baggage"])
    assert f"sentry-trace_id={TRACE}" in sent[0]
    assert sent == [sent[0]] * 3


def test_streaming_on_an_sdk_without_the_classic_tracing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """sentry-sdk 3 has ``sentry_sdk.traces`` and no ``sentry_sdk.tracing``: it only streams."""
    monkeypatch.setattr(sdk, "_tracing", None)
    assert sdk.streaming() is True
    monkeypatch.setattr(sdk, "_traces", None)
    assert sdk.streaming() is False


def test_streaming_on_an_sdk_without_span_streaming(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2.x without the streaming option never streams, whatever the options say."""
    sentry_init(trace_lifecycle="stream")
    assert sdk.streaming() is True
    monkeypatch.setattr(sdk, "_has_span_streaming_enabled", None)
    assert sdk.streaming() is False
    assert sdk.streaming({"trace_lifecycle": "stream"}) is False


@pytest.mark.parametrize("flag", ["-0", "-1", ""], ids=["unsampled", "sampled", "deferred"])
def test_a_sent_trace_is_continued_with_the_sending_spans_id_and_baggage(
    sentry_init: Init, flag: str
) -> None:
    """What a delivery failure reported later is linked to: the trace and span id the record
    carried, its decision and its baggage (third-party members too), and no span current."""
    sentry_init(traces_sample_rate=1.0)
    baggage = f"sentry-trace_id={TRACE},sentry-sample_rand=0.25,vendor=kept"
    with sentry_sdk.start_transaction(name="elsewhere"), sentry_sdk.new_scope():
        sdk.continue_sent_trace({"sentry-trace": f"{TRACE}-{PARENT}{flag}", "baggage": baggage})
        assert sentry_sdk.get_current_span() is None
        assert sentry_sdk.get_traceparent() == f"{TRACE}-{PARENT}"  # the SDK's, without a span: no flag
        context = sentry_sdk.get_current_scope().get_active_propagation_context()
        assert context.parent_sampled == {"-0": False, "-1": True, "": None}[flag]
        assert context.baggage is not None
        assert context.baggage.sentry_items == {"trace_id": TRACE, "sample_rand": "0.25"}
        assert context.baggage.third_party_items == "vendor=kept"
    for values in (None, {}, {"sentry-trace": "not a trace"}):
        with sentry_sdk.new_scope() as scope:
            before = scope.get_active_propagation_context()
            sdk.continue_sent_trace(values)
            assert scope.get_active_propagation_context() is before


def test_a_sent_trace_without_baggage_gets_the_sdks_own_for_that_trace(sentry_init: Init) -> None:
    """A record sent with ``sentry-trace`` alone: the failure's trace has no baggage to keep, so
    the SDK builds it from this trace and its options (an empty frozen one would leave the
    failure's sampling context without the trace id)."""
    sentry_init(traces_sample_rate=1.0, release="r-1")
    with sentry_sdk.new_scope():
        sdk.continue_sent_trace({"sentry-trace": f"{TRACE}-{PARENT}-1"})
        members = (sentry_sdk.get_baggage() or "").split(",")
    assert f"sentry-trace_id={TRACE}" in members
    assert "sentry-release=r-1" in members
