"""Integrations the sentry-sdk way: busprop.celery.CeleryIntegration and every Integration's options.

Celery against real brokers: the test process publishes to Redis, a worker process (a default
``sentry_sdk.init`` with busprop's Integration listed) runs the tasks. Options are asserted on what
a message carries (Celery's headers as sent, an AMQP message read back from RabbitMQ) and on what
Sentry would receive.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
import sentry_sdk
from celery import Celery, signals
from sentry_sdk.integrations.celery import CeleryIntegration as SentryCeleryIntegration

import busprop
import busprop.amqp
import busprop.carrier
import busprop.celery
import busprop.config
from busprop.celery import CeleryIntegration
from busprop.kafka import KafkaIntegration
from tests.apps.celery_app import create_app
from tests.processes import ROOT
from tests.test_celery import (
    Worker,
    process_span,
    root_transaction,
    spans_of,
    start_worker,
    stop_worker,
    trace_of,
)

pytestmark = pytest.mark.broker

Headers = dict[str, Any]


@pytest.fixture(autouse=True)
def _uninstall_integrations() -> Iterator[None]:
    """Each test sets its Integrations up afresh (``sentry_sdk.init`` sets one up once per process)."""
    yield
    CeleryIntegration.uninstall()
    busprop.amqp.AMQPIntegration.uninstall()
    KafkaIntegration.uninstall()


@pytest.fixture(scope="module")
def integration_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker whose process ran a default ``sentry_sdk.init`` listing busprop's CeleryIntegration."""
    worker = start_worker(
        tmp_path_factory,
        name="redis-integration",
        broker=redis_url,
        backend=redis_url,
        pool="threads",
        concurrency=4,
        mode="integration",
    )
    yield worker
    stop_worker(worker)


@pytest.fixture
def redis_app(redis_url: str) -> Iterator[Celery]:
    """An app publishing to a queue no worker reads (deleted afterwards): for what a publish writes."""
    queue = f"busprop-options-{uuid.uuid4().hex[:8]}"
    app = create_app(redis_url, redis_url, queue)
    yield app
    with app.connection_for_write() as connection:
        connection.default_channel.queue_delete(queue)
    app.close()


@pytest.fixture
def sent_headers() -> Iterator[list[Headers]]:
    """The headers of every task message as Celery sent it (after every ``before_task_publish``)."""
    sent: list[Headers] = []

    def record(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        sent.append(dict(headers or {}))

    signals.after_task_publish.connect(record, weak=False, dispatch_uid="test_integration_options")
    yield sent
    signals.after_task_publish.disconnect(record, dispatch_uid="test_integration_options")


@pytest.fixture
def amqp_queue(amqp_url: str) -> Iterator[tuple[pika.BlockingConnection, str]]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    queue = f"busprop-options-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, auto_delete=True)
    yield connection, queue
    channel.queue_delete(queue)
    connection.close()


def amqp_headers(connection: pika.BlockingConnection, queue: str) -> Headers:
    """Publish one message to ``queue`` with pika (traced by busprop) and read back its headers."""
    channel = connection.channel()
    busprop.amqp.basic_publish(channel, "", queue, b"x", pika.BasicProperties(headers={}))
    for _ in range(100):
        method, properties, _body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return dict(properties.headers or {})
        connection.sleep(0.05)
    raise AssertionError("the AMQP message did not arrive")


# ---------------------------------------------------------------- Celery as an Integration


def test_celery_integration_traces_publish_and_task_in_one_trace(
    sentry_init: Callable[..., Any], integration_worker: Worker
) -> None:
    """A default init on both sides, busprop's Integration listed: one publish span, one task
    transaction (busprop's), headers written once; sentry-sdk's CeleryIntegration writes nothing."""
    captured = sentry_init(traces_sample_rate=1.0, integrations=[CeleryIntegration()])
    assert sentry_sdk.get_client().get_integration(SentryCeleryIntegration) is None
    assert busprop.celery.is_leading()
    echo = integration_worker.app.tasks["busprop_tests.echo"]
    with sentry_sdk.start_transaction(name="root", op="test"):
        seen = echo.delay().get(timeout=20)
    root = root_transaction(captured)
    queue_spans = [span for span in root["spans"] if span["op"].startswith("queue.")]
    assert [span["op"] for span in queue_spans] == ["queue.publish"]  # no queue.submit.celery
    [publish] = queue_spans
    assert publish["origin"] == busprop.celery.ORIGIN
    written = f"{publish['trace_id']}-{publish['span_id']}-1"
    assert seen["top"]["sentry-trace"] == seen["nested"]["sentry-trace"] == written
    [task] = integration_worker.transactions_of(publish["trace_id"])  # one: no sentry-sdk transaction
    assert trace_of(task)["parent_span_id"] == publish["span_id"]
    assert trace_of(task)["origin"] == busprop.celery.ORIGIN
    assert process_span(task)["status"] == "ok"
    assert [span["op"] for span in task.get("spans", []) if span["op"].startswith("queue.")] == [
        "queue.process"
    ]


def test_listing_both_celery_integrations_lets_sentry_sdk_lead_and_says_so(
    sentry_init: Callable[..., Any], redis_app: Celery, sent_headers: list[Headers], caplog: Any
) -> None:
    """sentry-sdk's rule for its own integrations: one the user lists by name is not left out."""
    captured = sentry_init(
        traces_sample_rate=1.0, integrations=[SentryCeleryIntegration(), CeleryIntegration()]
    )
    with (
        caplog.at_level(logging.WARNING, logger="busprop"),
        sentry_sdk.start_transaction(name="root", op="test"),
    ):
        redis_app.send_task("busprop_tests.add", (1, 2))
    assert not busprop.celery.is_leading()
    origins = {
        span["origin"] for span in root_transaction(captured)["spans"] if span["op"].startswith("queue.")
    }
    assert origins == {"auto.queue.celery"}
    [headers] = sent_headers
    assert headers["sentry-trace"] == headers["headers"]["sentry-trace"]  # sentry-sdk's, written once
    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert "remove it" in warning.getMessage()


def test_install_under_a_default_init_steps_aside_with_a_warning(
    sentry_init: Callable[..., Any], redis_app: Celery, caplog: Any
) -> None:
    sentry_init(traces_sample_rate=1.0)  # sentry-sdk's CeleryIntegration auto-enabled
    assert sentry_sdk.get_client().get_integration(SentryCeleryIntegration) is not None
    with caplog.at_level(logging.WARNING, logger="busprop"):
        busprop.celery.install(redis_app)
        redis_app.send_task("busprop_tests.add", (1, 2))
        redis_app.send_task("busprop_tests.add", (1, 2))
    busprop.celery.uninstall()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per client, not per message
    assert "integrations=[busprop.celery.CeleryIntegration()]" in warnings[0]


def test_integration_is_inert_for_a_client_initialised_without_it(
    sentry_init: Callable[..., Any], redis_app: Celery, sent_headers: list[Headers]
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[CeleryIntegration()])
    sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)
    redis_app.send_task("busprop_tests.add", (1, 2))
    [headers] = sent_headers
    assert "sentry-trace" not in headers


def test_uninstall_leaves_sentry_sdk_as_it_was(sentry_init: Callable[..., Any]) -> None:
    """The one patch on sentry-sdk itself (leaving its CeleryIntegration out) goes with busprop's."""
    import sentry_sdk.client

    sentry_init(traces_sample_rate=1.0, integrations=[CeleryIntegration()])
    assert hasattr(sentry_sdk.client.setup_integrations, "__wrapped__")
    CeleryIntegration.uninstall()
    assert not hasattr(sentry_sdk.client.setup_integrations, "__wrapped__")
    sentry_init(traces_sample_rate=1.0)  # sentry-sdk's own leads again, nothing left out
    assert sentry_sdk.get_client().get_integration(SentryCeleryIntegration) is not None


def test_celery_integration_without_celery_does_not_enable() -> None:
    code = (
        "import sys; sys.modules['celery'] = None\n"
        "from sentry_sdk.integrations import DidNotEnable\n"
        "try:\n    import busprop.celery\nexcept DidNotEnable as error:\n    print('DidNotEnable', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("DidNotEnable busprop.celery needs Celery")


# ---------------------------------------------------------------- options on the constructors


@pytest.mark.parametrize("integration", [CeleryIntegration, KafkaIntegration, busprop.amqp.AMQPIntegration])
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"propagation_targets": ["("]}, "propagation_targets"),
        ({"propagation_targets": "orders"}, "propagation_targets"),
        ({"write_traceparent": "yes"}, "write_traceparent"),
        ({"capture_exceptions": 1}, "capture_exceptions"),
    ],
)
def test_bad_option_values_raise_naming_the_option(
    integration: type[Any], options: dict[str, Any], named: str
) -> None:
    with pytest.raises(busprop.ConfigurationError, match=f"{integration.__name__}: option '{named}'"):
        integration(**options)


def test_an_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        CeleryIntegration(propagation_target=[".*"])  # type: ignore[call-arg]


def test_propagation_targets_of_one_bus_leave_another_alone(
    sentry_init: Callable[..., Any],
    redis_app: Celery,
    sent_headers: list[Headers],
    amqp_queue: tuple[pika.BlockingConnection, str],
) -> None:
    connection, queue = amqp_queue
    sentry_init(
        traces_sample_rate=1.0,
        integrations=[CeleryIntegration(propagation_targets=[]), busprop.amqp.AMQPIntegration()],
    )
    with sentry_sdk.start_transaction(name="root", op="test"):
        redis_app.send_task("busprop_tests.add", (1, 2))
        amqp = amqp_headers(connection, queue)
    assert "sentry-trace" not in sent_headers[0]
    assert "sentry-trace" in amqp
    CeleryIntegration.uninstall()
    busprop.amqp.AMQPIntegration.uninstall()

    sentry_init(
        traces_sample_rate=1.0,
        integrations=[CeleryIntegration(), busprop.amqp.AMQPIntegration(propagation_targets=["^other/"])],
    )
    with sentry_sdk.start_transaction(name="root", op="test"):
        redis_app.send_task("busprop_tests.add", (1, 2))
        amqp = amqp_headers(connection, queue)
    assert "sentry-trace" in sent_headers[1]
    assert "sentry-trace" not in amqp


def test_an_integration_option_wins_and_the_rest_falls_back_to_configure(
    sentry_init: Callable[..., Any],
    redis_app: Celery,
    sent_headers: list[Headers],
    amqp_queue: tuple[pika.BlockingConnection, str],
) -> None:
    connection, queue = amqp_queue
    busprop.configure(propagation_targets=["^nothing$"], write_traceparent=True)
    sentry_init(traces_sample_rate=1.0, integrations=[CeleryIntegration(propagation_targets=[".*"])])
    with sentry_sdk.start_transaction(name="root", op="test"):
        redis_app.send_task("busprop_tests.add", (1, 2))
        amqp = amqp_headers(connection, queue)  # no AMQPIntegration: configure()'s targets
        busprop.configure(write_traceparent=False)  # read again after a later configure()
        redis_app.send_task("busprop_tests.add", (1, 2))
    first, second = sent_headers
    assert "sentry-trace" in first  # the Integration's targets win for Celery
    assert first["traceparent"].startswith("00-")  # not given to it: configure()'s value
    assert "sentry-trace" in second
    assert "traceparent" not in second
    assert "sentry-trace" not in amqp


def test_capture_exceptions_per_bus(sentry_init: Callable[..., Any]) -> None:
    app = create_app("memory://", "cache+memory://", "eager")
    app.conf.task_always_eager = True
    captured = sentry_init(traces_sample_rate=1.0, integrations=[CeleryIntegration(capture_exceptions=False)])
    with pytest.raises(ValueError):
        app.tasks["busprop_tests.fail"].delay().get()
    [task] = [event for event in captured.transactions() if event["transaction"] == "busprop_tests.fail"]
    assert trace_of(task)["status"] == "internal_error"
    assert captured.errors() == []  # busprop reported nothing, and neither did sentry-sdk's integration
    app.close()


def test_options_of_an_uninstalled_integration_are_gone(
    sentry_init: Callable[..., Any], redis_app: Celery, sent_headers: list[Headers]
) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[CeleryIntegration(propagation_targets=[])])
    assert busprop.config.get_config(busprop.celery.IDENTIFIER).propagation_targets == []
    CeleryIntegration.uninstall()
    sentry_init(traces_sample_rate=1.0, auto_enabling_integrations=False)
    busprop.celery.install(redis_app)
    with sentry_sdk.start_transaction(name="root", op="test"):
        redis_app.send_task("busprop_tests.add", (1, 2))
    busprop.celery.uninstall()
    assert busprop.config.get_config(busprop.celery.IDENTIFIER).propagation_targets == [".*"]
    assert "sentry-trace" in sent_headers[0]


def test_kafka_integration_targets_apply_to_kafka_destinations_only(sentry_init: Callable[..., Any]) -> None:
    sentry_init(traces_sample_rate=1.0, integrations=[KafkaIntegration(propagation_targets=["^orders$"])])
    assert busprop.config.should_propagate("orders", KafkaIntegration.identifier)
    assert not busprop.config.should_propagate("payments", KafkaIntegration.identifier)
    assert busprop.config.should_propagate("payments", busprop.celery.IDENTIFIER)
    assert busprop.config.should_propagate("payments")


def test_spans_of_a_default_init_with_the_integration(sentry_init: Callable[..., Any]) -> None:
    """Eager: sentry-sdk's auto-enabled integration, left out, adds no transaction of its own."""
    app = create_app("memory://", "cache+memory://", "eager")
    app.conf.task_always_eager = True
    captured = sentry_init(traces_sample_rate=1.0, integrations=[CeleryIntegration()])
    with sentry_sdk.start_transaction(name="root", op="test"):
        assert app.tasks["busprop_tests.add"].delay(1, 2).get() == 3
    [task] = [event for event in captured.transactions() if event["transaction"] == "busprop_tests.add"]
    assert trace_of(task)["origin"] == busprop.celery.ORIGIN
    assert spans_of(task, "queue.process")[0]["origin"] == busprop.celery.ORIGIN
    app.close()


def test_kafka_integration_options_reach_the_records(
    sentry_init: Callable[..., Any], kafka_bootstrap: str, redis_app: Celery, sent_headers: list[Headers]
) -> None:
    """A record produced by unchanged kafka-python code carries what KafkaIntegration's options say;
    a Celery task published next to it carries what configure() says."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    topic, untraced_topic = (f"busprop-options-{uuid.uuid4().hex[:8]}" for _ in range(2))
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1), NewTopic(untraced_topic, 1, 1)])
    sentry_init(
        traces_sample_rate=1.0,
        integrations=[
            KafkaIntegration(propagation_targets=[f"^{topic}$"], write_traceparent=True),
            CeleryIntegration(),
        ],
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    with sentry_sdk.start_transaction(name="root", op="test"):
        producer.send(topic, b"traced")
        producer.send(untraced_topic, b"untraced")
        redis_app.send_task("busprop_tests.add", (1, 2))
    producer.flush()
    producer.close()
    headers = {}
    for name in (topic, untraced_topic):
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=10_000)
        consumer.assign([TopicPartition(name, 0)])
        consumer.seek_to_beginning()
        record = next(iter(consumer))
        headers[name] = dict(record.headers or [])
        consumer.close()
    with contextlib.suppress(Exception):  # a broker without deletion keeps them; names are unique
        admin.delete_topics([topic, untraced_topic])
    admin.close()
    assert headers[topic][busprop.carrier.TRACEPARENT].startswith(b"00-")
    assert busprop.carrier.SENTRY_TRACE not in headers[untraced_topic]
    [celery] = sent_headers
    assert "sentry-trace" in celery
    assert "traceparent" not in celery  # KafkaIntegration's write_traceparent is Kafka's only


@pytest.mark.parametrize("capture", [True, False])
def test_amqp_integration_capture_exceptions_reaches_the_explicit_consumer(
    sentry_init: Callable[..., Any], amqp_queue: tuple[pika.BlockingConnection, str], capture: bool
) -> None:
    connection, queue = amqp_queue
    captured = sentry_init(
        traces_sample_rate=1.0,
        integrations=[busprop.amqp.AMQPIntegration(capture_exceptions=None if capture else False)],
    )
    amqp_headers(connection, queue)  # a message was published and read back: publish another one
    channel = connection.channel()
    busprop.amqp.basic_publish(channel, "", queue, b"x", pika.BasicProperties(headers={}))

    @busprop.amqp.consumer
    def handle(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        raise ValueError("boom")

    for _ in range(100):
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            break
        connection.sleep(0.05)
    with pytest.raises(ValueError, match="boom"):
        handle(channel, method, properties, body)
    [processed] = [
        event for event in captured.transactions() if trace_of(event)["op"] == "queue.task.busprop"
    ]
    assert trace_of(processed)["status"] == "internal_error"
    assert len(captured.errors()) == (1 if capture else 0)
