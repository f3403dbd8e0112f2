"""Every public entry point survives every wrong type and value a caller can pass.

Instrumentation must never turn a caller's mistake into a new failure: a non-``str`` destination,
a ``None`` or tuple carrier, bytes where ``str`` is expected, a mapping with non-``str`` keys, an
object whose ``__iter__``, ``__getitem__``, ``__str__``, ``__eq__``, ``__hash__`` or ``__bool__``
raises. hypothesis generates such arguments for each entry point of ``busprop.__all__`` and for the
adapters' public helpers that take user values, and every property checks the same three things:

- no exception leaves busprop's own code (the hostile objects raise :class:`Boom`, which must
  never reach the caller);
- an exception raised by the user's own code (a ``with`` body, a decorated function) propagates
  unchanged, the very same object;
- where busprop rejects an argument, it says so in a debug record on the ``busprop`` logger, and
  every record it writes can be formatted (a user object whose ``__str__`` raises is never put
  into a log message).

``busprop.configure`` is the one exception by design: its documented contract is to raise
:class:`busprop.ConfigurationError` for a bad option, so it is checked to raise that and nothing
else, leaving the options in force unchanged.

``BUSPROP_HYPOTHESIS_EXAMPLES`` sets the number of examples per property (default 60).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import busprop
import busprop.amqp
import busprop.kafka
import busprop.websockets
from busprop.config import Config, should_propagate
from busprop.testing import CapturingTransport
from tests.conftest import Captured

Init = Callable[..., Captured]
EXAMPLES = int(os.environ.get("BUSPROP_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TRACE = "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"


# --- hostile values --------------------------------------------------------------------------------


class Boom(Exception):
    """Raised by a hostile object: busprop must never let it out."""


class Hostile:
    """Every operation busprop could apply to a value it did not expect raises."""

    def __iter__(self) -> Iterator[Any]:
        raise Boom("__iter__")

    def __getitem__(self, key: Any) -> Any:
        raise Boom("__getitem__")

    def __len__(self) -> int:
        raise Boom("__len__")

    def __str__(self) -> str:
        raise Boom("__str__")

    def __format__(self, spec: str) -> str:
        raise Boom("__format__")

    def __bool__(self) -> bool:
        raise Boom("__bool__")

    def __eq__(self, other: object) -> bool:
        raise Boom("__eq__")

    def __hash__(self) -> int:
        raise Boom("__hash__")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise Boom(f".{name}")

    def __repr__(self) -> str:
        return "Hostile()"


class HostileDict(dict[Any, Any]):
    """A real ``dict`` (so a ``MutableMapping``) whose every read raises."""

    def __iter__(self) -> Iterator[Any]:
        raise Boom("dict __iter__")

    def __getitem__(self, key: Any) -> Any:
        raise Boom("dict __getitem__")

    def get(self, key: Any, default: Any = None) -> Any:
        raise Boom("dict get")

    def items(self) -> Any:
        raise Boom("dict items")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise Boom("dict __setitem__")


class HostileList(list[Any]):
    """A real ``list`` whose iteration, indexing and length raise."""

    def __iter__(self) -> Iterator[Any]:
        raise Boom("list __iter__")

    def __getitem__(self, key: Any) -> Any:
        raise Boom("list __getitem__")

    def __len__(self) -> int:
        raise Boom("list __len__")


class HostileStr(str):
    """A ``str`` whose hash, comparison and conversion raise."""

    def __hash__(self) -> int:
        raise Boom("str __hash__")

    def __eq__(self, other: object) -> bool:
        raise Boom("str __eq__")

    def __str__(self) -> str:
        raise Boom("str __str__")

    def __iter__(self) -> Iterator[str]:
        raise Boom("str __iter__")


class HostileBytes(bytes):
    """``bytes`` whose decoding raises something other than ``UnicodeDecodeError``."""

    def decode(self, *args: Any, **kwargs: Any) -> str:
        raise Boom("bytes decode")

    def __iter__(self) -> Iterator[int]:
        raise Boom("bytes __iter__")


NAMES = ["orders", "sentry-trace", "baggage", "", TRACE]
ENCODED = [b"orders", TRACE.encode(), b"sentry-a=b", b"\xff"]


def hostile() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(Hostile),
        st.builds(lambda: HostileDict({"sentry-trace": TRACE})),
        st.builds(lambda: HostileList([("sentry-trace", TRACE.encode())])),
        # Mapped from an index: hypothesis would take a drawn ``str``/``bytes`` subclass for its own.
        st.integers(0, len(NAMES) - 1).map(lambda index: HostileStr(NAMES[index])),
        st.integers(0, len(ENCODED) - 1).map(lambda index: HostileBytes(ENCODED[index])),
    )


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.just(TRACE),
    st.just(TRACE.encode()),
    st.just(object()),
)
HASHABLE = st.one_of(
    st.none(), st.integers(), st.binary(max_size=6), st.text(max_size=6), st.tuples(st.integers())
)
HEADER_NAMES = st.sampled_from(["sentry-trace", "baggage", "traceparent", "other"])


def wrong_values() -> st.SearchStrategy[Any]:
    """Anything but what an argument should be: hostile objects, scalars, junk containers.

    Each of the three is drawn as often as the others, so a hostile object is a top-level
    argument in about a third of the examples, not only a leaf deep in a container.
    """
    leaves = st.one_of(hostile(), SCALARS)
    containers = st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.tuples(children, children),
            st.dictionaries(HASHABLE, children, max_size=4),
            st.lists(st.tuples(st.one_of(HEADER_NAMES, HASHABLE), children), max_size=4),
            st.dictionaries(HEADER_NAMES, children, max_size=3),
            st.frozensets(HASHABLE, max_size=3),
        ),
        max_leaves=8,
    )
    return st.one_of(hostile(), SCALARS, containers)


WRONG = wrong_values()


# --- the busprop logger ----------------------------------------------------------------------------


class Records(logging.Handler):
    """Collects the ``busprop`` logger's records, formatting each as it arrives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.unformattable: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception as error:  # a user object's __str__ put into a log message
            self.unformattable.add(f"{record.pathname}:{record.lineno} {record.msg!r}: {error!r}")

    def take(self) -> list[str]:
        assert not self.unformattable, (
            f"busprop logged what cannot be formatted: {sorted(self.unformattable)}"
        )
        messages, self.messages = self.messages, []
        return messages


@contextlib.contextmanager
def busprop_records() -> Iterator[Records]:
    logger = logging.getLogger("busprop")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def records() -> Iterator[Records]:
    with busprop_records() as handler:
        yield handler


class UserError(Exception):
    """Raised by the user's own code: it must come out of busprop unchanged."""


def run_body(raises: bool) -> None:
    if raises:
        raise UserError("the user's own failure")


@contextlib.contextmanager
def user_code(raises: bool) -> Iterator[None]:
    """The body raises ``UserError`` when asked; it must be the one exception that comes out."""
    if raises:
        with pytest.raises(UserError, match="the user's own failure"):
            yield
    else:
        yield


@pytest.fixture
def traced(sentry_init: Init) -> Captured:
    """The SDK, once per test (not per example), with every transaction sampled."""
    return sentry_init(traces_sample_rate=1.0)


def sent(captured: Captured) -> list[dict[str, Any]]:
    """The transactions Sentry would receive since the last call (serializing them must not fail)."""
    transactions = captured.transactions()
    CapturingTransport.clear()
    return transactions


def snapshot(value: Any) -> Any:
    """A deep copy of lists, tuples and dicts for comparison; anything else (or unreadable) as is."""
    try:
        if isinstance(value, (list, tuple)):
            return type(value), [snapshot(item) for item in value]
        if isinstance(value, dict):
            return type(value), [(key, snapshot(item)) for key, item in value.items()]
    except Boom:
        return value
    return value


def unchanged(value: Any, before: Any) -> bool:
    """Whether ``value`` still has the :func:`snapshot` taken ``before`` (no hostile ``==`` at the top)."""
    after = snapshot(value)
    return after is before or bool(after == before)


def rejected_carrier(carrier: Any) -> bool:
    """What ``inject`` cannot write into: no mutable mapping or list, or one whose reading raises."""
    return not isinstance(carrier, (dict, list)) or isinstance(carrier, (HostileDict, HostileList))


# --- the core --------------------------------------------------------------------------------------


@given(destination=WRONG, targets=st.sampled_from([[".*"], ["^orders$"], []]))
@SETTINGS
def test_should_propagate_rejects_a_non_str_destination(
    records: Records, destination: Any, targets: list[str]
) -> None:
    busprop.configure(propagation_targets=targets)
    decision = should_propagate(destination)
    if not isinstance(destination, str):
        assert decision is False
        assert any("destination" in message for message in records.take())
    records.take()


@pytest.mark.parametrize("destination", [None, 5, b"orders", ["orders"], Hostile()], ids=repr)
def test_inject_with_a_non_str_destination_is_rejected_not_raised(
    sentry_init: Init, records: Records, destination: Any
) -> None:
    sentry_init(traces_sample_rate=1.0)
    busprop.configure(propagation_targets=["^orders$"])  # a TypeError from re or a dict before
    headers: dict[str, Any] = {}
    assert busprop.inject(headers, destination=destination) is False
    with busprop.publish(headers, system="custom", destination=destination):
        pass
    assert headers == {}
    assert any("is not a str" in message for message in records.take())


@given(
    carrier=WRONG,
    destination=st.one_of(WRONG, st.text(max_size=8)),
    keys=st.one_of(st.just(busprop.CarrierKeys()), WRONG),
    as_bytes=st.one_of(st.booleans(), WRONG),
)
@SETTINGS
def test_inject_survives_wrong_arguments(
    traced: Captured, records: Records, carrier: Any, destination: Any, keys: Any, as_bytes: Any
) -> None:
    before = snapshot(carrier)
    with sentry_sdk.start_transaction(name="producer"):
        written = busprop.inject(
            carrier, destination=destination, system=carrier, keys=keys, as_bytes=as_bytes
        )
    if (
        not isinstance(destination, str)
        or rejected_carrier(carrier)
        or not isinstance(keys, busprop.CarrierKeys)
    ):
        assert written is False
        assert records.take(), "a rejected inject says why at debug level"
    if not written:
        assert unchanged(carrier, before), "a carrier busprop did not write into is unchanged"
    sent(traced)
    records.take()


@given(
    carrier=WRONG,
    arguments=st.fixed_dictionaries(
        {},
        optional={
            name: WRONG
            for name in (
                "system",
                "destination",
                "message_id",
                "body_size",
                "name",
                "origin",
                "extra_data",
                "keys",
            )
        },
    ),
    raises=st.booleans(),
)
@SETTINGS
def test_publish_survives_wrong_arguments_and_lets_the_body_fail(
    traced: Captured, records: Records, carrier: Any, arguments: dict[str, Any], raises: bool
) -> None:
    arguments.setdefault("system", "custom")
    arguments.setdefault("destination", "orders")
    with (
        sentry_sdk.start_transaction(name="producer"),
        user_code(raises),
        busprop.publish(carrier, **arguments),
    ):
        run_body(raises)
    sent(traced)
    records.take()


CONTINUE_ARGUMENTS = (
    "system",
    "destination",
    "message_id",
    "body_size",
    "retry_count",
    "published_at",
    "name",
    "origin",
    "extra_data",
    "sampling_context",
    "keys",
)


@pytest.mark.parametrize("rate", [1.0, 0.0, None])
def test_continue_trace_survives_wrong_arguments_and_lets_the_body_fail(
    sentry_init: Init, records: Records, rate: float | None
) -> None:
    captured = sentry_init(traces_sample_rate=rate)

    @given(
        carriers=st.lists(WRONG, max_size=3),
        arguments=st.fixed_dictionaries({}, optional=dict.fromkeys(CONTINUE_ARGUMENTS, WRONG)),
        raises=st.booleans(),
    )
    @SETTINGS
    def check(carriers: list[Any], arguments: dict[str, Any], raises: bool) -> None:
        arguments.setdefault("system", "custom")
        arguments.setdefault("destination", "orders")
        with user_code(raises), busprop.continue_trace(*carriers, **arguments):
            run_body(raises)
        sent(captured)
        records.take()

    check()


@given(
    carriers=st.lists(WRONG, max_size=3),
    keys=st.one_of(st.just(busprop.CarrierKeys()), WRONG),
    raises=st.booleans(),
)
@SETTINGS
def test_propagation_scope_survives_wrong_arguments(
    traced: Captured, records: Records, carriers: list[Any], keys: Any, raises: bool
) -> None:
    with user_code(raises), busprop.propagation_scope(*carriers, keys=keys) as trace:
        assert isinstance(trace, busprop.IncomingTrace)
        run_body(raises)
    records.take()


@given(carriers=st.lists(WRONG, max_size=3), keys=st.one_of(st.just(busprop.CarrierKeys()), WRONG))
@SETTINGS
def test_extract_survives_wrong_carriers_and_says_what_it_rejected(
    records: Records, carriers: list[Any], keys: Any
) -> None:
    trace = busprop.extract(*carriers, keys=keys)
    assert isinstance(trace, busprop.IncomingTrace)
    no_container = [
        carrier
        for carrier in carriers
        if (carrier is not None and not isinstance(carrier, (dict, list, tuple)))
        or isinstance(carrier, (HostileDict, HostileList))
    ]
    if no_container or not isinstance(keys, busprop.CarrierKeys):
        assert records.take(), "a rejected carrier is logged at debug level"
    records.take()


def test_extract_reads_the_containers_it_can_and_skips_one_that_raises(records: Records) -> None:
    good = {"sentry-trace": TRACE}
    assert busprop.extract(HostileList([("sentry-trace", TRACE)]), good).sentry_trace == TRACE
    assert busprop.extract(Hostile(), 42, good).sentry_trace == TRACE
    assert busprop.extract([(Hostile(), "x"), ("sentry-trace", TRACE)]) is busprop.carrier.NO_TRACE
    assert busprop.extract(good, keys=None) is busprop.carrier.NO_TRACE  # type: ignore[arg-type]
    assert len(records.take()) == 5  # the HostileList, the Hostile, the 42, the list, the keys


#: A decorator option: a wrong value, a function returning one, or a function that raises.
OPTION = st.one_of(
    WRONG,
    st.builds(lambda value: lambda *args, **kwargs: value, WRONG),
    st.just(lambda *args, **kwargs: 1 / 0),
)


@given(
    options=st.fixed_dictionaries(
        {"system": WRONG, "destination": OPTION},
        optional={name: OPTION for name in ("headers", "name", "message_id", "body_size", "origin")},
    ),
    consumer_options=st.fixed_dictionaries(
        {}, optional={name: OPTION for name in ("retry_count", "published_at")}
    ),
    argument=WRONG,
    raises=st.booleans(),
)
@SETTINGS
def test_decorators_survive_wrong_options_and_arguments(
    traced: Captured,
    records: Records,
    options: dict[str, Any],
    consumer_options: dict[str, Any],
    argument: Any,
    raises: bool,
) -> None:
    options.setdefault("headers", lambda message: message)
    result = object()

    def body(message: Any) -> Any:
        run_body(raises)
        return result

    async def async_body(message: Any) -> Any:
        return body(message)

    consumer = busprop.consumer(**options, **consumer_options)
    producer = busprop.producer(**options)
    with sentry_sdk.start_transaction(name="head"):
        for decorated in (consumer(body), producer(body)):
            with user_code(raises):
                assert decorated(argument) is result
        for decorated_async in (consumer(async_body), producer(async_body)):
            with user_code(raises):
                assert asyncio.run(decorated_async(argument)) is result
    sent(traced)
    records.take()


@pytest.mark.parametrize("destination", [Hostile(), HostileStr("orders")], ids=["Hostile", "HostileStr"])
def test_decorators_survive_a_destination_without_str(traced: Captured, destination: Any) -> None:
    """``str(destination)`` raised into the decorated function's caller before."""

    @busprop.producer(
        system="custom", destination=lambda message: destination, headers=lambda message: message
    )
    @busprop.consumer(system="custom", destination=lambda message: destination)
    def handle(message: dict[str, Any]) -> str:
        return "handled"

    assert handle({}) == "handled"


OPTIONS = st.dictionaries(
    st.one_of(st.sampled_from(list(Config.model_fields)), st.text(max_size=8)),
    st.one_of(
        WRONG,
        st.lists(
            st.one_of(st.text(max_size=6), st.sampled_from(["(", "a{99999999999}", "(" * 2000 + ")" * 2000]))
        ),
    ),
    max_size=3,
)


@given(options=OPTIONS)
@SETTINGS
def test_configure_raises_configuration_error_and_nothing_else(options: dict[str, Any]) -> None:
    before = busprop.get_config()
    try:
        config = busprop.configure(**options)
    except busprop.ConfigurationError as error:
        assert str(error).startswith("busprop.configure: option ")
        assert busprop.get_config() is before
    else:
        assert busprop.get_config() is config
        assert all(type(target) is str for target in config.propagation_targets)
        should_propagate("orders")


@pytest.mark.parametrize("target", ["a{99999999999}", "(" * 2000 + ")" * 2000], ids=["overflow", "too deep"])
def test_configure_a_regex_re_cannot_compile_is_a_configuration_error(target: str) -> None:
    """``re.compile`` raises OverflowError or RecursionError, not re.error, for these."""
    with pytest.raises(busprop.ConfigurationError, match="not a valid regular expression"):
        busprop.configure(propagation_targets=[target])


# --- the adapters' helpers that take user values ---------------------------------------------------


class FakeSend:
    """Stands in for a bound ``KafkaProducer.send``: records what it was given."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        topic: Any,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: Any = None,
        timestamp_ms: Any = None,
    ) -> Any:
        self.calls.append({"topic": topic, "value": value, "key": key, "headers": headers})
        return None


@given(topic=st.one_of(WRONG, st.text(max_size=8)), value=WRONG, key=WRONG, headers=WRONG, partition=WRONG)
@SETTINGS
def test_kafka_traced_send_survives_wrong_arguments_and_never_changes_the_callers_headers(
    traced: Captured, records: Records, topic: Any, value: Any, key: Any, headers: Any, partition: Any
) -> None:
    before = snapshot(headers)
    send = FakeSend()
    with sentry_sdk.start_transaction(name="producer"):
        busprop.kafka.traced_send(send, topic, value, key, headers, partition, None)
    (call,) = send.calls
    assert call["topic"] is topic and call["value"] is value and call["key"] is key
    assert unchanged(headers, before)
    if isinstance(headers, (list, tuple)) and not isinstance(headers, HostileList) and isinstance(topic, str):
        assert call["headers"] is not headers  # a copy carries the trace
    elif headers is not None:
        assert call["headers"] is headers  # passed on untouched: kafka-python decides
        assert records.take()
    sent(traced)
    records.take()


class FakeProduce:
    """Stands in for a bound confluent-kafka ``Producer.produce``: records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


@given(topic=st.one_of(WRONG, st.text(max_size=8)), value=WRONG, key=WRONG, headers=WRONG, callback=WRONG)
@SETTINGS
def test_confluent_produce_survives_wrong_arguments_and_never_changes_the_callers_headers(
    traced: Captured, records: Records, topic: Any, value: Any, key: Any, headers: Any, callback: Any
) -> None:
    """confluent-kafka's produce takes headers as a list or a dict and a delivery callback: whatever
    comes, the call reaches the client with its own topic, value and key, and nothing of the
    caller's changes (busprop's own code cannot be fuzzed through the C class, so its core is)."""
    from busprop.kafka import _confluent, _core

    before = snapshot(headers)
    produce = FakeProduce()
    with sentry_sdk.start_transaction(name="producer"):
        _core.traced_produce(
            _confluent.CLIENT,
            produce,
            (topic, value),
            {"key": key, "headers": headers, "on_delivery": callback},
        )
    ((args, kwargs),) = produce.calls
    assert args[0] is topic and args[1] is value and kwargs["key"] is key
    assert unchanged(headers, before)
    if callback is None:
        assert kwargs["on_delivery"] is None
    sent(traced)
    records.take()


@given(topic=OPTION, name=OPTION, headers=WRONG, raises=st.booleans())
@SETTINGS
def test_kafka_producer_decorator_survives_wrong_arguments_and_never_changes_the_callers_headers(
    traced: Captured, records: Records, topic: Any, name: Any, headers: Any, raises: bool
) -> None:
    before = snapshot(headers)

    @busprop.kafka.producer(topic=topic, name=name)
    def send(body: bytes, headers: Any) -> str:
        run_body(raises)
        return "sent"

    with sentry_sdk.start_transaction(name="producer"):
        with user_code(raises):
            assert send(b"body", headers) == "sent"
        with user_code(raises):
            assert send(b"body", headers=headers) == "sent"
    assert unchanged(headers, before)
    sent(traced)
    records.take()


def test_kafka_producer_decorator_copies_dict_headers_instead_of_writing_into_them(traced: Captured) -> None:
    """The caller's dict received the trace in place before; now the function gets a new dict."""
    callers: dict[str, bytes] = {"tenant": b"acme", "sentry-trace": b"stale"}
    received: list[Any] = []

    @busprop.kafka.producer(topic="orders")
    def send(body: bytes, headers: Any) -> None:
        received.append(headers)

    with sentry_sdk.start_transaction(name="producer"):
        send(b"body", headers=callers)
        send(b"body", callers)
    assert callers == {"tenant": b"acme", "sentry-trace": b"stale"}
    for headers in received:
        assert headers is not callers
        assert headers["tenant"] == b"acme"
        assert headers["sentry-trace"] != b"stale" and b"sentry-trace_id=" in headers["baggage"]


@given(batch=WRONG, consumer=WRONG, group_id=WRONG, name=WRONG, raises=st.booleans())
@SETTINGS
def test_kafka_process_batch_survives_wrong_arguments(
    traced: Captured, records: Records, batch: Any, consumer: Any, group_id: Any, name: Any, raises: bool
) -> None:
    with (
        user_code(raises),
        busprop.kafka.process_batch(batch, consumer=consumer, group_id=group_id, name=name) as processing,
    ):
        for _ in processing:
            pass
        run_body(raises)
    sent(traced)
    records.take()


@given(exchange=st.one_of(WRONG, st.text(max_size=8)), routing_key=st.one_of(WRONG, st.text(max_size=8)))
@SETTINGS
def test_amqp_destination_of_survives_wrong_arguments(exchange: Any, routing_key: Any) -> None:
    assert isinstance(busprop.amqp.destination_of(exchange, routing_key), str)


@given(uri=st.one_of(WRONG, st.just("ws://localhost/chat")), additional_headers=WRONG)
@SETTINGS
def test_websockets_handshake_headers_survive_wrong_arguments(
    traced: Captured, records: Records, uri: Any, additional_headers: Any
) -> None:
    before = snapshot(additional_headers)
    headers = busprop.websockets.handshake_headers(uri, additional_headers)
    # Headers busprop cannot read go to websockets as given: it rejects them as it would alone.
    assert isinstance(headers, list) or headers is additional_headers
    assert unchanged(additional_headers, before)
    records.take()
