"""The Kafka core serves any client a ``KafkaClient`` describes, not just kafka-python.

A client whose record answers through methods (``message.topic()``, as confluent-kafka's), whose
produce call reports delivery through a callback argument, or whose produce method is a coroutine
function (as aiokafka's) is described here by a stand-in registered next to kafka-python: the
public functions dispatch to it on the record's and the producer's type. The real clients have
their own broker tests; these check the core's side of the contract without a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk

import busprop.kafka
from busprop.kafka import _core
from busprop.kafka._client import Delivery, KafkaClient


class Message:
    """A consumed record that answers through methods."""

    def __init__(self, topic: str, offset: int, headers: list[tuple[str, bytes]] | None) -> None:
        self._topic, self._offset, self._headers = topic, offset, headers

    def topic(self) -> str:
        return self._topic

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


class Producer:
    """Produces by ``produce(topic, value, key, headers, on_delivery)``, calling back in ``flush()``."""

    def __init__(self, fails: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fails = fails
        self.callbacks: list[Callable[[], None]] = []

    def flush(self) -> None:
        for callback in self.callbacks:
            callback()

    def produce(
        self, topic: str, value: Any = None, key: Any = None, headers: Any = None, on_delivery: Any = None
    ) -> None:
        self.sent.append({"topic": topic, "value": value, "headers": headers})
        if on_delivery is not None:
            error = RuntimeError("broker down") if self.fails else None
            self.callbacks.append(lambda: on_delivery(error, Message(topic, 7, headers)))


class AsyncProducer:
    async def send(self, topic: str, value: Any = None, headers: Any = None) -> str:
        self.headers = headers
        return "future"


def report_delivery(callback: Callable[..., Any], delivery: Delivery) -> Callable[..., Any]:
    def on_delivery(error: Any, message: Message) -> None:
        if error is None:
            delivery.delivered(message.topic(), 0, message.offset())
        else:
            delivery.failed(error)
        callback(error, message)

    return on_delivery


METHODS = KafkaClient(
    name="methods",
    library="builtins",
    record_types=lambda: (Message,),
    producer_types=lambda: (Producer,),
    consumer_types=lambda: (),
    topic=lambda message: message.topic(),
    partition=lambda message: 0,
    offset=lambda message: message.offset(),
    key=lambda message: None,
    headers=lambda message: message.headers(),
    value_size=lambda message: None,
    timestamp_ms=lambda message: None,
    group_id=lambda consumer: None,
    produce_method="produce",
    produce_parameters=("topic", "value", "key", "headers", "on_delivery"),
    mapping_headers=True,
    delivery_callbacks=("on_delivery",),
    report_delivery=report_delivery,
)
ASYNC = KafkaClient(
    name="async",
    library="builtins",
    record_types=lambda: (),
    producer_types=lambda: (AsyncProducer,),
    consumer_types=lambda: (),
    topic=METHODS.topic,
    partition=METHODS.partition,
    offset=METHODS.offset,
    key=METHODS.key,
    headers=METHODS.headers,
    value_size=METHODS.value_size,
    timestamp_ms=METHODS.timestamp_ms,
    group_id=METHODS.group_id,
    produce_method="send",
    produce_parameters=("topic", "value", "headers"),
    produce_is_async=True,
)


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_core, "CLIENTS", (*_core.CLIENTS, METHODS, ASYNC))
    yield


def process_spans(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for span in event["spans"] if span["op"] == "queue.process"]


def test_records_read_through_methods_continue_their_trace(sentry_init: Callable[..., Any]) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    trace = "a" * 32 + "-" + "b" * 16 + "-1"
    records = [Message("orders", 3, [("sentry-trace", trace.encode())]), Message("orders", 4, None)]
    for _ in busprop.kafka.traced_records(records):
        pass

    @busprop.kafka.consumer
    def handle(note: str, record: Any) -> None:
        pass

    handle("first argument is no record", records[0])
    first, second, handled = captured.transactions()
    assert first["contexts"]["trace"]["trace_id"] == "a" * 32
    assert first["contexts"]["trace"]["parent_span_id"] == "b" * 16
    assert [span["data"]["messaging.message.id"] for span in process_spans(first)] == ["orders/0/3"]
    assert second["contexts"]["trace"]["trace_id"] != "a" * 32
    assert handled["contexts"]["trace"]["trace_id"] == "a" * 32


def test_batch_spans_read_records_through_methods(sentry_init: Callable[..., Any]) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    with busprop.kafka.process_batch([Message("a", 1, None), Message("b", 2, None)]) as records:
        for _ in records:
            pass
    (event,) = captured.transactions()
    assert event["transaction"] == "batch a,b"
    assert [span["data"]["messaging.message.id"] for span in process_spans(event)] == ["a/0/1", "b/0/2"]


def test_a_delivery_callback_argument_reports_the_id_and_keeps_the_users_callback(
    sentry_init: Callable[..., Any],
) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    producer = busprop.kafka.traced_producer(Producer())
    delivered: list[Any] = []
    callers = {"tenant": b"acme"}
    with sentry_sdk.start_transaction(name="head"):
        producer.produce(
            "orders", b"x", headers=callers, on_delivery=lambda error, message: delivered.append(error)
        )
        producer.flush()
    (sent,) = producer.producer.sent
    assert callers == {"tenant": b"acme"} and sent["headers"] is not callers
    assert sent["headers"]["tenant"] == b"acme" and b"-" in sent["headers"]["sentry-trace"]
    assert delivered == [None]
    (event,) = captured.transactions()
    (span,) = [span for span in event["spans"] if span["op"] == "queue.publish"]
    assert span["data"]["messaging.message.id"] == "orders/0/7"


def test_a_failed_delivery_is_reported_in_the_sends_trace(sentry_init: Callable[..., Any]) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    producer = busprop.kafka.traced_producer(Producer(fails=True))
    errors: list[Any] = []
    with sentry_sdk.start_transaction(name="head") as head:
        producer.produce("orders", b"x", on_delivery=lambda error, message: errors.append(error))
        producer.flush()  # after the send's span: the failure is reported in its scopes all the same
    assert len(errors) == 1  # the caller's callback still runs, once
    (error,) = captured.errors()
    assert error["exception"]["values"][-1]["mechanism"]["type"] == "busprop.kafka.delivery"
    assert error["contexts"]["trace"]["trace_id"] == head.trace_id
    (span,) = captured.transactions()[0]["spans"]
    assert span["status"] == "internal_error"
    assert error["contexts"]["trace"]["span_id"] == span["span_id"]


def test_an_async_produce_method_is_awaited_inside_its_span(sentry_init: Callable[..., Any]) -> None:
    captured = sentry_init(traces_sample_rate=1.0)
    raw = AsyncProducer()
    producer = busprop.kafka.traced_producer(raw)

    async def send() -> Any:
        with sentry_sdk.start_transaction(name="head"):
            return await producer.send("orders", b"x", headers=[("k", b"v")])

    assert asyncio.run(send()) == "future"
    assert [name for name, _ in raw.headers] == ["k", "sentry-trace", "baggage"]
    (span,) = captured.transactions()[0]["spans"]
    assert span["op"] == "queue.publish" and span["data"]["messaging.destination.name"] == "orders"


def test_own_calls_are_marked_untraced_exactly_while_the_patches_are_installed(
    sentry_init: Callable[..., Any],
) -> None:
    """The mark that keeps KafkaIntegration's patches from tracing busprop's own calls a second
    time is set only while they are installed (it costs a context variable per send)."""
    seen: list[bool] = []

    def look() -> None:
        seen.append(_core.untraced())

    async def look_async() -> None:
        look()

    def both() -> None:
        _core.call_untraced(look)
        asyncio.run(_core.await_untraced(look_async))

    sentry_init(integrations=[busprop.kafka.KafkaIntegration()])
    both()
    busprop.kafka.KafkaIntegration.uninstall()
    both()
    busprop.kafka.install()
    both()
    busprop.kafka.uninstall()
    both()
    assert seen == [True, True, False, False, True, True, False, False]
    assert not _core.untraced()


@pytest.mark.parametrize("rate", [0.0, None], ids=["unsampled", "tracing off"])
def test_a_send_in_flight_keeps_only_its_isolation_scope_and_trace_for_a_failure(
    sentry_init: Callable[..., Any], rate: float | None
) -> None:
    """Until the broker answers, an unsampled or untraced send keeps what its failure report
    needs and nothing more: the request's isolation scope (its tags, user, breadcrumbs) and the
    trace values written into the record, not the request's transaction or current scope
    (during an outage every buffered record would hold them)."""
    import gc

    from sentry_sdk.tracing import Transaction

    # Without ThreadingIntegration: a thread the SDK starts itself during the request would keep its scopes.
    captured = sentry_init(traces_sample_rate=rate, default_integrations=False)
    producer = busprop.kafka.traced_producer(Producer(fails=True))
    with sentry_sdk.isolation_scope():
        sentry_sdk.set_tag("request", "checkout")
        with sentry_sdk.new_scope() as current:
            current.set_tag("current-only", "yes")
            with sentry_sdk.start_transaction(name="in-flight-head") as head:
                producer.produce("orders", b"x", on_delivery=lambda error, message: None)
            sent = dict(producer.producer.sent[0]["headers"])["sentry-trace"].decode()
    head_ids = (head.trace_id, head.span_id)
    del head, current  # the request is over: nothing of busprop's should hold its transaction
    gc.collect()
    alive = [
        thing
        for thing in gc.get_objects()
        if isinstance(thing, Transaction) and thing.name == "in-flight-head"
    ]
    assert alive == []
    scopes = [thing for thing in gc.get_objects() if isinstance(thing, sentry_sdk.Scope)]
    assert [scope for scope in scopes if "current-only" in scope._tags] == []
    producer.flush()  # the failure arrives after the request ended
    (error,) = captured.errors()
    assert error["exception"]["values"][-1]["mechanism"]["type"] == "busprop.kafka.delivery"
    assert error["tags"] == {"request": "checkout"}
    trace_id, span_id = sent.split("-")[:2]
    assert (error["contexts"]["trace"]["trace_id"], error["contexts"]["trace"]["span_id"]) == (
        trace_id,
        span_id,
    )
    if rate == 0.0:
        assert (trace_id, span_id) == head_ids
    assert captured.transactions() == []


def first(*_: Any) -> None: ...


def second(*_: Any) -> None: ...


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (({"bootstrap.servers": "b"},), {}, None),
        (({"on_delivery": first},), {}, first),
        (({"on_delivery": first},), {"on_delivery": second}, second),  # keywords update the dict
        ((), {"bootstrap.servers": "b", "on_delivery": first}, first),
        (({"on_delivery": first, "default.topic.config": {"on_delivery": second}},), {}, second),
        (({"On_Delivery": first},), {}, first),  # older releases match the name in any case
        (("not a dict",), {}, None),
    ],
)
def test_the_configured_callback_is_read_as_confluent_kafka_reads_its_configuration(
    args: tuple[Any, ...], kwargs: dict[str, Any], expected: Any
) -> None:
    from busprop.kafka import _confluent

    assert _confluent.CLIENT.configured_callback is not None
    assert _confluent.CLIENT.configured_callback(args, kwargs) is expected


def test_a_configured_callback_is_kept_only_when_callable_and_reading_it_never_raises() -> None:
    from busprop.kafka import _confluent

    class Producer:
        def produce(self) -> None: ...

    kept, junk = Producer(), Producer()
    _core.remember_configured_callback(_confluent.CLIENT, kept, ({"on_delivery": first},), {})
    _core.remember_configured_callback(_confluent.CLIENT, junk, ({"on_delivery": "no"},), {})
    _core.remember_configured_callback(
        _confluent.CLIENT, object(), ({"on_delivery": first},), {}
    )  # no __dict__
    assert _core._configured_callback_of(kept.produce) is first
    assert _core._configured_callback_of(junk.produce) is None
    assert _core._configured_callback_of(print) is None  # bound to a module


class FutureProducer:
    """Sends by ``send(topic, value, headers)`` returning a kafka-python future the test resolves."""

    def __init__(self) -> None:
        from kafka.future import Future

        self.sent: list[tuple[Any, Any]] = []
        self._future = Future

    def send(self, topic: str, value: Any = None, headers: Any = None) -> Any:
        future = self._future()
        self.sent.append((future, headers))
        return future


@pytest.mark.parametrize("rate", [0.0, None], ids=["unsampled", "tracing off"])
def test_failures_of_interleaved_requests_sends_are_each_reported_in_their_own_request(
    sentry_init: Callable[..., Any], rate: float | None
) -> None:
    """Sends with nothing to describe share what a failure is reported with while their isolation
    scope and trace stay the same: requests whose sends interleave, even two in one trace, still
    get each their own."""
    captured = sentry_init(traces_sample_rate=rate, default_integrations=False)
    producer = busprop.kafka.traced_producer(FutureProducer())
    requests = {}
    for name in ("a", "b"):
        with sentry_sdk.isolation_scope() as isolation:
            sentry_sdk.set_tag("request", name)
            isolation.set_new_propagation_context()  # each request a trace of its own
            requests[name] = isolation
    with sentry_sdk.scope.use_isolation_scope(requests["a"]), sentry_sdk.isolation_scope() as isolation:
        sentry_sdk.set_tag("request", "c")  # another request in the trace of "a"
        requests["c"] = isolation
    order = ("a", "a", "c", "b", "a", "c")
    for name in order:
        with (
            sentry_sdk.scope.use_isolation_scope(requests[name]),
            sentry_sdk.start_transaction(name=f"request {name}") if rate is not None else _nothing(),
        ):  # the transaction started inside the request's scope, in its trace
            producer.send("orders", b"x")
    for future, _headers in producer.producer.sent:
        future.failure(RuntimeError("broker down"))
    errors = captured.errors()
    assert [error["tags"] for error in errors] == [{"request": name} for name in order]
    for error, (_future, headers) in zip(errors, producer.producer.sent, strict=True):
        trace_id, span_id = dict(headers)["sentry-trace"].decode().split("-")[:2]
        assert error["exception"]["values"][-1]["mechanism"]["type"] == "busprop.kafka.delivery"
        assert (error["contexts"]["trace"]["trace_id"], error["contexts"]["trace"]["span_id"]) == (
            trace_id,
            span_id,
        )
    assert len({error["contexts"]["trace"]["trace_id"] for error in errors}) == (
        len(order) if rate is not None else 2
    )  # a transaction per send, else the trace of each request's scope ("c" shares that of "a")


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield
