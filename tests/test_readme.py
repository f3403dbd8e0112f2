"""Every Python snippet in README.md and in docs/*.md runs as written (against the real brokers where
it needs one).

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


def documents() -> list[Path]:
    """README.md, then every page of the documentation site, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets_of(path: Path) -> list[tuple[str, str]]:
    return snippets_in(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())


def snippets_in(text: str, name: str) -> list[tuple[str, str]]:
    """``(where, code)`` for each Python block of ``text`` not marked as not run; ``where`` is
    ``name:line``, the line of the block's first line of code."""
    found = []
    for match in BLOCK.finditer(text):
        if match.group("before").strip() == SKIP_MARK:
            continue
        line = text[: match.start("code")].count("\n") + 1
        found.append((f"{name}:{line}", match.group("code")))
    return found


def snippets() -> list[tuple[str, str]]:
    return [snippet for path in documents() for snippet in snippets_of(path)]


def test_snippets_are_collected_from_readme_and_every_docs_page() -> None:
    """A page added to docs/ is run without being listed anywhere; a marked block is skipped."""
    page = (
        "Text\n```python\nprint(1)\n```\n"
        f"{SKIP_MARK}\n```python\nhalf_of_two_processes()\n```\n"
        "```sh\nnot python\n```\n"
    )
    assert snippets_in(page, "docs/page.md") == [("docs/page.md:3", "print(1)")]
    pages = {path.relative_to(ROOT).as_posix() for path in documents()}
    assert "README.md" in pages
    assert {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")} <= pages
    assert any(where.startswith("docs/") for where, _ in snippets())


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
