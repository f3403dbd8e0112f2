"""Every failure busprop absorbs is one debug record that says what failed, with its traceback.

Instrumentation never raises into user code, so a failure inside it is invisible unless it is
logged: at debug level (never louder: it must not flood an application's logs), with a message
naming the step that failed and the exception's traceback (``exc_info``), once. Each path below
is broken on purpose through the SDK seam (or the carrier reader) and the ``busprop`` logger's
records are compared whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import sentry_sdk

import busprop
from busprop import processing, sdk
from tests.conftest import Captured

Init = Callable[..., Captured]
TRACE = "771a43a4192642f0b136d5159a501700"
PARENT = "b01e1e1e1e1e1e1e"
#: What a failure writes: its message, and the type of the exception in its traceback (``None``:
#: a record without one).
Record = tuple[str, type[BaseException] | None]


class UserError(Exception):
    """The user's own exception: it comes out unchanged."""


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise ZeroDivisionError


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Callable[[], list[Record]]:
    """The ``busprop`` logger's records so far, each as ``(message, exception type)``; every one
    must be at debug level."""
    caplog.set_level(logging.DEBUG, logger="busprop")

    def take() -> list[Record]:
        mine = [record for record in caplog.records if record.name.startswith("busprop")]
        assert {record.levelno for record in mine} <= {logging.DEBUG}
        caplog.clear()
        return [(record.getMessage(), record.exc_info[0] if record.exc_info else None) for record in mine]

    return take


def headers(sampled: str = "1") -> dict[str, str]:
    return {"sentry-trace": f"{TRACE}-{PARENT}-{sampled}", "baggage": "sentry-sample_rand=0.5"}


def process(carrier: Any, *, raises: bool = False, **options: Any) -> None:
    """One message's processing through ``busprop.continue_trace``; the body raises when asked."""
    try:
        with busprop.continue_trace(carrier, system="kafka", destination="orders", **options):
            if raises:
                raise UserError
    except UserError:
        assert raises
    else:
        assert not raises


@contextmanager
def _scope_that_fails_to_close() -> Iterator[sentry_sdk.Scope]:
    with sentry_sdk.isolation_scope() as scope:
        yield scope
    raise ZeroDivisionError


UNREADABLE = ("busprop: unreadable trace headers, starting a new trace", ZeroDivisionError)
NO_USABLE = ("busprop: no usable trace in kafka message, starting a new trace", None)
NOT_CONTINUED = ("busprop: could not continue the trace", ZeroDivisionError)


def _in_propagation_scope() -> None:
    with busprop.propagation_scope(headers()):
        pass


def _sampled_message() -> None:
    process(headers("1"))


@pytest.mark.parametrize(
    ("broken", "replacement", "run", "expected"),
    [
        ("processing.extract", _fail, _sampled_message, [UNREADABLE, NO_USABLE]),
        ("sdk.isolation_scope", _fail, _sampled_message, [("busprop: could not open an isolation scope", ZeroDivisionError)]),
        ("sdk.isolation_scope", _scope_that_fails_to_close, _sampled_message,
         [("busprop: could not close the isolation scope", ZeroDivisionError)]),
        ("sdk._continue_on", _fail, _sampled_message, [NOT_CONTINUED]),
        ("sdk.capture_exception", _fail, lambda: process(headers("1"), raises=True),
         [("busprop: could not report the exception", ZeroDivisionError)]),
        ("sdk.finish_span", _fail, _sampled_message, [
            ("busprop: could not finish the queue.process span", ZeroDivisionError),
            ("busprop: could not finish the transaction", ZeroDivisionError),
        ]),
        ("sdk.drop_unsampled_transaction", _fail, lambda: process(headers("0")),
         [("busprop: could not finish the transaction", ZeroDivisionError)]),
        ("processing.extract", _fail, _in_propagation_scope, [UNREADABLE]),
        ("sdk.continue_propagation", _fail, _in_propagation_scope, [NOT_CONTINUED]),
    ],
)  # fmt: skip
def test_a_failure_while_processing_is_one_debug_record(
    sentry_init: Init,
    monkeypatch: pytest.MonkeyPatch,
    records: Callable[[], list[Record]],
    broken: str,
    replacement: Callable[..., Any],
    run: Callable[[], None],
    expected: list[Record],
) -> None:
    """A message's processing (``continue_trace``) and a ``propagation_scope``."""
    sentry_init(traces_sample_rate=1.0)
    module, name = broken.split(".")
    monkeypatch.setattr({"processing": processing, "sdk": sdk}[module], name, replacement)
    run()
    assert records() == expected


def test_unreadable_details_are_one_debug_record_naming_the_system(
    sentry_init: Init, records: Callable[[], list[Record]]
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    process(headers(), details=_fail, message_id="m-1")
    assert records() == [("busprop: could not read the kafka message's details", ZeroDivisionError)]
    (event,) = captured.transactions()
    (span,) = [span for span in event["spans"] if span["op"] == "queue.process"]
    assert span["data"]["messaging.message.id"] == "m-1"  # the rest is kept


def test_a_message_without_a_trace_says_so_once(
    sentry_init: Init, records: Callable[[], list[Record]]
) -> None:
    sentry_init(traces_sample_rate=1.0)
    process({"other": "header"})
    assert records() == [NO_USABLE]
    process(None)  # no carrier at all: nothing to say
    assert records() == []


def _sampled_transaction() -> AbstractContextManager[Any]:
    return sentry_sdk.start_transaction(name="producer")


@pytest.mark.parametrize("in_transaction", [False, True])
def test_a_failing_write_is_one_debug_record(
    sentry_init: Init,
    monkeypatch: pytest.MonkeyPatch,
    records: Callable[[], list[Record]],
    in_transaction: bool,
) -> None:
    """``inject`` and ``publish`` (without and with a sampled parent) alike."""
    sentry_init(traces_sample_rate=1.0)
    monkeypatch.setattr(sdk, "outgoing_values", _fail)
    carrier: dict[str, Any] = {}
    if in_transaction:
        with _sampled_transaction(), busprop.publish(carrier, system="kafka", destination="orders"):
            pass
    else:
        assert busprop.inject(carrier, destination="orders") is False
    assert carrier == {}
    assert records() == [("busprop: could not write trace headers", ZeroDivisionError)]


@pytest.mark.parametrize(
    ("carrier", "keys", "described"),
    [
        ((), busprop.CarrierKeys(), "a tuple with keys of type CarrierKeys"),
        ({}, "sentry-trace", "a dict with keys of type str"),
    ],
)
def test_a_carrier_that_cannot_be_written_is_one_debug_record(
    sentry_init: Init, records: Callable[[], list[Record]], carrier: Any, keys: Any, described: str
) -> None:
    sentry_init(traces_sample_rate=1.0)
    assert busprop.inject(carrier, destination="orders", keys=keys) is False
    assert records() == [
        (
            f"busprop: no trace written into {described} (a mutable mapping or list with CarrierKeys is needed)",
            None,
        )
    ]


@pytest.mark.parametrize(("system", "named"), [("kafka", "kafka"), (None, "a")])
def test_a_destination_outside_the_targets_is_one_debug_record_naming_the_system(
    sentry_init: Init, records: Callable[[], list[Record]], system: str | None, named: str
) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=["^orders$"])
    assert busprop.inject({}, destination="payments", system=system) is False
    assert records() == [(f"busprop: {named} destination 'payments' is outside propagation_targets", None)]
