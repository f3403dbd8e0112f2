"""busprop.celery against real Celery workers (separate processes) on Redis and RabbitMQ.

Workers are module-scoped and shared: a prefork worker on Redis and a threads worker on RabbitMQ run
every canvas shape; a solo worker on Redis with embedded beat covers the third pool and beat; a worker
with only sentry-sdk's CeleryIntegration covers interoperability. The test process publishes with
busprop and captures its own transactions in memory; workers append theirs to JSON-lines files.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from celery import Celery, chain, chord, group, signals
from celery.app.trace import trace_task
from sentry_sdk.integrations.celery import CeleryIntegration

import busprop
import busprop.celery
from busprop import sdk
from tests.apps.celery_app import create_app
from tests.processes import APPS, ROOT, read_captured, run_app

pytestmark = pytest.mark.broker

Event = dict[str, Any]


def trace_of(event: Event) -> dict[str, Any]:
    return event["contexts"]["trace"]  # type: ignore[no-any-return]


def spans_of(event: Event, op: str) -> list[dict[str, Any]]:
    return [span for span in event.get("spans", []) if span["op"] == op]


@dataclass
class Worker:
    """A ``celery worker`` subprocess and what it captured."""

    name: str
    system: str
    queue: str
    app: Celery
    capture_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def events(self, kind: str = "transaction") -> list[Event]:
        found = []
        for path in sorted(self.capture_dir.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # a last line may be half-written
                if line.strip():
                    record = json.loads(line)
                    if record["type"] == kind:
                        found.append({**record["event"], "_dsc": record["dsc"]})
        return found

    def wait_for(
        self,
        predicate: Callable[[Event], bool],
        count: int = 1,
        kind: str = "transaction",
        timeout: float = 20,
    ) -> list[Event]:
        """The captured events matching ``predicate``, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [event for event in self.events(kind) if predicate(event)]
            if len(matching) >= count or time.monotonic() > deadline:
                break
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited\n{self.log()}")
            time.sleep(0.05)
        assert len(matching) >= count, (
            f"{len(matching)}/{count} {kind}s from {self.name}\n{self.log()[-3000:]}"
        )
        return matching

    def transactions_of(self, trace_id: str, count: int = 1) -> list[Event]:
        return self.wait_for(lambda event: trace_of(event)["trace_id"] == trace_id, count)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_worker(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    name: str,
    broker: str,
    backend: str,
    pool: str,
    concurrency: int,
    mode: str = "busprop",
    beat_every: float | None = None,
) -> Worker:
    queue = f"busprop-{name}-{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp(f"celery-{name}")
    capture_dir = directory / "captured"
    capture_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BUSPROP_CAPTURE_DIR": str(capture_dir)}
    args = [broker, backend, queue, pool, str(concurrency), mode]
    if beat_every is not None:
        env["BUSPROP_BEAT_EVERY"] = str(beat_every)
        args += ["--beat", str(directory / "beat-schedule")]
    log_path = directory / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(APPS / "celery_worker.py"), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    app = create_app(broker, backend, queue)
    system = "redis" if broker.startswith("redis") else "amqp"
    worker = Worker(name, system, queue, app, capture_dir, log_path, process)
    try:
        app.send_task("busprop_tests.add", (0, 0)).get(timeout=60)  # ready when it answers
    except Exception:
        stop_worker(worker)
        raise AssertionError(f"worker {name} did not start\n{worker.log()}") from None
    return worker


def stop_worker(worker: Worker) -> None:
    # Cold shutdown: every task the tests sent has finished and what it captured is on disk. A worker
    # on RabbitMQ takes about 10 s to close its connection (with or without busprop): not waited for.
    worker.process.send_signal(signal.SIGQUIT)
    try:
        worker.process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
    try:
        with worker.app.connection_for_write() as connection:
            connection.default_channel.queue_delete(worker.queue)
    except Exception:
        pass
    worker.app.close()


@pytest.fixture(scope="module")
def redis_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = start_worker(
        tmp_path_factory,
        name="redis-prefork",
        broker=redis_url,
        backend=redis_url,
        pool="prefork",
        concurrency=2,
    )
    yield worker
    stop_worker(worker)


@pytest.fixture(scope="module")
def amqp_worker(amqp_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = start_worker(
        tmp_path_factory,
        name="amqp-threads",
        broker=amqp_url,
        backend=redis_url,
        pool="threads",
        concurrency=8,
    )
    yield worker
    stop_worker(worker)


@pytest.fixture(scope="module")
def solo_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = start_worker(
        tmp_path_factory,
        name="redis-solo-beat",
        broker=redis_url,
        backend=redis_url,
        pool="solo",
        concurrency=1,
        beat_every=0.5,
    )
    yield worker
    stop_worker(worker)


@pytest.fixture(scope="module")
def sentry_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = start_worker(
        tmp_path_factory,
        name="redis-sentry-sdk",
        broker=redis_url,
        backend=redis_url,
        pool="threads",
        concurrency=4,
        mode="sentry",
    )
    yield worker
    stop_worker(worker)


@pytest.fixture(params=["redis", "amqp"])
def worker(request: pytest.FixtureRequest) -> Worker:
    return request.getfixturevalue(f"{request.param}_worker")  # type: ignore[no-any-return]


@pytest.fixture
def traced(sentry_init: Callable[..., Any]) -> Iterator[Any]:
    """This process publishes with busprop (sentry-sdk's CeleryIntegration disabled) and captures."""
    # sentry-sdk 2.75 applies ``disabled_integrations`` only the first time an integration is set up in a
    # process; leaving out the auto-enabling integrations keeps its CeleryIntegration off in any test order.
    captured = sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)
    assert sentry_sdk.get_client().get_integration(CeleryIntegration) is None
    busprop.celery.install()
    yield captured
    busprop.celery.uninstall()


def root_transaction(captured: Any, name: str = "root") -> Event:
    [root] = [event for event in captured.transactions() if event["transaction"] == name]
    return root


def assert_continues(child: Event, parent_span: dict[str, Any]) -> None:
    assert trace_of(child)["trace_id"] == parent_span["trace_id"]
    assert trace_of(child)["parent_span_id"] == parent_span["span_id"]


def messaging_data(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key.startswith("messaging.")}


def process_span(task: Event) -> dict[str, Any]:
    """The one ``queue.process`` span of a busprop task's transaction, which the task's body ran in.

    It is the transaction's child, named after the task, with its origin and status, and the task's
    Queues data, which the transaction does not repeat.
    """
    context = trace_of(task)
    assert context["op"] == sdk.OP_TASK
    [span] = spans_of(task, sdk.OP_PROCESS)
    assert (span["trace_id"], span["parent_span_id"]) == (context["trace_id"], context["span_id"])
    assert span["description"] == task["transaction"]
    assert span["origin"] == context["origin"]
    assert span["status"] == context["status"]
    assert messaging_data(span["data"]) and messaging_data(context["data"]) == {}
    return span


def message_data(task: Event) -> dict[str, Any]:
    """The Queues data of a task's transaction: its one ``queue.process`` span's (none without one)."""
    spans = spans_of(task, sdk.OP_PROCESS)
    return spans[0]["data"] if len(spans) == 1 else {}


# ---------------------------------------------------------------- single tasks and canvas


def test_single_task(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    add = worker.app.tasks["busprop_tests.add"]
    with sentry_sdk.start_transaction(name="root", op="test"):
        result = add.delay(2, 3)
        assert result.get(timeout=10) == 5
    root = root_transaction(traced)
    [publish] = spans_of(root, "queue.publish")
    assert publish["description"] == "busprop_tests.add"
    assert publish["data"]["messaging.system"] == worker.system
    assert publish["data"]["messaging.destination.name"] == worker.queue
    assert publish["data"]["messaging.message.id"] == result.id
    assert publish["timestamp"] >= publish["start_timestamp"]
    [task] = worker.transactions_of(trace_of(root)["trace_id"])
    assert_continues(task, publish)
    context = trace_of(task)
    assert task["transaction"] == "busprop_tests.add"
    assert context["op"] == sdk.OP_TASK
    assert context["status"] == "ok"
    assert process_span(task)["status"] == "ok"
    assert context["origin"] == busprop.celery.ORIGIN
    data = process_span(task)["data"]
    assert data["messaging.system"] == worker.system
    assert data["messaging.destination.name"] == worker.queue
    assert data["messaging.message.id"] == result.id
    assert data["messaging.message.retry.count"] == 0
    assert 0 <= data["messaging.message.receive.latency"] < 10_000
    assert task["_dsc"]["trace_id"] == trace_of(root)["trace_id"]
    assert task["_dsc"]["transaction"] == "root"  # the head's frozen baggage


def test_headers_top_level_and_nested(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    echo = worker.app.tasks["busprop_tests.echo"]
    with sentry_sdk.start_transaction(name="root", op="test"):
        seen = echo.apply_async(headers={"baggage": "vendor=kept"}).get(timeout=10)
    [publish] = spans_of(root_transaction(traced), "queue.publish")
    expected = f"{publish['trace_id']}-{publish['span_id']}-1"
    for container in ("top", "nested"):
        assert seen[container]["sentry-trace"] == expected
        assert "vendor=kept" in seen[container]["baggage"].split(",")
        assert seen[container]["baggage"].count("sentry-trace_id=") == 1
        assert isinstance(seen[container]["sentry-task-enqueued-time"], float)


def test_chain_step_two_is_child_of_step_one(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    tasks = worker.app.tasks
    with sentry_sdk.start_transaction(name="root", op="test"):
        result = chain(tasks["busprop_tests.add"].s(1, 2), tasks["busprop_tests.double"].s()).apply_async()
        assert result.get(timeout=10) == 6
    root = root_transaction(traced)
    [publish] = spans_of(root, "queue.publish")
    by_name = {event["transaction"]: event for event in worker.transactions_of(publish["trace_id"], 2)}
    step_one, step_two = by_name["busprop_tests.add"], by_name["busprop_tests.double"]
    assert_continues(step_one, publish)
    [publish_two] = spans_of(step_one, "queue.publish")
    assert publish_two["description"] == "busprop_tests.double"
    assert publish_two["parent_span_id"] == process_span(step_one)["span_id"]  # sent from the body
    assert_continues(step_two, publish_two)


def test_group_each_member_continues(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    add = worker.app.tasks["busprop_tests.add"]
    with sentry_sdk.start_transaction(name="root", op="test"):
        assert group(add.s(i, i) for i in range(3)).apply_async().get(timeout=10) == [0, 2, 4]
    publishes = spans_of(root_transaction(traced), "queue.publish")
    assert len(publishes) == 3
    members = worker.transactions_of(publishes[0]["trace_id"], 3)
    assert sorted(trace_of(event)["parent_span_id"] for event in members) == sorted(
        span["span_id"] for span in publishes
    )


def test_chord_body_continues_from_a_header_task(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    tasks = worker.app.tasks
    with sentry_sdk.start_transaction(name="root", op="test"):
        header = [tasks["busprop_tests.add"].s(i, 1) for i in range(3)]
        assert chord(header)(tasks["busprop_tests.total"].s()).get(timeout=15) == 6
    trace_id = trace_of(root_transaction(traced))["trace_id"]
    events = worker.transactions_of(trace_id, 4)
    [body] = [event for event in events if event["transaction"] == "busprop_tests.total"]
    header_publishes = {
        span["span_id"]: span
        for event in events
        if event["transaction"] == "busprop_tests.add"
        for span in spans_of(event, "queue.publish")
    }
    assert trace_of(body)["parent_span_id"] in header_publishes


def test_link_and_link_error(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    tasks = worker.app.tasks
    with sentry_sdk.start_transaction(name="root", op="test"):
        tasks["busprop_tests.add"].apply_async((1, 1), link=tasks["busprop_tests.double"].s())
        tasks["busprop_tests.fail"].apply_async(link_error=tasks["busprop_tests.record_error"].s())
    trace_id = trace_of(root_transaction(traced))["trace_id"]
    events = {event["transaction"]: event for event in worker.transactions_of(trace_id, 4)}
    [linked_publish] = spans_of(events["busprop_tests.add"], "queue.publish")
    assert_continues(events["busprop_tests.double"], linked_publish)
    [errback_publish] = spans_of(events["busprop_tests.fail"], "queue.publish")
    assert_continues(events["busprop_tests.record_error"], errback_publish)
    assert trace_of(events["busprop_tests.fail"])["status"] == "internal_error"
    failed = process_span(events["busprop_tests.fail"])
    assert failed["status"] == "internal_error"
    [error] = worker.wait_for(lambda event: trace_of(event)["trace_id"] == trace_id, kind="event")
    assert error["exception"]["values"][-1]["type"] == "ValueError"
    assert error["exception"]["values"][-1]["mechanism"]["type"] == "busprop.celery"
    assert trace_of(error)["span_id"] == failed["span_id"]  # raised in the task's queue.process span


def test_send_task_by_name_leaves_no_span_open(traced: Any, worker: Worker, redis_url: str) -> None:
    bare = Celery("bare", broker=worker.app.conf.broker_url, backend=redis_url, set_as_current=False)
    bare.conf.task_default_queue = worker.queue
    busprop.celery.install(bare)
    try:
        with sentry_sdk.start_transaction(name="root", op="test") as root:
            result = bare.send_task("busprop_tests.add", (4, 4))
            assert sentry_sdk.get_current_span() is root
            assert result.get(timeout=10) == 8
    finally:
        bare.close()
    [publish] = spans_of(root_transaction(traced), "queue.publish")
    assert publish["timestamp"] is not None
    [task] = worker.transactions_of(publish["trace_id"])
    assert_continues(task, publish)


def test_countdown_and_eta(traced: Any, worker: Worker) -> None:
    """The receive latency is the time from the publish to the task's start, countdown/ETA included.

    Every bound comes from what the test measured or the worker saw: the publish time busprop
    wrote, the ETA Celery held the task to, and the task's transaction start. A latency measured
    from the ETA, or not in milliseconds, or from another publish time falls outside them however
    slow the machine is.
    """
    busprop.celery.install(worker.app)
    echo = worker.app.tasks["busprop_tests.echo"]
    with sentry_sdk.start_transaction(name="root", op="test"):
        sent_from = time.time()
        first = echo.apply_async(countdown=0.6)
        second = echo.apply_async(
            eta=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.6)
        )
        sent_by = time.time()
        seen = {result.id: result.get(timeout=10) for result in (first, second)}
    publishes = spans_of(root_transaction(traced), "queue.publish")
    tasks = worker.transactions_of(publishes[0]["trace_id"], 2)
    assert sorted(trace_of(task)["parent_span_id"] for task in tasks) == sorted(
        s["span_id"] for s in publishes
    )
    for task in tasks:
        data = message_data(task)
        headers = seen[data["messaging.message.id"]]
        published = headers["top"]["sentry-task-enqueued-time"]
        eta = datetime.datetime.fromisoformat(headers["eta"]).timestamp()
        started = datetime.datetime.fromisoformat(task["start_timestamp"]).timestamp()
        latency = data["messaging.message.receive.latency"]
        assert sent_from <= published <= sent_by  # busprop wrote the time of the publish
        assert eta - published >= 0.4  # the countdown/ETA lies ahead of the publish
        assert latency >= (eta - published) * 1000 - 5  # the task ran after its ETA (5 ms: Celery's timer)
        # Measured just before the transaction starts: microseconds before it; 100 ms allows for
        # a worker descheduled in between, far less than the countdown the latency must include.
        waited = (started - published) * 1000
        assert waited - 100 <= latency <= waited + 1


def test_retry_is_one_trace_with_retry_count(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    with sentry_sdk.start_transaction(name="root", op="test"):
        assert worker.app.tasks["busprop_tests.retry_once"].delay().get(timeout=10) == 1
    [publish] = spans_of(root_transaction(traced), "queue.publish")
    runs = sorted(
        worker.transactions_of(publish["trace_id"], 2),
        key=lambda event: message_data(event)["messaging.message.retry.count"],
    )
    assert [trace_of(run)["status"] for run in runs] == ["aborted", "ok"]
    assert [process_span(run)["status"] for run in runs] == ["aborted", "ok"]
    assert [message_data(run)["messaging.message.retry.count"] for run in runs] == [0, 1]
    assert_continues(runs[0], publish)
    [republish] = spans_of(runs[0], "queue.publish")
    assert_continues(runs[1], republish)


def test_failure_is_reported_in_the_trace(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    with sentry_sdk.start_transaction(name="root", op="test"):
        result = worker.app.tasks["busprop_tests.fail"].delay()
        with pytest.raises(ValueError, match="boom"):
            result.get(timeout=10)
    trace_id = trace_of(root_transaction(traced))["trace_id"]
    [task] = worker.transactions_of(trace_id)
    assert trace_of(task)["status"] == "internal_error"
    assert process_span(task)["status"] == "internal_error"
    [error] = worker.wait_for(lambda event: trace_of(event)["trace_id"] == trace_id, kind="event")
    assert error["exception"]["values"][-1]["value"] == "boom"


def test_expired_task_is_revoked_in_the_trace(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    expired = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    with sentry_sdk.start_transaction(name="root", op="test"):
        result = worker.app.tasks["busprop_tests.add"].apply_async((1, 1), expires=expired)
    [publish] = spans_of(root_transaction(traced), "queue.publish")
    [task] = worker.transactions_of(publish["trace_id"])
    assert_continues(task, publish)
    assert trace_of(task)["status"] == "deadline_exceeded"
    assert process_span(task)["status"] == "deadline_exceeded"
    assert message_data(task)["messaging.message.id"] == result.id


def test_unknown_task_ends_its_hop(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    with sentry_sdk.start_transaction(name="root", op="test"):
        worker.app.send_task("busprop_tests.not_registered_anywhere")
    [publish] = spans_of(root_transaction(traced), "queue.publish")
    [task] = worker.transactions_of(publish["trace_id"])
    assert_continues(task, publish)
    assert trace_of(task)["status"] == "not_found"
    assert process_span(task)["status"] == "not_found"
    assert message_data(task)["messaging.destination.name"] == worker.queue
    assert message_data(task)["messaging.message.id"] == publish["data"]["messaging.message.id"]


# ---------------------------------------------------------------- headers that are missing or junk


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"sentry-trace": "not-a-trace", "baggage": "sentry-trace_id=zz"},
        {"sentry-trace": 42, "baggage": ["x"], "headers": {"sentry-trace": "0" * 32 + "-" + "0" * 16 + "-1"}},
        {"headers": "not a dict", "sentry-task-enqueued-time": "yesterday"},
    ],
    ids=["missing", "malformed", "wrong-types", "junk-nested"],
)
def test_bad_headers_start_a_fresh_trace(traced: Any, worker: Worker, headers: dict[str, Any]) -> None:
    busprop.celery.install(worker.app)
    busprop.configure(propagation_targets=[])  # this publisher writes nothing: the headers stay as given
    with sentry_sdk.start_transaction(name="root", op="test") as root:
        result = worker.app.tasks["busprop_tests.traceparent"].apply_async(headers=headers)
        seen = result.get(timeout=10)
    [task] = worker.wait_for(lambda event: message_data(event).get("messaging.message.id") == result.id)
    assert trace_of(task)["trace_id"] != root.trace_id
    assert trace_of(task).get("parent_span_id") is None
    assert seen.split("-")[0] == trace_of(task)["trace_id"]
    assert trace_of(task)["status"] == "ok"
    assert seen.split("-")[1] == process_span(task)["span_id"]  # the body sends on from its span


def test_unsampled_head_is_not_recorded_and_travels_on(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    tasks = worker.app.tasks
    with sentry_sdk.start_transaction(name="root", op="test", sampled=False) as root:
        child_id = tasks["busprop_tests.spawn"].delay().get(timeout=10)
        seen = worker.app.AsyncResult(child_id).get(timeout=10)
    assert seen["top"]["sentry-trace"].startswith(root.trace_id)
    assert seen["top"]["sentry-trace"].endswith("-0")
    assert seen["nested"]["sentry-trace"] == seen["top"]["sentry-trace"]
    assert "sentry-sampled=false" in seen["nested"]["baggage"]
    assert not [event for event in worker.events() if trace_of(event)["trace_id"] == root.trace_id]
    assert traced.transactions() == []


def test_propagation_targets_match_task_names(traced: Any, worker: Worker) -> None:
    busprop.configure(propagation_targets=[r"^busprop_tests\.add$"])
    busprop.celery.install(worker.app)
    tasks = worker.app.tasks
    with sentry_sdk.start_transaction(name="root", op="test") as root:
        assert tasks["busprop_tests.add"].delay(1, 1).get(timeout=10) == 2
        seen = tasks["busprop_tests.echo"].delay().get(timeout=10)
    [task] = worker.transactions_of(root.trace_id)
    assert task["transaction"] == "busprop_tests.add"
    assert seen["top"]["sentry-trace"] is None and seen["nested"]["sentry-trace"] is None
    assert not seen["traceparent"].startswith(root.trace_id)


def test_per_task_opt_out_header(traced: Any, worker: Worker) -> None:
    busprop.celery.install(worker.app)
    with sentry_sdk.start_transaction(name="root", op="test") as root:
        seen = worker.app.tasks["busprop_tests.echo"].apply_async(headers={busprop.celery.PROPAGATE: False})
        seen = seen.get(timeout=10)
    assert seen["top"] == {key: None for key in seen["top"]}
    assert not seen["traceparent"].startswith(root.trace_id)
    assert spans_of(root_transaction(traced), "queue.publish") == []


def test_message_protocol_1(traced: Any, worker: Worker) -> None:
    app = create_app(worker.app.conf.broker_url, worker.app.conf.result_backend, worker.queue)
    app.conf.task_protocol = 1
    busprop.celery.install(app)
    try:
        with sentry_sdk.start_transaction(name="root", op="test"):
            assert app.tasks["busprop_tests.add"].delay(3, 4).get(timeout=10) == 7
    finally:
        app.close()
    [publish] = spans_of(root_transaction(traced), "queue.publish")
    [task] = worker.transactions_of(publish["trace_id"])
    assert_continues(task, publish)
    assert message_data(task)["messaging.message.id"] == publish["data"]["messaging.message.id"]


# ---------------------------------------------------------------- in-process behaviour


@pytest.fixture
def eager_app() -> Iterator[Celery]:
    app = create_app("memory://", "cache+memory://", "eager")
    app.conf.task_always_eager = True
    yield app
    app.close()


def test_eager_task_continues_the_caller(traced: Any, eager_app: Celery) -> None:
    busprop.celery.install(eager_app)
    with sentry_sdk.start_transaction(name="root", op="test") as root:
        assert eager_app.tasks["busprop_tests.add"].delay(1, 2).get() == 3
        assert sentry_sdk.get_current_span() is root
    [task] = [event for event in traced.transactions() if event["transaction"] == "busprop_tests.add"]
    assert trace_of(task)["trace_id"] == root.trace_id
    assert trace_of(task)["parent_span_id"] == root.span_id
    assert trace_of(task)["op"] == sdk.OP_TASK
    assert process_span(task)["status"] == "ok"


def test_eager_failure_and_retry(traced: Any, eager_app: Celery) -> None:
    busprop.celery.install(eager_app)
    with sentry_sdk.start_transaction(name="root", op="test"):
        assert eager_app.tasks["busprop_tests.retry_once"].delay().get() == 1
        with pytest.raises(ValueError):
            eager_app.tasks["busprop_tests.fail"].apply(throw=True)
    statuses = sorted(
        (event["transaction"], trace_of(event)["status"])
        for event in traced.transactions()
        if event["transaction"] != "root"
    )
    assert statuses == [
        ("busprop_tests.fail", "internal_error"),
        ("busprop_tests.retry_once", "aborted"),
        ("busprop_tests.retry_once", "ok"),
    ]
    assert (
        sorted(
            (event["transaction"], process_span(event)["status"])
            for event in traced.transactions()
            if event["transaction"] != "root"
        )
        == statuses
    )
    assert [error["exception"]["values"][-1]["value"] for error in traced.errors()] == ["boom"]


def test_without_sentry_initialised_tasks_still_run(eager_app: Celery) -> None:
    sentry_sdk.init(auto_enabling_integrations=False)  # no DSN, no tracing: busprop stays out of the way
    assert sentry_sdk.get_client().dsn is None
    busprop.celery.install(eager_app)
    try:
        assert eager_app.tasks["busprop_tests.add"].delay(2, 2).get() == 4
        with pytest.raises(ValueError, match="boom"):
            eager_app.tasks["busprop_tests.fail"].apply(throw=True)
    finally:
        busprop.celery.uninstall()


def test_install_is_idempotent_and_uninstall_restores(traced: Any, eager_app: Celery) -> None:
    def ours(signal: Any) -> list[Any]:
        return [receiver for receiver in signal.receivers if "busprop" in str(receiver[0])]

    before = {name: len(getattr(signals, name).receivers) for name in ("before_task_publish", "task_prerun")}
    busprop.celery.install(eager_app)
    busprop.celery.install(eager_app)
    assert busprop.celery.is_leading()
    assert len(ours(signals.task_prerun)) == 1
    assert {name: len(getattr(signals, name).receivers) for name in before} == before
    busprop.celery.uninstall()
    assert not busprop.celery.is_leading()
    assert ours(signals.task_prerun) == [] and ours(signals.before_task_publish) == []
    with sentry_sdk.start_transaction(name="root", op="test"):
        eager_app.tasks["busprop_tests.add"].delay(1, 1).get()
    assert [event["transaction"] for event in traced.transactions()] == ["root"]


def test_failed_publish_leaves_no_span_open(traced: Any, eager_app: Celery) -> None:
    unreachable = Celery("down", broker="amqp://guest:guest@127.0.0.1:1//", set_as_current=False)
    unreachable.conf.update(broker_transport_options={"max_retries": 0, "interval_start": 0})
    busprop.celery.install(unreachable)
    with sentry_sdk.start_transaction(name="root", op="test") as root:
        with pytest.raises(Exception):  # noqa: B017 (kombu's OperationalError)
            unreachable.send_task("anything", retry=False)
        assert sentry_sdk.get_current_span() is root  # the failed publish's span is not current
        with sentry_sdk.start_span(op="after.failed.publish"):  # so what follows is not its child
            pass
        with pytest.raises(Exception):  # noqa: B017
            unreachable.send_task("anything", retry=False)
        assert sentry_sdk.get_current_span() is root
        eager_app.tasks["busprop_tests.add"].delay(1, 1)
        assert sentry_sdk.get_current_span() is root
    unreachable.close()
    spans = root_transaction(traced)["spans"]
    assert [span["status"] for span in spans if span["op"] == "queue.publish"] == ["internal_error"] * 2
    assert {span["parent_span_id"] for span in spans} == {root.span_id}


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_a_run_whose_postrun_never_comes_is_ended_by_the_next_task_on_its_thread(
    traced: Any, eager_app: Celery, pool: str
) -> None:
    """A worker thread that lost a task between ``task_prerun`` and ``task_postrun`` (busprop
    uninstalled mid-run, an error in its receiver) runs the next one clean: the lost run's
    transaction ends, and the next task starts from, and leaves, the scope the thread had before.

    ``solo``: one thread runs task after task in one context, as the solo pool and a prefork child
    do. ``threads``: each task is a work item of a ``ThreadPoolExecutor``, as in the threads pool,
    where sentry-sdk's threading integration gives each work item scopes of its own.
    """
    busprop.celery.install(eager_app)
    add = eager_app.tasks["busprop_tests.add"]

    def lose_a_run() -> None:
        signals.task_prerun.send(sender=add, task_id="lost", task=add, args=(1, 1), kwargs={})
        sentry_sdk.set_tag("lost_run", "yes")  # set inside the lost run: must not reach the next task

    def run_the_next_task(before: sentry_sdk.Scope | None = None) -> bool:
        before = before or sentry_sdk.get_isolation_scope()
        delivered = {"delivery_info": {"routing_key": "eager"}}  # as a worker runs a task it received
        assert trace_task(add, "next", (2, 2), {}, request=delivered, app=eager_app).retval == 4
        return sentry_sdk.get_isolation_scope() is before and sentry_sdk.get_current_span() is None

    def one_thread_runs_both() -> bool:
        before = sentry_sdk.get_isolation_scope()
        lose_a_run()
        return run_the_next_task(before)

    with ThreadPoolExecutor(max_workers=1) as executor:
        if pool == "solo":
            assert executor.submit(one_thread_runs_both).result()
        else:
            executor.submit(lose_a_run).result()
            assert executor.submit(run_the_next_task).result()
    by_id = {message_data(event)["messaging.message.id"]: event for event in traced.transactions()}
    lost, after = by_id["lost"], by_id["next"]
    assert trace_of(lost)["status"] == process_span(lost)["status"] == "unknown"
    assert lost["tags"]["lost_run"] == "yes"
    assert trace_of(after)["status"] == "ok"
    assert trace_of(after)["trace_id"] != trace_of(lost)["trace_id"]
    assert "lost_run" not in after.get("tags", {})
    assert lost["timestamp"] <= after["start_timestamp"]


@pytest.mark.parametrize("then", ["returns", "applies another"])
def test_a_run_ends_the_runs_inside_it_whose_postrun_never_came(
    traced: Any, eager_app: Celery, then: str
) -> None:
    """A task whose body lost a nested run (an ``apply()`` whose ``task_postrun`` never came) ends
    it, at the latest when it ends itself: a run entered after another cannot outlive it. The next
    nested run ends it when it starts, and leaves the enclosing run, still running, alone."""
    busprop.celery.install(eager_app)
    double = eager_app.tasks["busprop_tests.double"]

    @eager_app.task(name=f"busprop_tests.loses_a_nested_run.{uuid.uuid4().hex}")  # unique per test
    def outer() -> int:
        signals.task_prerun.send(sender=double, task_id="lost", task=double, args=(1,), kwargs={})
        return int(double.apply((2,)).get()) if then == "applies another" else 0

    outer.apply().get()
    by_id = {message_data(event)["messaging.message.id"]: event for event in traced.transactions()}
    lost = by_id.pop("lost")
    [enclosing] = [event for event in by_id.values() if event["transaction"] == outer.name]
    assert trace_of(lost)["status"] == "unknown"
    assert trace_of(enclosing)["status"] == "ok"
    assert lost["timestamp"] <= enclosing["timestamp"]
    if then == "applies another":
        [nested] = [event for event in by_id.values() if event["transaction"] == double.name]
        assert trace_of(nested)["status"] == "ok"
        assert trace_of(nested)["parent_span_id"] == process_span(enclosing)["span_id"]
        assert lost["timestamp"] <= nested["start_timestamp"]


def test_beat_mark_dies_with_its_thread(traced: Any) -> None:
    """Beat's thread publishes without trace headers; a later thread that reuses its id is not beat."""
    app = create_app("memory://", "cache+memory://", "beat-ident")
    busprop.celery.install(app)
    written: dict[str, dict[str, Any]] = {}

    def record(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        written[headers["task"]] = dict(headers)

    def beat() -> None:
        signals.beat_init.send(sender=None)
        app.send_task("busprop_tests.tick")

    signals.after_task_publish.connect(record, weak=False)
    try:
        beat_thread = threading.Thread(target=beat)
        beat_thread.start()
        beat_thread.join()
        beat_ident = beat_thread.ident
        for _ in range(100):  # a thread started after one ended usually gets its id (its stack is reused)
            thread = threading.Thread(
                target=lambda: threading.get_ident() == beat_ident and app.send_task("x")
            )
            thread.start()
            thread.join()
            if thread.ident == beat_ident:
                break
    finally:
        signals.after_task_publish.disconnect(record)
        app.close()
    assert thread.ident == beat_ident, "no thread reused beat's id: the test proves nothing here"
    assert "sentry-trace" not in written["busprop_tests.tick"]  # beat: each run starts its own trace
    assert written["x"]["sentry-trace"] is not None  # not beat: the thread's trace goes with the task


# ---------------------------------------------------------------- interoperability with sentry-sdk


def test_sentry_sdk_publisher_to_busprop_worker(redis_worker: Worker, redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "publisher.json"
    run_app("celery_sentry_publisher", redis_url, redis_url, redis_worker.queue, str(path))
    [root] = read_captured(path)["transactions"]
    submits = spans_of(root, "queue.submit.celery")  # apply_async's, and send_task's inside it
    [innermost] = [span for span in submits if span["parent_span_id"] in {s["span_id"] for s in submits}]
    [task] = redis_worker.transactions_of(root["contexts"]["trace"]["trace_id"])
    assert_continues(task, innermost)
    assert trace_of(task)["op"] == sdk.OP_TASK
    assert process_span(task)["status"] == "ok"
    assert message_data(task)["messaging.message.receive.latency"] >= 0


def test_busprop_publisher_to_sentry_sdk_worker(traced: Any, sentry_worker: Worker) -> None:
    busprop.celery.install(sentry_worker.app)
    with sentry_sdk.start_transaction(name="root", op="test"):
        assert sentry_worker.app.tasks["busprop_tests.add"].delay(5, 5).get(timeout=10) == 10
    [publish] = spans_of(root_transaction(traced), "queue.publish")
    [task] = sentry_worker.transactions_of(publish["trace_id"])
    assert_continues(task, publish)
    assert trace_of(task)["op"] == "queue.task.celery"
    [process] = spans_of(task, "queue.process")
    assert process["data"]["messaging.message.receive.latency"] >= 0  # it read our publish time


def test_sentry_sdk_integration_leads_when_both_are_enabled(redis_worker: Worker, tmp_path: Path) -> None:
    """A plain ``sentry_sdk.init()`` and busprop in one process (its own, so that sentry-sdk's
    integration is set up as in an application): sentry-sdk's integration leads, busprop writes nothing."""
    path = tmp_path / "both.json"
    run_app("celery_both", redis_worker.app.conf.broker_url, redis_worker.queue, str(path))
    captured = read_captured(path)
    assert captured["busprop_leading"] is False
    eager, root = captured["transactions"]
    assert trace_of(eager)["op"] == "queue.task.celery"  # one transaction for the eager task, sentry-sdk's
    assert [span["op"] for span in eager["spans"]] == ["queue.process"]
    origins = {span["origin"] for span in root["spans"] if span["op"].startswith("queue.")}
    assert origins == {"auto.queue.celery"}
    assert len(spans_of(root, "queue.publish")) == 1
    submits = spans_of(root, "queue.submit.celery")
    [innermost] = [span for span in submits if span["parent_span_id"] in {s["span_id"] for s in submits}]
    written = f"{innermost['trace_id']}-{innermost['span_id']}-1"
    assert captured["seen"]["top"]["sentry-trace"] == captured["seen"]["nested"]["sentry-trace"] == written
    [task] = redis_worker.transactions_of(innermost["trace_id"])
    assert_continues(task, innermost)


# ---------------------------------------------------------------- pools, concurrency and beat


def burst(worker: Worker, count: int = 200, pause: float = 0.005) -> None:
    """``count`` tasks, each from its own trace, in flight together; each sees only its own trace."""
    busprop.celery.install(worker.app)
    task = worker.app.tasks["busprop_tests.traceparent"]
    sent = []
    for _ in range(count):
        with sentry_sdk.start_transaction(name="burst", op="test") as root:
            sent.append((root.trace_id, task.delay(pause)))
    for trace_id, result in sent:
        seen = result.get(timeout=30)
        assert seen.split("-")[0] == trace_id
    trace_ids = {trace_id for trace_id, _ in sent}
    recorded = worker.wait_for(lambda event: trace_of(event)["trace_id"] in trace_ids, count, timeout=30)
    assert len({trace_of(event)["trace_id"] for event in recorded}) == count
    busprop.configure(propagation_targets=[])
    after = task.delay().get(timeout=10)
    assert after.split("-")[0] not in trace_ids  # nothing left behind for the next task


@pytest.mark.parametrize("pool", ["redis", "amqp", "solo"])
def test_two_hundred_concurrent_traces(traced: Any, pool: str, request: pytest.FixtureRequest) -> None:
    burst(request.getfixturevalue(f"{pool}_worker"), pause=0.0 if pool == "solo" else 0.005)


def test_beat_runs_each_start_their_own_trace(solo_worker: Worker) -> None:
    ticks = solo_worker.wait_for(lambda event: event["transaction"] == "busprop_tests.tick", 2, timeout=20)
    assert len({trace_of(event)["trace_id"] for event in ticks}) == len(ticks)
    assert all(trace_of(event).get("parent_span_id") is None for event in ticks)
    assert all(message_data(event)["messaging.message.receive.latency"] >= 0 for event in ticks)


# ---------------------------------------------------------------- the demo leg


def test_demo_leg_is_one_trace(traced: Any) -> None:
    from busprop.demo.legs import celery as leg

    with sentry_sdk.start_transaction(name="root", op="demo") as root:
        assert leg.run() is None
    tasks = [event for event in traced.transactions() if event["transaction"].startswith("demo.")]
    assert sorted(event["transaction"] for event in tasks) == sorted(f"demo.{f.__name__}" for f in leg.TASKS)
    assert {trace_of(event)["trace_id"] for event in tasks} == {root.trace_id}
    spans = {
        span["span_id"]: span
        for event in [*tasks, root_transaction(traced)]
        for span in spans_of(event, "queue.publish")
    }
    for event in tasks:
        assert spans[trace_of(event)["parent_span_id"]]["description"] == event["transaction"]


# ---------------------------------------------------------------- examples/celery_tasks


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_example_order_pipeline(
    broker: str, redis_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp(f"example-{broker}")
    capture_dir = directory / "captured"
    capture_dir.mkdir()
    queue = f"busprop-example-{uuid.uuid4().hex[:8]}"
    broker_url = redis_url if broker == "redis" else amqp_url
    env = {"ORDERS_BROKER_URL": broker_url, "ORDERS_RESULT_BACKEND": redis_url, "ORDERS_QUEUE": queue}
    log_path = directory / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(APPS / "celery_example_worker.py"), "prefork"],
            env={**os.environ, "PYTHONPATH": str(ROOT), "BUSPROP_CAPTURE_DIR": str(capture_dir), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    worker = Worker(
        "example", broker, queue, create_app(broker_url, redis_url, queue), capture_dir, log_path, process
    )
    try:
        run_app("celery_example_producer", str(directory / "producer.json"), env=env, timeout=60)
        produced = read_captured(directory / "producer.json")
        trace_id = produced["trace_id"]
        tasks = {event["transaction"]: event for event in worker.transactions_of(trace_id, 6)}
    finally:
        stop_worker(worker)
    assert sorted(tasks) == [
        "orders.charge_payment",
        "orders.issue_invoice",
        "orders.notify_warehouse",
        "orders.reserve_stock",
        "orders.send_confirmation",
        "orders.validate_order",
    ]
    [checkout] = produced["transactions"]
    assert checkout["transaction"] == "POST /checkout"
    published_by = {
        span["span_id"]: event["transaction"]
        for event in [checkout, *tasks.values()]
        for span in spans_of(event, "queue.publish")
    }
    assert {name: published_by[trace_of(event)["parent_span_id"]] for name, event in tasks.items()} == {
        "orders.validate_order": "POST /checkout",
        "orders.reserve_stock": "orders.validate_order",
        "orders.charge_payment": "orders.reserve_stock",
        "orders.issue_invoice": "orders.charge_payment",
        "orders.send_confirmation": "POST /checkout",
        "orders.notify_warehouse": "POST /checkout",
    }
    assert {trace_of(event)["status"] for event in tasks.values()} == {"ok"}
    assert {process_span(event)["status"] for event in tasks.values()} == {"ok"}
