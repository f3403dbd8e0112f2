"""Running producer and consumer apps as separate processes, and reading what each captured.

An app is a script under ``tests/apps/`` that calls ``busprop.testing.init_capturing`` and, before
it exits, ``busprop.testing.dump_captured(path)``; the path is passed as an argument or in the
``BUSPROP_CAPTURE`` environment variable, as the app chooses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


def start_app(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``tests/apps/<name>.py`` with this interpreter; stdout and stderr are captured."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(APPS / f"{name}.py"), *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def run_app(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run an app to completion; fail with its output when it exits non-zero. Returns stdout."""
    process = start_app(name, *args, env=env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"app {name} timed out\n{stdout}\n{stderr}") from None
    if process.returncode != 0:
        raise AssertionError(f"app {name} exited {process.returncode}\n{stdout}\n{stderr}")
    return stdout


def read_captured(path: str | Path) -> dict[str, Any]:
    """``{"transactions": [...], "errors": [...]}`` as an app wrote it."""
    with open(path, encoding="utf-8") as file:
        return json.load(file)  # type: ignore[no-any-return]
