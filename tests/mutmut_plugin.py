"""pytest plugin for ``./dev.sh mutate`` only (loaded with ``-p tests.mutmut_plugin``).

mutmut records the node id of every test and later runs each test by passing its id back on the
command line. Two kinds of id do not survive that round trip: an id holding a backslash escape
(pytest cannot match it again) and an id holding a memory address (different in every process). A
test it cannot re-select makes mutmut abort the whole run, so those cases are deselected here, and
``tests/test_mutation_killers.py`` runs the same cases under plain index ids.
"""

from __future__ import annotations

import pytest


def reselectable(node_id: str) -> bool:
    """Whether pytest finds the test again when given ``node_id`` on a later command line."""
    return "\\" not in node_id and " at 0x" not in node_id


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [item for item in items if reselectable(item.nodeid)]
    dropped = [item for item in items if not reselectable(item.nodeid)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
