"""The versions pyproject.toml declares, tested: ``nox`` (or ``./dev.sh matrix``).

The dev venv has the latest of everything, so it proves nothing about a declared minimum. Each
session here builds its own venv with the pins it names and runs the core tests (no broker) and one
real-broker flow per bus:

* ``matrix(sentry_sdk='floor')`` and ``matrix(sentry_sdk='latest')``: sentry-sdk at the floor
  pyproject.toml declares and at the newest release below the ceiling;
* ``clients(versions='minimum')`` and ``clients(versions='latest')``: kafka-python, crc32c,
  confluent-kafka, aiokafka, aio-pika, pika, celery and websockets at their declared minimums and at
  their newest releases, with a flow for each client (confluent-kafka and aiokafka as well).

The pins are read from pyproject.toml, so raising a floor there is what the matrix then tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import nox

nox.options.sessions = ["matrix", "clients"]
nox.options.error_on_missing_interpreters = True

PYPROJECT = (Path(__file__).parent / "pyproject.toml").read_text()
#: The client libraries of the bus extras (and the Kafka extra's codec), each with a declared minimum.
CLIENTS = (
    "kafka-python",
    "crc32c",
    "confluent-kafka",
    "aiokafka",
    "aio-pika",
    "pika",
    "celery",
    "websockets",
)

#: The core: what every bus relies on, with no broker.
CORE_TESTS = [
    "tests/test_processing.py",
    "tests/test_publishing.py",
    "tests/test_carrier.py",
    "tests/test_baggage.py",
    "tests/test_decorators.py",
    "tests/test_seam.py",
    "tests/test_versions.py",
    "tests/test_http_hops.py",
    "tests/test_streaming.py",
]
#: test_http_hops.py has the SDK's own HTTP hops; only those through the core run here.
#: test_streaming.py's bus flows run with the other flows.
CORE_SELECTION = (
    "(not test_http_hops or core or continue_trace) and not celery_task_continues and not websocket_message"
)
#: One real-broker flow per bus: a message published and consumed in its trace.
BUS_FLOWS = [
    "tests/test_kafka.py::test_loop_body_runs_inside_the_records_trace",
    "tests/test_kafka.py::test_integration_traces_unchanged_kafka_python_code",
    "tests/test_amqp.py::test_integration_traces_plain_aio_pika_code",
    "tests/test_amqp_pika.py::test_callback_consumer_continues_each_messages_trace",
    "tests/test_amqp_pika.py::test_integration_one_publish_span_per_blocking_publish_covering_the_confirm",
    "tests/test_celery.py::test_single_task",
    "tests/test_websockets.py::test_client_to_server_message_continues_the_senders_trace",
    # The same for Celery and WebSockets in both of sentry-sdk's modes (classic and span streaming).
    "tests/test_streaming.py::test_celery_task_continues_the_publish_span",
    "tests/test_streaming.py::test_websocket_message_continues_the_senders_publish_span",
]
#: The clients sessions add a flow for each bus's other clients (their versions are what vary there).
CLIENT_FLOWS = [
    "tests/test_kafka_confluent.py::test_every_produce_form_writes_the_trace_once_and_keeps_the_users_headers",
    "tests/test_kafka_confluent.py::test_poll_continues_each_records_trace_until_the_next_poll",
    "tests/test_kafka_aiokafka.py::test_send_and_send_and_wait_write_the_trace_once_and_keep_the_users_headers",
    "tests/test_kafka_aiokafka.py::test_integration_getone_and_async_for_bodies_run_in_each_records_trace",
]


def declared(package: str) -> tuple[str, str]:
    """``(minimum, ceiling)`` of ``package`` in pyproject.toml (the ceiling is ``""`` if none)."""
    # An extra of the package may stand before its version: "celery[redis]>=5.3".
    found = re.search(rf'"{re.escape(package)}(?:\[[^\]]*\])?>=([^,"]+)(?:,<([^"]+))?"', PYPROJECT)
    if found is None:
        raise ValueError(f"pyproject.toml declares no minimum for {package}")
    return found.group(1), found.group(2) or ""


def install(session: nox.Session, *pins: str) -> None:
    """busprop with its dev extras and ``pins``, resolved together: a conflict fails the session."""
    session.install("-e", ".[dev]", *pins)
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)


def run_tests(session: nox.Session, *flows: str) -> None:
    common = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs]
    session.run(*common, "-k", CORE_SELECTION, *CORE_TESTS)
    session.run(*common, *BUS_FLOWS, *flows)


@nox.session
@nox.parametrize("sentry_sdk", ["floor", "latest"])
def matrix(session: nox.Session, sentry_sdk: str) -> None:
    """The core and a flow per bus at sentry-sdk's declared floor, and at its latest 2.x."""
    floor, ceiling = declared("sentry-sdk")
    install(session, f"sentry-sdk=={floor}" if sentry_sdk == "floor" else f"sentry-sdk>={floor},<{ceiling}")
    run_tests(session)


@nox.session
@nox.parametrize("versions", ["minimum", "latest"])
def clients(session: nox.Session, versions: str) -> None:
    """The core and a flow per client with every client library at its declared minimum, or latest."""
    if versions == "minimum":
        install(session, *(f"{client}=={declared(client)[0]}" for client in CLIENTS))
    else:
        install(session, "--upgrade", *CLIENTS)
    run_tests(session, *CLIENT_FLOWS)
