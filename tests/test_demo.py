"""`busprop demo` prints one trace id across every hop, with nothing orphaned."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.processes import ROOT


def test_demo_prints_one_connected_trace() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "busprop.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=True,
    )
    output = result.stdout
    trace_ids = re.findall(r"^trace ([0-9a-f]{32})", output, flags=re.MULTILINE)
    assert len(trace_ids) == 1, output
    rows = [line for line in output.splitlines() if " ms |" in line]
    roots = [row for row in rows if row.startswith(("▶", "·"))]
    assert len(roots) == 1 and "busprop demo" in roots[0], output
    assert sum("queue.process" in row for row in rows) >= 2, output
    assert "leg stdlib queue (generic decorators): ran" in output
