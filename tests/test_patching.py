"""busprop.patching: the one way every Integration patches its client library, and its races.

The first half exercises :class:`busprop.patching.Patches` on a class of the test's own; the
second half installs and uninstalls the real Integrations from many threads at once while other
threads keep calling the patched kafka-python and aio-pika methods against the real brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aio_pika
import aio_pika.patterns
import pytest
import sentry_sdk
import wrapt
from aio_pika.queue import QueueIterator
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

import busprop.amqp
import busprop.kafka
import busprop.kafka._integration
from busprop.amqp import AioPikaIntegration
from busprop.kafka import KafkaIntegration
from busprop.patching import Patches

# --- Patches, on a class of the test's own --------------------------------------------------------


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"

    def fail(self, error: BaseException) -> None:
        raise error


class PoliteGreeter(Greeter):
    """Inherits ``greet``: a patch on this class must not touch :class:`Greeter`."""


ORIGINAL_GREET = Greeter.__dict__["greet"]
ORIGINAL_FAIL = Greeter.__dict__["fail"]


def exclaim(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A wrapper whose effect shows how many times it ran: one ``!`` per run."""
    return f"{wrapped(*args, **kwargs)}!"


def question(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Another instrumentation's wrapper, as OpenTelemetry would put it on top of busprop's."""
    return f"{wrapped(*args, **kwargs)}?"


def greeter_patches(owner: type = Greeter) -> Patches:
    return Patches("busprop_test", [(owner, "greet", exclaim), (owner, "fail", exclaim)])


@pytest.fixture(autouse=True)
def _greeter_restored() -> Iterator[None]:
    yield
    Greeter.greet = ORIGINAL_GREET  # type: ignore[method-assign]
    Greeter.fail = ORIGINAL_FAIL  # type: ignore[method-assign]
    if "greet" in PoliteGreeter.__dict__:
        delattr(PoliteGreeter, "greet")


def test_install_wraps_and_uninstall_restores_the_exact_original() -> None:
    patches = greeter_patches()
    assert patches.install() is True
    wrapper = Greeter.__dict__["greet"]
    assert wrapper is not ORIGINAL_GREET and wrapper.__wrapped__ is ORIGINAL_GREET
    assert Greeter().greet("ann") == Greeter.greet(Greeter(), "ann") == "hello ann!"
    assert patches.uninstall() is True
    assert Greeter.__dict__["greet"] is ORIGINAL_GREET
    assert Greeter.__dict__["fail"] is ORIGINAL_FAIL
    assert patches.uninstall() is False  # twice is harmless
    assert Greeter().greet("ann") == "hello ann"


def test_installing_twice_changes_nothing() -> None:
    patches = greeter_patches()
    patches.install()
    wrapper = Greeter.__dict__["greet"]
    assert patches.install() is False
    assert Greeter.__dict__["greet"] is wrapper
    assert Greeter().greet("ann") == "hello ann!"


def test_an_attribute_already_wrapped_by_busprop_is_not_wrapped_twice() -> None:
    """A second copy of an Integration's patches (a reloaded module) finds the first one's wrapper."""
    first, second = greeter_patches(), greeter_patches()
    first.install()
    wrapper = Greeter.__dict__["greet"]
    assert second.install() is True
    assert Greeter.__dict__["greet"] is wrapper
    assert Greeter().greet("ann") == "hello ann!"
    second.uninstall()
    assert Greeter.__dict__["greet"] is ORIGINAL_GREET
    first.uninstall()
    assert Greeter.__dict__["greet"] is ORIGINAL_GREET


def test_a_busprop_wrapper_under_another_instrumentation_is_switched_not_wrapped_again() -> None:
    """Uninstall cannot remove a wrapper another library wrapped; it turns it off, install on again."""
    patches = greeter_patches()
    patches.install()
    wrapt.wrap_function_wrapper(Greeter, "greet", question)
    foreign = Greeter.__dict__["greet"]
    assert Greeter().greet("ann") == "hello ann!?"
    patches.uninstall()
    assert Greeter.__dict__["greet"] is foreign
    assert Greeter().greet("ann") == "hello ann?"
    patches.install()
    assert Greeter.__dict__["greet"] is foreign
    assert Greeter().greet("ann") == "hello ann!?"


def test_a_wrapper_held_across_an_uninstall_runs_the_original() -> None:
    patches = greeter_patches()
    patches.install()
    greet = Greeter().greet  # a bound method taken while installed
    patches.uninstall()
    assert greet("ann") == "hello ann"


def test_original_skips_only_busprops_wrapper() -> None:
    patches = greeter_patches()
    assert patches.original(Greeter, "greet") is ORIGINAL_GREET
    patches.install()
    assert patches.original(Greeter, "greet") is ORIGINAL_GREET
    assert patches.original(Greeter, "greet").__get__(Greeter())("ann") == "hello ann"
    wrapt.wrap_function_wrapper(Greeter, "greet", question)
    assert patches.original(Greeter, "greet") is Greeter.__dict__["greet"]


def test_an_inherited_method_is_patched_on_the_subclass_only_and_removed_again() -> None:
    patches = greeter_patches(PoliteGreeter)
    patches.install()
    assert PoliteGreeter().greet("ann") == "hello ann!"
    assert Greeter().greet("ann") == "hello ann"
    patches.uninstall()
    assert "greet" not in PoliteGreeter.__dict__
    assert PoliteGreeter().greet("ann") == "hello ann"


def test_an_attribute_the_library_lacks_is_skipped() -> None:
    patches = Patches("busprop_test", [(Greeter, "no_such_method", exclaim), (Greeter, "greet", exclaim)])
    assert patches.install() is True
    assert Greeter().greet("ann") == "hello ann!"
    assert not hasattr(Greeter, "no_such_method")
    patches.uninstall()
    assert Greeter.__dict__["greet"] is ORIGINAL_GREET


def test_the_originals_exception_propagates_unchanged() -> None:
    greeter_patches().install()
    error = LookupError("the user's own")
    with pytest.raises(LookupError) as raised:
        Greeter().fail(error)
    assert raised.value is error


class Library:
    """A client library's class with the other kinds of method a patch may land on."""

    async def send(self, topic: str, value: bytes = b"", *, key: bytes | None = None) -> str:
        return f"sent {topic}"

    def records(self, count: int) -> Iterator[int]:
        yield from range(count)

    @staticmethod
    def version() -> str:
        return "1.0"


async def exclaim_async(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return f"{await wrapped(*args, **kwargs)}!"


def counted(calls: list[Any]) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        calls.append(instance)
        return wrapped(*args, **kwargs)

    return wrapper


def test_a_patched_method_keeps_its_kind_name_and_signature() -> None:
    """A class's Python function or coroutine function is patched by a plain function (no proxy
    bound on every call): it must still look like the library's method to code that inspects it."""
    originals = {name: Library.__dict__[name] for name in ("send", "records", "version")}
    calls: list[Any] = []
    patches = Patches(
        "busprop_test",
        [
            (Library, "send", exclaim_async),
            (Library, "records", counted(calls)),
            (Library, "version", counted(calls)),
        ],
    )
    patches.install()
    try:
        library = Library()
        assert inspect.iscoroutinefunction(Library.send) and inspect.iscoroutinefunction(library.send)
        assert inspect.signature(library.send) == inspect.signature(originals["send"].__get__(library))
        assert (Library.send.__name__, Library.send.__qualname__) == ("send", "Library.send")
        assert asyncio.run(library.send("orders", key=b"k")) == "sent orders!"
        assert inspect.isgeneratorfunction(Library.records)  # generator functions keep wrapt's proxy
        assert list(library.records(3)) == [0, 1, 2]
        assert Library.version() == library.version() == "1.0"
        assert calls == [library, None, None]
    finally:
        patches.uninstall()
    assert {name: Library.__dict__[name] for name in originals} == originals
    assert asyncio.run(Library().send("orders")) == "sent orders"


def test_a_coroutine_method_held_across_an_uninstall_runs_the_original() -> None:
    patches = Patches("busprop_test", [(Library, "send", exclaim_async)])
    patches.install()
    try:
        send = Library().send
        assert asyncio.run(send("orders")) == "sent orders!"
    finally:
        patches.uninstall()
    assert asyncio.run(send("orders")) == "sent orders"


def test_concurrent_install_and_uninstall_never_raises_nor_wraps_twice() -> None:
    patches = greeter_patches()
    results: set[str] = set()
    errors = race(patches.install, patches.uninstall, [lambda: results.add(Greeter().greet("ann"))] * 2)
    patches.uninstall()
    assert errors == []
    assert results <= {"hello ann", "hello ann!"}
    assert Greeter.__dict__["greet"] is ORIGINAL_GREET


# --- the real Integrations under concurrent install / uninstall --------------------------------

KAFKA_PATCHED = [(KafkaProducer, "send"), (KafkaConsumer, "__next__"), (KafkaConsumer, "close")]
AIO_PIKA_PATCHED = [
    (aio_pika.Exchange, "publish"),
    (aio_pika.Queue, "consume"),
    (aio_pika.Queue, "__aiter__"),
    (QueueIterator, "__aiter__"),
    (QueueIterator, "__aexit__"),
    (aio_pika.patterns.RPC, "call"),
    (aio_pika.patterns.RPC, "execute"),
]
TOGGLERS = 8
ROUNDS = 1000
#: Each user thread completes at least this many calls while the togglers run (a slow first call,
#: such as a connection, must not let the togglers finish alone).
CALLS = 200
#: An aio-pika round trip takes a few milliseconds: fewer of them.
ROUND_TRIPS = 50


def attributes(patched: list[tuple[type, str]]) -> dict[tuple[type, str], int]:
    """The ids of the objects in the owners' own ``__dict__`` (what a patch replaces).

    Ids, because a ``wrapt`` wrapper compares equal to the function it wraps. An original stays
    referenced (by its class or by a wrapper), so its id is never reused by another object.
    """
    return {(owner, name): id(owner.__dict__.get(name)) for owner, name in patched}


@contextlib.contextmanager
def frequent_thread_switches() -> Iterator[None]:
    """Let the interpreter switch threads every few bytecodes, so a narrow race shows up in a test."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def race(
    install: Callable[[], object],
    uninstall: Callable[[], object],
    users: list[Callable[[], object]],
    calls: int = CALLS,
) -> list[BaseException]:
    """``TOGGLERS`` threads alternate install/uninstall while each user runs in a loop on its own thread.

    The togglers go on for ``ROUNDS`` rounds and until every user made ``calls`` calls (or failed).
    Returns every exception raised by either side.
    """
    errors: list[BaseException] = []
    stop = threading.Event()
    start = threading.Barrier(TOGGLERS + len(users))
    done = [threading.Event() for _ in users]

    def toggle(index: int) -> None:
        try:
            start.wait()
            round_ = 0
            while round_ < ROUNDS or not all(event.is_set() for event in done):
                (install if (round_ + index) % 2 == 0 else uninstall)()
                round_ += 1
        except BaseException as error:
            errors.append(error)

    def use(call: Callable[[], object], done: threading.Event) -> None:
        made = 0
        try:
            start.wait()
            while not stop.is_set():
                call()
                made += 1
                if made >= calls:
                    done.set()
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    togglers = [threading.Thread(target=toggle, args=(index,)) for index in range(TOGGLERS)]
    callers = [threading.Thread(target=use, args=pair) for pair in zip(users, done, strict=True)]
    with frequent_thread_switches():
        for thread in togglers + callers:
            thread.start()
        for thread in togglers:
            thread.join()
        stop.set()
        for thread in callers:
            thread.join()
    return errors


def test_a_second_copy_of_the_kafka_module_does_not_wrap_kafka_python_twice() -> None:
    """A module imported twice (a reload, a vendored copy) finds the first copy's wrappers in place."""
    busprop.kafka.uninstall()  # an Integration an earlier test set up stays installed for the process
    originals = attributes(KAFKA_PATCHED)
    spec = importlib.util.spec_from_file_location("busprop_kafka_copy", busprop.kafka._integration.__file__)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    try:
        busprop.kafka.install()
        patched = attributes(KAFKA_PATCHED)
        assert patched != originals
        copy.install()
        assert attributes(KAFKA_PATCHED) == patched
    finally:
        copy.uninstall()
        busprop.kafka.uninstall()
    assert attributes(KAFKA_PATCHED) == originals


def new_topic(bootstrap: str) -> str:
    """A topic of one partition, created up front (the embedded broker serves no auto-created topic)."""
    name = f"busprop-patching-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()
    return name


@pytest.mark.broker
def test_kafka_methods_taken_while_patched_run_the_originals_after_an_uninstall(
    sentry_init: Callable[..., Any], kafka_bootstrap: str
) -> None:
    """The race a concurrent uninstall opens, made deterministic: such a call used to raise ``KeyError``."""
    topic = new_topic(kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topic, b"warm-up").get(timeout=30)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=10_000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    captured = sentry_init(traces_sample_rate=1.0, integrations=[KafkaIntegration()])
    send, step = producer.send, consumer.__next__  # resolved while patched
    try:
        KafkaIntegration.uninstall()
        with sentry_sdk.start_transaction(name="head"):
            send(topic, b"plain").get(timeout=30)
        records = [step(), step()]
    finally:
        consumer.close()
        producer.close()
    assert [(record.value, record.headers) for record in records] == [(b"warm-up", []), (b"plain", [])]
    (head,) = captured.transactions()
    assert head["transaction"] == "head"
    assert head["spans"] == []


@pytest.mark.broker
def test_kafka_integration_installs_and_uninstalls_concurrently_while_in_use(
    sentry_init: Callable[..., Any], kafka_bootstrap: str
) -> None:
    busprop.kafka.uninstall()  # an Integration an earlier test set up stays installed for the process
    originals = attributes(KAFKA_PATCHED)
    sentry_init(traces_sample_rate=1.0, integrations=[KafkaIntegration()])
    topic = new_topic(kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topic, b"warm-up").get(timeout=30)  # the topic and its metadata exist from here

    def send() -> None:
        producer.send(topic, b"x", headers=[("kept", b"1")])

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=5)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()

    def consume() -> None:
        for _record in consumer:  # the records sent meanwhile, each traced while patched
            break

    traced = busprop.kafka.traced_producer(producer)
    try:
        errors = race(
            KafkaIntegration.setup_once,
            KafkaIntegration.uninstall,
            [send, send, send, consume, lambda: traced.send(topic, b"y")],
        )
        producer.flush(timeout=30)
    finally:
        # A record a racing thread left in processing (its loop broke, then the patch was off for
        # the close) would end when the consumer is collected: after this test, in a later test's
        # client. A patched close ends it here, in this test's.
        KafkaIntegration.uninstall()
        busprop.kafka.install()
        consumer.close()
        KafkaIntegration.uninstall()
        producer.close()
    assert errors == []
    assert attributes(KAFKA_PATCHED) == originals


@pytest.mark.broker
def test_aio_pika_integration_installs_and_uninstalls_concurrently_while_in_use(
    sentry_init: Callable[..., Any], amqp_url: str
) -> None:
    AioPikaIntegration.uninstall()  # an Integration an earlier test set up stays installed for the process
    originals = attributes(AIO_PIKA_PATCHED)
    sentry_init(traces_sample_rate=1.0, integrations=[AioPikaIntegration()])

    def user() -> Callable[[], None]:
        """One round trip per call, on a connection and event loop of the calling thread's own."""
        state: dict[str, Any] = {}

        async def round_trip() -> None:
            if "channel" not in state:
                state["connection"] = await aio_pika.connect(amqp_url)
                state["channel"] = await state["connection"].channel()
                state["queue"] = await state["channel"].declare_queue(exclusive=True)
            queue = state["queue"]
            await state["channel"].default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)
            async with queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    break

        def call() -> None:
            loop = state.setdefault("loop", asyncio.new_event_loop())
            loop.run_until_complete(round_trip())

        state["call"] = call
        users.append(state)
        return call

    users: list[dict[str, Any]] = []
    try:
        errors = race(
            AioPikaIntegration.setup_once, AioPikaIntegration.uninstall, [user(), user()], ROUND_TRIPS
        )
    finally:
        AioPikaIntegration.uninstall()
        for state in users:
            if "connection" in state:
                state["loop"].run_until_complete(state["connection"].close())
            if "loop" in state:
                state["loop"].close()
    assert errors == []
    assert attributes(AIO_PIKA_PATCHED) == originals
