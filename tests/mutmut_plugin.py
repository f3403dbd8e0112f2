"""pytest plugin for ``./dev.sh mutate`` only (loaded with ``-p tests.mutmut_plugin``).

mutmut records the node id of every test and later runs each test by passing its id back on the
command line. Two kinds of id do not survive that round trip: an id holding a backslash escape
(pytest cannot match it again) and an id holding a memory address (different in every process). A
test it cannot re-select makes mutmut abort the whole run, so those cases are deselected here, and
``tests/test_mutation_killers.py`` runs the same cases under plain index ids.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

MUTANT = "MUTANT_UNDER_TEST"


def reselectable(node_id: str) -> bool:
    """Whether pytest finds the test again when given ``node_id`` on a later command line."""
    return "\\" not in node_id and " at 0x" not in node_id


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [item for item in items if reselectable(item.nodeid)]
    dropped = [item for item in items if not reselectable(item.nodeid)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(MUTANT) != "stats":
        return
    popen_init = subprocess.Popen.__init__

    def without_stats(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        environment = dict(os.environ if kwargs.get("env") is None else kwargs["env"])
        environment[MUTANT] = ""
        kwargs["env"] = environment
        popen_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = without_stats  # type: ignore[method-assign]
