"""Every Python snippet in README.md runs as written (against the real brokers where it needs one).

A snippet that cannot run on its own (one half of a two-process example, say) is preceded by the
line ``<!-- snippet: not run -->`` and says so in the text around it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT

SKIP_MARK = "<!-- snippet: not run -->"
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        if match.group("before").strip() == SKIP_MARK:
            continue
        line = text[: match.start("code")].count("\n") + 1
        found.append((f"README.md:{line}", match.group("code")))
    return found


@pytest.mark.parametrize(("where", "code"), snippets(), ids=[where for where, _ in snippets()])
def test_snippet_runs(where: str, code: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if "KAFKA_BOOTSTRAP_SERVERS" in code:  # the session's broker (embedded unless configured)
        env["KAFKA_BOOTSTRAP_SERVERS"] = request.getfixturevalue("kafka_bootstrap")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"
