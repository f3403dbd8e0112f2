"""Tests that kill mutants ``./dev.sh mutate`` found surviving in the core modules.

Each test pins one behaviour the rest of the fast suite exercised without checking, so that a
change to it (the kind mutmut makes) fails a test. They need no broker.
"""

from __future__ import annotations

import logging
from collections import UserDict
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import sentry_sdk

import busprop
from busprop import baggage, carrier, processing, sdk
from tests import test_malformed as malformed
from tests.conftest import Captured
from tests.mutmut_plugin import reselectable

Init = Callable[..., Captured]
Logs = Callable[[], set[int]]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Logs]:
    """test_malformed's fixture of the same name: the levels of what busprop logged so far."""
    caplog.set_level(logging.DEBUG, logger="busprop")
    yield lambda: {record.levelno for record in caplog.records if record.name == "busprop"}


# --- the test_malformed cases mutmut cannot re-select, under plain index ids -----------------------


def _unselectable(test: Any, argument: str) -> list[Any]:
    """The values of ``test``'s parametrized ``argument`` whose node id mutmut cannot pass back."""
    (mark,) = [mark for mark in test.pytestmark if mark.args[0] == argument]
    ids = mark.kwargs["ids"]  # pytest escapes an id as unicode_escape does: "é" becomes "\\xe9"
    return [value for value in mark.args[1] if not reselectable(ids(value).encode("unicode_escape").decode())]


BAD_SENTRY_TRACE = _unselectable(malformed.test_bad_sentry_trace_starts_a_fresh_trace, "value")
BAD_TRACEPARENT = _unselectable(malformed.test_bad_traceparent_starts_a_fresh_trace, "value")
BAD_BAGGAGE = _unselectable(malformed.test_bad_baggage_is_ignored_and_the_trace_continues, "value")
WRONG_CONTAINERS = _unselectable(malformed.test_containers_of_the_wrong_type, "carrier")


@pytest.mark.parametrize("shape", ["mapping", "pairs"])
@pytest.mark.parametrize("index", range(len(BAD_SENTRY_TRACE)))
def test_bad_sentry_trace_with_an_escaped_id(sentry_init: Init, logs: Logs, index: int, shape: str) -> None:
    malformed.test_bad_sentry_trace_starts_a_fresh_trace(sentry_init, logs, BAD_SENTRY_TRACE[index], shape)


@pytest.mark.parametrize("index", range(len(BAD_TRACEPARENT)))
def test_bad_traceparent_with_an_escaped_id(sentry_init: Init, logs: Logs, index: int) -> None:
    malformed.test_bad_traceparent_starts_a_fresh_trace(sentry_init, logs, BAD_TRACEPARENT[index])


@pytest.mark.parametrize("index", range(len(BAD_BAGGAGE)))
def test_bad_baggage_with_an_escaped_id(sentry_init: Init, logs: Logs, index: int) -> None:
    malformed.test_bad_baggage_is_ignored_and_the_trace_continues(sentry_init, logs, BAD_BAGGAGE[index])


@pytest.mark.parametrize("index", range(len(WRONG_CONTAINERS)))
def test_container_of_the_wrong_type_with_an_address_id(sentry_init: Init, logs: Logs, index: int) -> None:
    malformed.test_containers_of_the_wrong_type(sentry_init, logs, WRONG_CONTAINERS[index])


# --- busprop.carrier ----------------------------------------------------------------------------------

TRACE = "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"
TRACE_ID, SPAN_ID = "771a43a4192642f0b136d5159a501700", "b2bd6e9b3e4c5a1f"


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_as_text_takes_up_to_limit_characters_of_up_to_four_bytes_each(kind: type) -> None:
    """The byte-length pre-check is ``> 4 * limit``: ``limit`` four-byte characters still fit."""
    text = "\U0001f600" * 8
    assert carrier._as_text(kind(text.encode()), 8) == text
    assert carrier._as_text(kind(text.encode()) + b"a", 8) is None
    assert carrier._as_text("a" * 8, 8) == "a" * 8 and carrier._as_text("a" * 9, 8) is None


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_byte_buffers_other_than_bytes_are_read_as_strict_utf8(kind: Callable[[bytes], Any]) -> None:
    assert carrier.extract({"sentry-trace": kind(TRACE.encode())}).sentry_trace == TRACE
    # An invalid value is skipped, not the container: the next copy in it is still found.
    pairs = [("sentry-trace", kind(b"\xff" + TRACE.encode())), ("sentry-trace", kind(TRACE.encode()))]
    assert carrier.extract(pairs).sentry_trace == TRACE


def test_a_trace_header_padded_to_the_length_limit_is_read() -> None:
    padded = " " * (carrier.MAX_TRACE_HEADER_LENGTH - len(TRACE)) + TRACE
    assert carrier.parse_sentry_trace(padded) == TRACE
    assert carrier.parse_sentry_trace(" " + padded) is None


@pytest.mark.parametrize(
    ("flags", "sampled"), [("00", "0"), ("01", "1"), ("0b", "1"), ("10", "0"), ("ff", "1")]
)
def test_traceparent_flags_are_hex_and_only_the_sampled_bit_counts(flags: str, sampled: str) -> None:
    value = f"00-{TRACE_ID}-{SPAN_ID}-{flags}"
    assert carrier.traceparent_to_sentry_trace(value) == f"{TRACE_ID}-{SPAN_ID}-{sampled}"


def test_pairs_of_another_length_are_skipped_not_the_container() -> None:
    assert carrier.extract([("a", "b", "c"), ("sentry-trace", TRACE)]).sentry_trace == TRACE


def test_only_the_traceparent_key_is_read_as_a_traceparent() -> None:
    assert carrier.extract({"other": f"00-{TRACE_ID}-{SPAN_ID}-01"}) is carrier.NO_TRACE


def test_a_traceparent_fallback_keeps_its_containers_baggage() -> None:
    trace = carrier.extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01", "baggage": "sentry-a=1"})
    assert trace == carrier.IncomingTrace(f"{TRACE_ID}-{SPAN_ID}-1", "sentry-a=1")


def _debug_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "busprop"]


def test_extract_says_at_debug_what_it_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="busprop")
    assert carrier.extract({"sentry-trace": TRACE}, keys=cast(Any, 42)) is carrier.NO_TRACE
    assert carrier.extract(42) is carrier.NO_TRACE
    assert carrier.extract(Unreadable()) is carrier.NO_TRACE
    first, second, third = _debug_records(caplog)
    assert first.getMessage() == "busprop: keys of type int are not a CarrierKeys: no trace read"
    assert second.getMessage() == "busprop: a carrier of type int is no header container"
    assert third.getMessage() == "busprop: unreadable Unreadable carrier, skipped"
    assert third.exc_info is not None and third.exc_info[0] is ZeroDivisionError
    assert {record.levelno for record in (first, second, third)} == {logging.DEBUG}


class Unreadable(dict[str, Any]):
    """A mapping whose items cannot be read."""

    def items(self) -> Any:
        raise ZeroDivisionError


def test_write_leaves_a_tuple_of_another_length_alone() -> None:
    odd = ("sentry-trace", "a", "b")
    pairs: list[Any] = [odd, ("x", "y")]
    carrier.write(pairs, {"sentry-trace": TRACE})
    assert pairs == [odd, ("x", "y"), ("sentry-trace", TRACE)]


def test_write_into_a_mapping_that_is_no_dict() -> None:
    headers: Any = UserDict({"x": "y"})
    carrier.write(headers, {"sentry-trace": TRACE, "baggage": "sentry-a=1"})
    assert dict(headers) == {"x": "y", "sentry-trace": TRACE, "baggage": "sentry-a=1"}


def test_baggage_within_the_limit_is_written_as_given_when_there_is_nothing_to_merge() -> None:
    """Merging would reorder it (third-party members first); with nothing to merge it is left as is."""
    given = "sentry-a=1, b=" + "x" * (carrier.MAX_BAGGAGE_LENGTH - 14)
    assert len(given) == carrier.MAX_BAGGAGE_LENGTH
    containers: tuple[Any, ...] = ({}, [])
    for container in containers:
        carrier.write(container, {"sentry-trace": TRACE, "baggage": given})
        assert dict(container)["baggage"] == given


def test_baggage_over_the_limit_is_capped_on_a_new_header_list() -> None:
    given = "sentry-a=1," + ",".join(f"m{index}=v" for index in range(3000))
    pairs: list[Any] = []
    carrier.write(pairs, {"sentry-trace": TRACE, "baggage": given})
    baggage = dict(pairs)["baggage"]
    assert len(baggage) <= carrier.MAX_BAGGAGE_LENGTH and baggage.endswith(",sentry-a=1")
    assert baggage.startswith("m0=v,m1=v,")


def test_long_third_party_baggage_already_there_is_merged() -> None:
    headers: dict[str, Any] = {"baggage": "a=" + "x" * 2000}
    carrier.write(headers, {"sentry-trace": TRACE, "baggage": "sentry-a=1"})
    assert headers["baggage"] == "a=" + "x" * 2000 + ",sentry-a=1"


def test_existing_baggage_beyond_eight_times_the_limit_is_not_read() -> None:
    huge = "a=v,p=" + "x" * 70000
    assert 8 * carrier.MAX_BAGGAGE_LENGTH < len(huge) <= 9 * carrier.MAX_BAGGAGE_LENGTH
    headers: dict[str, Any] = {"baggage": huge}
    carrier.write(headers, {"sentry-trace": TRACE, "baggage": "sentry-a=1"})
    assert headers["baggage"] == "sentry-a=1"


# --- busprop.baggage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("member", "key"), [("k;p", "k"), ("k;p;q", "k"), ("k=v=w", "k"), (" k ;p= 1", "k")])
def test_a_members_key_ends_at_the_first_equals_sign_or_semicolon(member: str, key: str) -> None:
    assert baggage._key(member) == key


def test_merge_keeps_the_first_member_of_each_third_party_key() -> None:
    assert baggage.merge_baggage("a=1,a=2,sentry-x=0", "a=3,sentry-x=1") == "a=1,sentry-x=1"


def _member(name: str, length: int) -> str:
    return f"{name}=" + "x" * (length - len(name) - 1)


def test_the_cap_keeps_sentry_members_that_fill_the_limit_exactly() -> None:
    first = _member("sentry-a", 4000)
    fits = _member("sentry-b", baggage.MAX_LENGTH - 4000 - 1)
    assert baggage.merge_baggage(None, f"{first},{fits}") == f"{first},{fits}"
    too_long = _member("sentry-b", baggage.MAX_LENGTH - 4000)
    assert baggage.merge_baggage(None, f"{first},{too_long}") == first


def test_the_cap_keeps_third_party_members_that_fill_the_limit_exactly() -> None:
    fits = _member("t", baggage.MAX_LENGTH - len("sentry-a=1") - 1)
    assert baggage.merge_baggage(fits, "sentry-a=1") == f"{fits},sentry-a=1"
    too_long = _member("t", baggage.MAX_LENGTH - len("sentry-a=1"))
    # A member that does not fit is skipped; the ones after it still get their chance.
    assert baggage.merge_baggage(f"{too_long},b=1", "sentry-a=1") == "b=1,sentry-a=1"


# --- busprop.publishing -------------------------------------------------------------------------------


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise ZeroDivisionError


def test_publish_says_at_debug_what_failed_and_still_sends_the_trace(
    sentry_init: Init, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentry_init(traces_sample_rate=1.0)
    caplog.set_level(logging.DEBUG, logger="busprop")
    monkeypatch.setattr(sdk, "sampled_parent_or_values", _fail)
    headers: dict[str, Any] = {}
    with (
        sentry_sdk.start_transaction(name="t"),
        busprop.publish(headers, system="c", destination="d") as span,
    ):
        assert span is None
    assert "sentry-trace" in headers
    (record,) = _debug_records(caplog)  # no span was tried without a parent
    assert record.getMessage() == "busprop: could not read the current span"
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("start_child_span", "busprop: could not start the publish span"),
        ("finish_span", "busprop: could not finish the publish span"),
    ],
)
def test_publish_span_failures_are_debug_records_with_their_traceback(
    sentry_init: Init,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
    message: str,
) -> None:
    sentry_init(traces_sample_rate=1.0)
    caplog.set_level(logging.DEBUG, logger="busprop")
    monkeypatch.setattr(sdk, broken, _fail)
    headers: dict[str, Any] = {}
    with sentry_sdk.start_transaction(name="t"), busprop.publish(headers, system="c", destination="d"):
        pass
    assert "sentry-trace" in headers
    (record,) = _debug_records(caplog)
    assert (record.getMessage(), record.levelno) == (message, logging.DEBUG)
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


def test_publish_passes_its_system_and_keys_to_inject(
    sentry_init: Init, caplog: pytest.LogCaptureFixture
) -> None:
    sentry_init(traces_sample_rate=1.0)
    caplog.set_level(logging.DEBUG, logger="busprop")
    keys = carrier.CarrierKeys(sentry_trace="sentryTrace")
    headers: dict[str, Any] = {}
    with busprop.publish(headers, system="kafka", destination="orders", keys=keys):
        pass
    assert "sentryTrace" in headers and "sentry-trace" not in headers
    busprop.configure(propagation_targets=["^payments$"])
    with busprop.publish({}, system="kafka", destination="orders"):
        pass
    (record,) = _debug_records(caplog)
    assert record.getMessage() == "busprop: kafka destination 'orders' is outside propagation_targets"


def test_the_publish_span_carries_system_operation_extra_data_and_origin(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with (
        sentry_sdk.start_transaction(name="t"),
        busprop.publish({}, system="kafka", destination="d", origin="auto.queue.x", extra_data={"k": "v"}),
    ):
        pass
    ((span,),) = [event["spans"] for event in captured.transactions()]
    assert span["origin"] == "auto.queue.x"
    assert {key: span["data"].get(key) for key in ("messaging.system", "messaging.operation.type", "k")} == {
        "messaging.system": "kafka",
        "messaging.operation.type": "publish",
        "k": "v",
    }


async def test_async_publish_marks_the_span_failed_and_propagates(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="t"), pytest.raises(ConnectionError):
        async with busprop.publish({}, system="c", destination="d"):
            raise ConnectionError("broker down")
    ((span,),) = [event["spans"] for event in captured.transactions()]
    assert (span["op"], span["status"]) == ("queue.publish", "internal_error")


# --- busprop.processing -------------------------------------------------------------------------------

UNSAMPLED = f"{TRACE_ID}-{SPAN_ID}-0"


@pytest.mark.parametrize(
    ("origin", "mechanism"),
    [("auto.queue.busprop.kafka", "busprop.kafka"), ("auto.queue.busprop", "busprop"), ("manual", "busprop")],
)
def test_mechanism_of(origin: str, mechanism: str) -> None:
    assert processing.mechanism_of(origin) == mechanism


async def test_async_processing_reports_the_error_and_fails_the_transaction(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with pytest.raises(ConnectionError):
        async with busprop.continue_trace({"sentry-trace": TRACE}, system="c", destination="d"):
            raise ConnectionError("down")
    (error,) = captured.errors()
    assert error["exception"]["values"][-1]["type"] == "ConnectionError"
    (transaction,) = captured.transactions()
    assert transaction["contexts"]["trace"]["status"] == "internal_error"


def test_set_status_sets_span_and_transaction(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    processing_ = busprop.continue_trace({"sentry-trace": TRACE}, system="c", destination="d")
    with processing_:
        processing_.set_status("cancelled")
    (transaction,) = captured.transactions()
    assert transaction["contexts"]["trace"]["status"] == "cancelled"
    assert [span["status"] for span in transaction["spans"]] == ["cancelled"]


def test_the_transaction_carries_the_origin(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace({"sentry-trace": TRACE}, system="c", destination="d", origin="auto.queue.x"):
        pass
    (transaction,) = captured.transactions()
    assert transaction["contexts"]["trace"]["origin"] == "auto.queue.x"


def test_an_unsampled_transaction_carries_name_and_origin(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace(
        {"sentry-trace": UNSAMPLED}, system="c", destination="d", origin="auto.queue.x"
    ):
        transaction = sentry_sdk.get_current_span()
        assert transaction is not None and transaction.sampled is False
        assert (cast(Any, transaction).name, transaction.origin) == ("d", "auto.queue.x")


@pytest.mark.parametrize("sampled", ["0", "1"])
def test_a_propagation_scope_holds_a_span_named_for_it(sentry_init: Init, sampled: str) -> None:
    sentry_init(traces_sample_rate=1.0)
    with busprop.propagation_scope({"sentry-trace": f"{TRACE_ID}-{SPAN_ID}-{sampled}"}):
        span = sentry_sdk.get_current_span()
        assert span is not None and (cast(Any, span).name, span.origin) == ("propagation", "manual")
        assert span.sampled is (sampled == "1")


# --- busprop.sdk --------------------------------------------------------------------------------------


def test_outgoing_values_carry_a_traceparent_only_when_asked(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace({"sentry-trace": UNSAMPLED}, system="c", destination="d"):
        assert "traceparent" not in cast(Any, sdk.outgoing_values())
        values = cast(Any, sdk.outgoing_values(True))
        assert values["traceparent"] == f"00-{TRACE_ID}-{values['sentry-trace'].split('-')[1]}-00"


@pytest.mark.parametrize(
    ("header", "stamped"), [(TRACE, True), (UNSAMPLED, False), (f"{TRACE_ID}-{SPAN_ID}", True)]
)
def test_amqp_publish_time_is_written_unless_the_head_decided_against_sampling(
    sentry_init: Init, header: str, stamped: bool
) -> None:
    """Read from the trace values the publish writes: an undecided head still gets it."""
    from busprop.amqp import _core
    from busprop.publishing import Route

    sentry_init()  # tracing disabled: the propagation context's values, with the head's flag
    headers: dict[str, Any] = {}
    with busprop.continue_trace({"sentry-trace": header}, system="c", destination="d"):
        started = _core.start_publish_span(
            Route("rabbitmq"), headers, "/q", "q", message_id=None, body=b"x", correlation_id=None
        )
        _core.finish_publish_span(started)
    assert headers["sentry-trace"].startswith(f"{TRACE_ID}-")
    assert (_core.PUBLISHED_AT_HEADER in headers) is stamped
    assert (started[2] is not None) is stamped


def test_serialize_reuses_nothing_when_third_party_members_differ() -> None:
    from sentry_sdk.tracing_utils import Baggage

    from busprop.client_cache import ClientCache

    cache, sentry_items = ClientCache(), {"trace_id": TRACE_ID}
    first = sdk._serialize(Baggage(dict(sentry_items), "a=1", mutable=False), cache)
    second = sdk._serialize(Baggage(dict(sentry_items), "b=2", mutable=False), cache)
    assert (first, second) == (f"sentry-trace_id={TRACE_ID},a=1", f"sentry-trace_id={TRACE_ID},b=2")


def test_copy_context_without_slots_is_a_shallow_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    from sentry_sdk.tracing_utils import PropagationContext

    parsed = PropagationContext.from_incoming_data({"sentry-trace": TRACE})
    monkeypatch.setattr(sdk, "_CONTEXT_SLOTS", None)
    context = sdk._copy_context(parsed)
    assert context is not parsed and (context.trace_id, context.parent_span_id) == (TRACE_ID, SPAN_ID)


@pytest.mark.parametrize("known", [True, False])
def test_copy_context_copies_every_slot(monkeypatch: pytest.MonkeyPatch, known: bool) -> None:
    """The six assignments (the SDK's slots, a guard of their names) and the loop over any other
    set of slots copy the same: every slot, the object itself a new one."""
    from sentry_sdk.tracing_utils import Baggage, PropagationContext

    assert sdk._copies_known_slots  # the installed SDK has the slots busprop names
    parsed = PropagationContext.from_incoming_data({"sentry-trace": TRACE, "baggage": "sentry-a=1"})
    parsed.span_id = "a" * 16
    parsed.custom_sampling_context = {"k": "v"}
    monkeypatch.setattr(sdk, "_copies_known_slots", known)
    context = sdk._copy_context(parsed)
    assert context is not parsed
    for name in PropagationContext.__slots__:
        assert getattr(context, name) is getattr(parsed, name), name
    assert isinstance(context.baggage, Baggage)


def test_drop_unsampled_transaction_without_a_transport_does_nothing(sentry_init: Init) -> None:
    sentry_init(dsn=None, transport=None, traces_sample_rate=1.0)
    assert sentry_sdk.get_client().transport is None
    sdk.drop_unsampled_transaction()


@pytest.mark.parametrize(("factor", "reason"), [(0, "sample_rate"), (1, "backpressure")])
def test_a_dropped_unsampled_transaction_counts_with_the_reason_backpressure_gives(
    sentry_init: Init, monkeypatch: pytest.MonkeyPatch, factor: int, reason: str
) -> None:
    sentry_init(traces_sample_rate=1.0, enable_backpressure_handling=True)
    client = sentry_sdk.get_client()
    assert client.monitor is not None and client.transport is not None
    monkeypatch.setattr(client.monitor, "_downsample_factor", factor)
    lost: list[tuple[str, str]] = []
    monkeypatch.setattr(
        client.transport, "record_lost_event", lambda why, data_category: lost.append((why, data_category))
    )
    sdk.drop_unsampled_transaction()
    assert lost == [(reason, "transaction"), (reason, "span")]


def test_fail_current_span_fails_the_span_and_its_transaction(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="t") as transaction, transaction.start_child(op="x") as span:
        sdk.fail_current_span()
        assert (span.status, transaction.status) == ("internal_error", "internal_error")
    sentry_init(traces_sample_rate=1.0)
    sdk.fail_current_span()  # no span: nothing to fail, nothing raised


def test_capture_exception_uses_the_clients_options_and_passes_the_hint(sentry_init: Init) -> None:
    hints: list[Any] = []

    def before_send(event: Any, hint: Any) -> Any:
        hints.append(hint)
        return event

    captured = sentry_init(include_local_variables=False, before_send=before_send)
    local_variable = ValueError("boom")
    try:
        raise local_variable
    except ValueError as error:
        sdk.capture_exception(error, mechanism="busprop")
    (event,) = captured.errors()
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert all("vars" not in frame for frame in frames)
    (hint,) = hints
    assert hint["exc_info"][1] is local_variable


def test_integration_helpers(sentry_init: Init) -> None:
    from sentry_sdk import integrations
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_init()
    assert sdk.integration_enabled(LoggingIntegration) is True
    assert sdk.integration_enabled("no-such-integration") is False
    integrations._installed_integrations.add("busprop-test")
    integrations._processed_integrations.add("busprop-test")
    sdk.forget_integration("busprop-test")
    assert "busprop-test" not in integrations._installed_integrations | integrations._processed_integrations


def test_in_isolation_scope_and_set_current_span(sentry_init: Init) -> None:
    sentry_init(traces_sample_rate=1.0)
    isolation = sentry_sdk.get_isolation_scope().fork()
    with sdk.in_isolation_scope(isolation):
        assert sentry_sdk.get_isolation_scope() is isolation
        with sentry_sdk.start_transaction(name="t") as transaction:
            sdk.set_current_span(None)
            assert sentry_sdk.get_current_span() is None
            sdk.set_current_span(transaction)
            assert sentry_sdk.get_current_span() is transaction


def test_the_process_span_says_its_operation(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.continue_trace({"sentry-trace": TRACE}, system="c", destination="d"):
        pass
    ((span,),) = [event["spans"] for event in captured.transactions()]
    assert span["data"]["messaging.operation.type"] == "process"


def test_continue_trace_reads_with_its_keys(sentry_init: Init) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    keys = carrier.CarrierKeys(sentry_trace="sentryTrace")
    with busprop.continue_trace({"sentryTrace": TRACE}, system="c", destination="d", keys=keys):
        pass
    (transaction,) = captured.transactions()
    assert transaction["contexts"]["trace"]["trace_id"] == TRACE_ID


@pytest.mark.parametrize(("system", "named"), [("kafka", "kafka"), (42, "int")])
def test_no_usable_trace_is_a_debug_record_naming_the_bus(
    sentry_init: Init, caplog: pytest.LogCaptureFixture, system: Any, named: str
) -> None:
    sentry_init(traces_sample_rate=1.0)
    caplog.set_level(logging.DEBUG, logger="busprop")
    with busprop.continue_trace({}, system=system, destination="d"):
        pass
    messages = [record.getMessage() for record in _debug_records(caplog)]
    assert f"busprop: no usable trace in {named} message, starting a new trace" in messages
