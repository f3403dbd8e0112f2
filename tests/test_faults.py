"""Faults: busprop must never cost a message, whatever state Sentry or the broker is in.

Part 1 runs every adapter end to end in a process where sentry-sdk was never initialised, one where
it was initialised without a DSN, and one whose transport raises on every send: every message is
delivered and processed with its payload unchanged, and no exception reaches the user's code.
Part 2 restarts a private broker in the middle of a stream, once with the bare client and once with
busprop, and compares how many messages were processed, and processed twice; after the reconnect,
each message busprop processed is in its own producer's trace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.processes import APPS, ROOT, read_captured, run_app

pytestmark = pytest.mark.broker


# --- part 1: the SDK is off, disabled, or failing -------------------------------------------------


def start_celery_worker(
    mode: str, broker: str, backend: str, queue: str, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as output:
        return subprocess.Popen(
            [sys.executable, str(APPS / "faults_celery_worker.py"), mode, broker, backend, queue],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("mode", ["none", "disabled", "raising"])
def test_every_adapter_delivers_every_message_whatever_the_sdks_state(
    mode: str, kafka_bootstrap: str, amqp_url: str, redis_url: str, tmp_path: Path
) -> None:
    queue = f"busprop-faults-{uuid.uuid4().hex[:8]}"
    calls = tmp_path / "worker-transport-calls"
    worker = start_celery_worker(
        mode, redis_url, redis_url, queue, tmp_path / "worker.log", FAULTS_TRANSPORT_CALLS=str(calls)
    )
    try:
        out = tmp_path / "summary.json"
        run_app("faults_sdk", mode, kafka_bootstrap, amqp_url, redis_url, queue, str(out), timeout=120)
    finally:
        stop_process_group(worker)
    summary: dict[str, Any] = read_captured(out)
    sent = summary["sent"]
    expected = {
        "kafka": [[payload, "k", "acme"] for payload in sent],
        "amqp_consumer": [[payload, "acme"] for payload in sent],
        "amqp_iterator": [[payload, "acme"] for payload in sent],
        "celery_eager": sent,
        "celery_worker": sent,
        "websockets": [[payload, {"echo": payload}] for payload in sent],
    }
    for scenario, outcome in summary["results"].items():
        assert outcome["error"] is None, (scenario, outcome["error"], (tmp_path / "worker.log").read_text())
        assert sorted(map(str, outcome["received"])) == sorted(map(str, expected[scenario])), scenario
    assert summary["client"] == ("NonRecordingClient" if mode == "none" else "_Client")
    if mode == "raising":  # the faulty transport was really called, in both processes
        assert summary["transport_calls"] >= 6 * len(sent)
        assert len(calls.read_text().splitlines()) >= len(sent)
    else:
        assert summary["dsn"] is None and summary["transport_calls"] == 0
