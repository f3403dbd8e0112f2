"""`busprop inspect` says what this process would do with a message's trace headers, and why.

Each test runs the real command in a fresh process (as a user does: its own ``sentry_sdk.init``,
environment and ``--config`` module) and asserts the ids, decisions, reason, forwarded headers and
exit status. A ``--config`` that initialises the SDK with a DSN points it at a local HTTP server,
which must receive nothing: inspect never sends to Sentry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.processes import ROOT

TRACE_ID = "771a43a4192642f0b136d5159a501700"
SPAN_ID = "3c4ac7fa6a2b4c5b"
#: The DSN inspect's own init reads from SENTRY_DSN: org 1 (``o1`` in the host), nothing listens.
DSN_ORG_1 = "http://public@o1.ingest.127.0.0.1.nip.invalid/1"
#: What sentry-python writes for a sampled trace with ``traces_sample_rate=0.25``.
PYTHON_BAGGAGE = (
    f"sentry-trace_id={TRACE_ID},sentry-environment=production,sentry-public_key=public,"
    "sentry-sample_rate=0.25,sentry-sampled=true,sentry-sample_rand=0.123456,sentry-org_id=1"
)
#: What Sentry's JavaScript SDK writes (percent-encoded values), behind another vendor's members.
JS_TRACE_ID = "12345678901234567890123456789012"
JS_BAGGAGE = (
    "vendor-a=1;prop=x,other=two,"
    f"sentry-environment=production,sentry-release=frontend%401.2.3,sentry-public_key=public,"
    f"sentry-trace_id={JS_TRACE_ID},sentry-sample_rate=0.5,sentry-transaction=GET%20%2Forders,"
    "sentry-sampled=true,sentry-sample_rand=0.3141,sentry-org_id=1"
)


def run(
    *arguments: str,
    cwd: Path,
    environment: dict[str, str] | None = None,
    script: bool = False,
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SENTRY_")}
    env.update(environment or {})
    command = (
        [str(Path(sys.executable).with_name("busprop"))] if script else [sys.executable, "-m", "busprop.cli"]
    )
    if not script:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [*command, "inspect", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def inspect(*arguments: str, cwd: Path, expect: int, **kwargs: Any) -> dict[str, Any]:
    done = run(*arguments, "--json", cwd=cwd, **kwargs)
    assert done.returncode == expect, (done.stdout, done.stderr)
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["exit_status"] == expect
    return report


def traced(rate: str = "1.0") -> dict[str, str]:
    return {"SENTRY_DSN": DSN_ORG_1, "SENTRY_TRACES_SAMPLE_RATE": rate}


def parts(sentry_trace: str) -> list[str]:
    return sentry_trace.split("-")


def test_a_sampled_trace_from_sentry_python_is_continued_and_forwarded(tmp_path: Path) -> None:
    report = inspect(
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1",
        f"--baggage={PYTHON_BAGGAGE}",
        "--destination=orders",
        cwd=tmp_path,
        expect=0,
        environment=traced(),
    )
    incoming = report["incoming"]
    assert (incoming["trace_id"], incoming["parent_span_id"], incoming["sampled"]) == (
        TRACE_ID,
        SPAN_ID,
        True,
    )
    assert (incoming["sample_rate"], incoming["sample_rand"], incoming["org_id"]) == ("0.25", "0.123456", "1")
    assert (report["verdict"], report["reason"]) == ("continued", "continued")
    assert report["trace"]["trace_id"] == TRACE_ID
    assert report["trace"]["parent_span_id"] == SPAN_ID
    assert report["recorded"] is True
    assert report["recording"] == "the head sampled this trace"
    assert report["transactions_would_send"] == 1
    trace_id, span_id, flag = parts(report["forwarded"]["sentry-trace"])
    assert (trace_id, flag) == (TRACE_ID, "1")
    assert span_id != SPAN_ID  # the processing's own span is the next hop's parent
    baggage = report["forwarded"]["baggage"].split(",")
    assert "sentry-sample_rand=0.123456" in baggage
    assert "sentry-sample_rate=0.25" in baggage  # the head's rate, not this process's 1.0
    assert "sentry-org_id=1" in baggage
    assert "traceparent" not in report["forwarded"]
    assert report["process"]["org_id"] == "1"
    assert report["notes"] == []


def test_an_unsampled_head_is_continued_and_stays_unsampled(tmp_path: Path) -> None:
    report = inspect(
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-0",
        f"--baggage={PYTHON_BAGGAGE.replace('sampled=true', 'sampled=false').replace('0.123456', '0.9')}",
        "--destination=orders",
        cwd=tmp_path,
        expect=0,
        environment=traced(),
    )
    assert report["incoming"]["sampled"] is False
    assert report["verdict"] == "continued"
    assert report["trace"]["trace_id"] == TRACE_ID
    assert report["recorded"] is False
    assert report["recording"] == "the head decided not to sample (-0): by design"
    assert report["transactions_would_send"] == 0
    assert parts(report["forwarded"]["sentry-trace"])[::2] == [TRACE_ID, "0"]
    assert "sentry-sample_rand=0.9" in report["forwarded"]["baggage"].split(",")


def test_headers_from_sentry_javascript_keep_sample_rand_and_third_party_members(tmp_path: Path) -> None:
    report = inspect(
        f"--sentry-trace={JS_TRACE_ID}-{SPAN_ID}-1",
        f"--baggage={JS_BAGGAGE}",
        "--destination=orders",
        cwd=tmp_path,
        expect=0,
        environment=traced(),
    )
    incoming = report["incoming"]
    assert incoming["third_party_baggage"] == ["vendor-a=1;prop=x", "other=two"]
    assert incoming["baggage"]["release"] == "frontend@1.2.3"
    assert incoming["baggage"]["transaction"] == "GET /orders"
    assert (incoming["sample_rand"], incoming["sample_rate"]) == ("0.3141", "0.5")
    assert report["trace"]["trace_id"] == JS_TRACE_ID
    assert report["recorded"] is True
    assert parts(report["forwarded"]["sentry-trace"])[::2] == [JS_TRACE_ID, "1"]
    forwarded = report["forwarded"]["baggage"].split(",")
    assert {"vendor-a=1;prop=x", "other=two"} <= set(forwarded)
    assert {"sentry-sample_rand=0.3141", "sentry-release=frontend%401.2.3", "sentry-org_id=1"} <= set(
        forwarded
    )


def test_a_malformed_sentry_trace_starts_a_fresh_trace(tmp_path: Path) -> None:
    report = inspect(
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-yes",
        f"--baggage={PYTHON_BAGGAGE}",
        cwd=tmp_path,
        expect=1,
        environment=traced(),
    )
    assert report["headers"] == {"sentry-trace": "malformed", "baggage": "usable"}
    assert report["incoming"] is None
    assert (report["verdict"], report["reason"]) == ("fresh-trace", "malformed-header")
    assert report["explanation"] == "sentry-trace malformed: busprop ignores it"
    assert report["trace"]["trace_id"] != TRACE_ID
    assert parts(report["forwarded"]["sentry-trace"])[0] == report["trace"]["trace_id"]
    assert f"sentry-trace_id={TRACE_ID}" not in report["forwarded"]["baggage"]


def test_an_oversized_sentry_trace_starts_a_fresh_trace(tmp_path: Path) -> None:
    report = inspect(f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1{' ' * 100}", cwd=tmp_path, expect=1)
    assert report["headers"] == {"sentry-trace": "oversized"}
    assert report["reason"] == "oversized-header"
    assert report["trace"]["trace_id"] != TRACE_ID


def test_an_oversized_baggage_is_dropped_but_the_trace_continues(tmp_path: Path) -> None:
    baggage = PYTHON_BAGGAGE + ",vendor=" + "x" * 8200
    report = inspect(
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1",
        f"--baggage={baggage}",
        "--destination=orders",
        cwd=tmp_path,
        expect=0,
        environment=traced(),
    )
    assert report["headers"] == {"sentry-trace": "usable", "baggage": "oversized"}
    assert report["verdict"] == "continued"
    assert report["notes"] == [
        "baggage oversized: ignored, so the trace's sampling values and org id are lost"
    ]
    assert parts(report["forwarded"]["sentry-trace"])[::2] == [TRACE_ID, "1"]
    forwarded = report["forwarded"]["baggage"]
    assert "vendor=" not in forwarded
    assert "sentry-sample_rand=0.123456" not in forwarded
    assert "sentry-sample_rate=1.0" in forwarded.split(",")  # this process became the DSC's head


class Requests(BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        Requests.received.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sentry_server() -> Iterator[str]:
    """A local "Sentry" whose DSN a ``--config`` module uses; the test asserts it got nothing."""
    Requests.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Requests)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://public@127.0.0.1:{server.server_address[1]}/1"
    server.shutdown()
    server.server_close()


def write_config(directory: Path, body: str) -> str:
    (directory / "inspect_app_config.py").write_text(body, encoding="utf-8")
    return "inspect_app_config"


def test_strict_trace_continuation_refuses_another_org(tmp_path: Path, sentry_server: str) -> None:
    config = write_config(
        tmp_path,
        "import sentry_sdk\n"
        f"sentry_sdk.init(dsn={sentry_server!r}, org_id='2', strict_trace_continuation=True,"
        " traces_sample_rate=1.0)\n",
    )
    report = inspect(
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1",
        f"--baggage={PYTHON_BAGGAGE}",
        f"--config={config}",
        cwd=tmp_path,
        expect=1,
        script=True,  # the console script, which must find the module in the working directory
    )
    assert report["process"]["org_id"] == "2"
    assert report["process"]["strict_trace_continuation"] is True
    assert report["process"]["sentry_sdk.init"] == f"--config {config}"
    assert (report["verdict"], report["reason"]) == ("fresh-trace", "org-mismatch")
    assert report["explanation"] == "the baggage's org_id 1 is not this process's org 2"
    assert report["incoming"]["trace_id"] == TRACE_ID
    assert report["trace"]["trace_id"] != TRACE_ID
    assert report["recorded"] is True  # the fresh trace is sampled by this process's rate
    assert report["transactions_would_send"] == 1
    assert parts(report["forwarded"]["sentry-trace"])[0] == report["trace"]["trace_id"]
    assert "sentry-org_id=2" in report["forwarded"]["baggage"].split(",")
    assert Requests.received == []


def test_strict_trace_continuation_refuses_a_trace_without_org(tmp_path: Path, sentry_server: str) -> None:
    config = write_config(
        tmp_path,
        "import sentry_sdk\n"
        f"sentry_sdk.init(dsn={sentry_server!r}, org_id='2', strict_trace_continuation=True)\n",
    )
    report = inspect(
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1",
        f"--baggage={PYTHON_BAGGAGE.replace(',sentry-org_id=1', '')}",
        f"--config={config}",
        cwd=tmp_path,
        expect=1,
    )
    assert report["reason"] == "strict-org-missing"
    assert report["explanation"] == (
        "strict_trace_continuation is on and one org id is missing (baggage: None, this process: 2)"
    )
    assert report["trace"]["trace_id"] != TRACE_ID
    assert Requests.received == []


def test_a_destination_outside_propagation_targets_gets_no_headers(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "import busprop\nbusprop.configure(propagation_targets=['^orders$'], write_traceparent=True)\n",
    )
    arguments = (
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1",
        f"--baggage={PYTHON_BAGGAGE}",
        f"--config={config}",
    )
    excluded = inspect(*arguments, "--destination=audit", cwd=tmp_path, expect=1, environment=traced())
    assert excluded["process"]["propagation_targets"] == ["^orders$"]
    assert excluded["process"]["sentry_sdk.init"].startswith("busprop inspect, from the environment")
    assert (excluded["verdict"], excluded["reason"]) == ("not-forwarded", "destination-excluded")
    assert excluded["explanation"] == "'audit' matches no propagation_targets: no trace headers are written"
    assert excluded["trace"]["trace_id"] == TRACE_ID  # continued here, lost at the next hop
    assert excluded["forwarded"] == {}

    included = inspect(*arguments, "--destination=orders", cwd=tmp_path, expect=0, environment=traced())
    forwarded_trace, forwarded_span, _ = parts(included["forwarded"]["sentry-trace"])
    assert forwarded_trace == TRACE_ID
    assert included["forwarded"]["traceparent"] == f"00-{TRACE_ID}-{forwarded_span}-01"


def test_with_tracing_disabled_ids_still_propagate(tmp_path: Path) -> None:
    report = inspect(
        f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1",
        f"--baggage={PYTHON_BAGGAGE}",
        "--destination=orders",
        cwd=tmp_path,
        expect=0,
        environment={"SENTRY_DSN": DSN_ORG_1},
    )
    assert report["process"]["tracing_enabled"] is False
    assert report["process"]["traces_sample_rate"] is None
    assert report["verdict"] == "continued"
    assert report["recorded"] is False
    assert report["recording"].startswith("tracing disabled (no traces_sample_rate nor traces_sampler)")
    assert report["transactions_would_send"] == 0
    assert parts(report["forwarded"]["sentry-trace"])[::2] == [TRACE_ID, "1"]
    assert "sentry-sample_rand=0.123456" in report["forwarded"]["baggage"].split(",")


def test_a_traceparent_alone_is_continued(tmp_path: Path) -> None:
    report = inspect(
        f"--traceparent=00-{TRACE_ID}-{SPAN_ID}-01",
        "--destination=orders",
        cwd=tmp_path,
        expect=0,
        environment=traced(),
    )
    assert report["headers"] == {"traceparent": "usable"}
    assert (report["incoming"]["trace_id"], report["incoming"]["parent_span_id"]) == (TRACE_ID, SPAN_ID)
    assert report["incoming"]["sampled"] is True
    assert report["verdict"] == "continued"
    assert report["notes"] == ["trace read from traceparent"]
    assert report["recorded"] is True
    assert parts(report["forwarded"]["sentry-trace"])[::2] == [TRACE_ID, "1"]


def test_the_text_report_names_the_verdict(tmp_path: Path) -> None:
    done = run(f"--sentry-trace={TRACE_ID}-{SPAN_ID}-1", cwd=tmp_path, environment=traced())
    assert done.returncode == 0, done.stderr
    assert "verdict                       CONTINUED (continued)" in done.stdout
    assert f"  trace id                    {TRACE_ID}" in done.stdout


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        ((), {}, "inspect needs the message's headers"),
        ((f"--sentry-trace={TRACE_ID}-{SPAN_ID}", "--config=no_such_module"), {}, "--config no_such_module"),
        ((f"--sentry-trace={TRACE_ID}-{SPAN_ID}",), {"SENTRY_TRACES_SAMPLE_RATE": "all"}, "is not a number"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, arguments: tuple[str, ...], environment: dict[str, str], message: str
) -> None:
    done = run(*arguments, cwd=tmp_path, environment=environment)
    assert done.returncode == 2
    assert message in done.stderr


def test_span_streaming_and_a_traces_sampler_decide_as_in_the_application(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "import sentry_sdk\n"
        "def sampler(context):\n"
        "    return 1.0 if context['messaging']['system'] == 'kafka' else 0.0\n"
        f"sentry_sdk.init(dsn={DSN_ORG_1!r}, traces_sampler=sampler, trace_lifecycle='stream')\n",
    )
    undecided = (f"--sentry-trace={TRACE_ID}-{SPAN_ID}", f"--config={config}")
    kafka = inspect(*undecided, "--system=kafka", cwd=tmp_path, expect=0)
    assert (kafka["recorded"], kafka["recording"]) == (True, "sampled by this process's traces_sampler")
    assert kafka["transactions_would_send"] == 1  # a streamed segment, sent in a batch
    assert parts(kafka["forwarded"]["sentry-trace"])[::2] == [TRACE_ID, "1"]
    other = inspect(*undecided, "--system=redis", cwd=tmp_path, expect=0)
    assert (other["recorded"], other["transactions_would_send"]) == (False, 0)
    assert parts(other["forwarded"]["sentry-trace"])[::2] == [TRACE_ID, "0"]


def test_a_baggage_without_trace_header_starts_a_fresh_trace(tmp_path: Path) -> None:
    report = inspect(f"--baggage={PYTHON_BAGGAGE}", cwd=tmp_path, expect=1, environment=traced())
    assert report["headers"] == {"baggage": "usable"}
    assert (report["reason"], report["explanation"]) == (
        "no-trace-header",
        "neither sentry-trace nor traceparent was given",
    )
    assert report["trace"]["trace_id"] != TRACE_ID
