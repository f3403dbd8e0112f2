"""A sentry-sdk outside the range busprop is tested with fails loudly, never silently.

An older SDK is simulated by setting ``sentry_sdk.VERSION``, the version the check reads; the
matrix (``nox -s matrix``) runs the real floor.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sentry_sdk

import busprop
from busprop import sdk
from busprop.amqp import AioPikaIntegration
from busprop.kafka import KafkaIntegration
from busprop.testing import LOCAL_DSN, CapturingTransport
from tests.conftest import Captured

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``installed("2.73.0")``: the check sees that version; the warning is due again."""
    monkeypatch.setattr(sdk, "sdk_check_pending", True)

    def pretend(version: str) -> None:
        monkeypatch.setattr(sentry_sdk, "VERSION", version)

    return pretend


def test_the_floor_is_the_one_pyproject_declares() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    ((floor, ceiling),) = re.findall(r'"sentry-sdk>=([0-9.]+),<([0-9]+)"', text)
    assert sdk._version_tuple(floor) == sdk.MIN_SDK_VERSION
    assert int(ceiling) == sdk.UNSUPPORTED_SDK_MAJOR


def test_the_installed_sdk_is_supported() -> None:
    assert sdk.unsupported_sdk() is None


@pytest.mark.parametrize("version", ["2.74.0", "2.74", "2.76.0", "2.99.1", "2.80.0rc1"])
def test_versions_in_the_range_pass(installed: Callable[[str], None], version: str) -> None:
    installed(version)
    assert sdk.unsupported_sdk() is None


@pytest.mark.parametrize("version", ["2.73.0", "2.46.0", "2.20.0", "1.45.1", "3.0.0", "3.0.0a1", "dev"])
def test_versions_outside_the_range_name_both(installed: Callable[[str], None], version: str) -> None:
    installed(version)
    problem = sdk.unsupported_sdk()
    assert problem is not None
    assert f"sentry-sdk {version} is installed" in problem
    assert "sentry-sdk>=2.74.0,<3" in problem


@pytest.mark.parametrize("integration", [KafkaIntegration, AioPikaIntegration])
def test_init_with_an_integration_on_an_old_sdk_raises(
    installed: Callable[[str], None],
    sentry_init: Callable[..., Captured],
    integration: type[sdk.Integration],
) -> None:
    sentry_init()  # the fixture's teardown closes whatever client is left
    sdk.forget_integration(integration.identifier)  # so that init sets it up again
    installed("2.73.0")
    with pytest.raises(sdk.DidNotEnable, match=r"sentry-sdk>=2\.74\.0,<3 and sentry-sdk 2\.73\.0 is"):
        sentry_sdk.init(dsn=LOCAL_DSN, transport=CapturingTransport, integrations=[integration()])


@pytest.mark.parametrize("integration", [KafkaIntegration, AioPikaIntegration])
def test_a_refused_integration_is_set_up_by_the_next_init(
    installed: Callable[[str], None],
    sentry_init: Callable[..., Captured],
    integration: type[sdk.Integration],
) -> None:
    sentry_init()
    sdk.forget_integration(integration.identifier)
    installed("2.73.0")
    with pytest.raises(sdk.DidNotEnable):
        sentry_sdk.init(dsn=LOCAL_DSN, transport=CapturingTransport, integrations=[integration()])
    installed("2.76.0")
    sentry_init(integrations=[integration()])
    assert sdk.integration_enabled(integration)


def test_an_old_sdk_is_one_warning_naming_both_versions(
    installed: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    installed("2.50.0")
    with caplog.at_level(logging.DEBUG, logger="busprop"):
        for _ in range(3):
            sdk.warn_if_unsupported_sdk()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "sentry-sdk 2.50.0 is installed" in record.getMessage()
    assert "sentry-sdk>=2.74.0,<3" in record.getMessage()
    assert record.getMessage() == sdk.unsupported_sdk()  # the problem, word for word


def test_a_supported_sdk_is_no_warning(
    installed: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    installed("2.76.0")
    with caplog.at_level(logging.DEBUG, logger="busprop"):
        sdk.warn_if_unsupported_sdk()
    assert caplog.records == []


def test_importing_busprop_never_checks_the_version() -> None:
    """The check runs at ``init`` and on first use, so an old SDK still imports (and says why)."""
    code = (
        "import sentry_sdk; sentry_sdk.VERSION = '2.30.0'\n"
        "import busprop, busprop.kafka, busprop.amqp, busprop.celery, busprop.websockets\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_continue_trace_and_inject_warn_once_on_an_sdk_below_the_floor(
    installed: Callable[[str], None], sentry_init: Callable[..., Captured], caplog: pytest.LogCaptureFixture
) -> None:
    sentry_init(traces_sample_rate=1.0)
    installed("2.50.0")
    with caplog.at_level(logging.DEBUG, logger="busprop"):
        with busprop.continue_trace({}, system="custom", destination="orders"):
            busprop.inject({}, destination="orders")
        busprop.inject({}, destination="orders")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2.50.0" in warnings[0].getMessage() and "2.74" in warnings[0].getMessage()
