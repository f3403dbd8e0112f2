"""busprop talks to sentry-sdk through one module, and uses other libraries' private names knowingly.

``busprop/sdk.py`` is the seam: every other module of the package imports sentry-sdk for type
annotations only (under ``if TYPE_CHECKING:``), so a change of the SDK (span streaming, sentry-sdk
3) is one module's change. A private name of sentry-sdk or of a client library can break in any
release, so each use is listed here with the public API that is missing; a new one, or one used
outside its module, fails this test.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "busprop"
SEAM = PACKAGE / "sdk.py"

#: Modules that use sentry-sdk as an application does, not as busprop's library code.
APPLICATIONS = {
    "demo/run.py": "the demo is an application of busprop that initialises the SDK",
}

#: Private names busprop uses, by library, with the module allowed to use each and why.
ALLOWED_PRIVATE = {
    "sentry_sdk": {
        "_propagation_context": ("sdk.py", "no public setter for a propagation context already built"),
        "_installed_integrations": ("sdk.py", "no public way to let an uninstalled integration set up again"),
        "_processed_integrations": ("sdk.py", "the same, for the SDK's second record"),
        "_segment": ("sdk.py", "a streamed span has no public accessor for its segment"),
        "_trace_id": (
            "sdk.py",
            "a parsed propagation context is copied slot by slot: the public property makes up an id when unset",
        ),
        "_span_id": ("sdk.py", "the same, for the span id, which each copy makes up on first use"),
        "_should_continue_trace": (
            "sdk.py",
            "no public form of the strict trace continuation check, which busprop inspect names as a reason",
        ),
    },
    "kafka": {
        "_produce_future": (
            "kafka/_kafka_python.py",
            "the partition a send was given, before it is acknowledged",
        ),
    },
    "aio_pika": {
        "_format_routing_key": ("amqp/_aio_pika.py", "the routing key RPC derives from a method name"),
    },
    "aiokafka": {
        "_group_id": ("kafka/_aiokafka.py", "a consumer's group id has no public accessor"),
    },
    "pika": {},
}


def package_modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def type_checking_blocks(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def sentry_imports(tree: ast.Module) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "sentry_sdk" for alias in node.names
        ):
            yield node.lineno
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sentry_sdk":
            yield node.lineno


def test_only_the_seam_imports_sentry_sdk_at_run_time() -> None:
    offenders = []
    for name, tree in package_modules():
        if name == "sdk.py" or name in APPLICATIONS:
            continue
        typing_only = type_checking_blocks(tree)
        offenders += [f"{name}:{line}" for line in sentry_imports(tree) if line not in typing_only]
    assert offenders == [], f"import sentry-sdk through busprop.sdk, not directly: {offenders}"


def test_the_seam_is_the_module_it_claims() -> None:
    assert list(
        sentry_imports(ast.parse(SEAM.read_text(encoding="utf-8")))
    )  # the check above checks something


def private_names_of(library: str) -> set[str]:
    """Every ``_name`` (not dunder) a library's source defines or assigns."""
    spec = importlib.util.find_spec(library)
    assert spec is not None and spec.submodule_search_locations is not None
    names: set[str] = set()
    for location in spec.submodule_search_locations:
        for path in Path(location).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                name = None
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = node.name
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    name = node.attr
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    name = node.id
                elif (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value.isidentifier()
                ):
                    name = node.value  # __slots__ entries
                if name and name.startswith("_") and not name.startswith("__"):
                    names.add(name)
    return names


def busprop_private_names() -> set[str]:
    """The ``_names`` busprop defines itself: using those is nobody else's business."""
    own: set[str] = set()
    for _, tree in package_modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                own.add(node.value)  # __slots__ entries
    return own


def uses_of(names: set[str]) -> dict[str, set[str]]:
    """Where each of ``names`` is read or called as an attribute, or imported, by module."""
    found: dict[str, set[str]] = {}
    for module, tree in package_modules():
        for node in ast.walk(tree):
            used = []
            if isinstance(node, ast.Attribute) and node.attr in names:
                used = [node.attr]
            elif isinstance(node, ast.ImportFrom):
                used = [alias.name for alias in node.names if alias.name in names]
            for name in used:
                found.setdefault(name, set()).add(module)
    return found


@pytest.mark.parametrize("library", sorted(ALLOWED_PRIVATE))
def test_private_names_are_used_only_where_listed(library: str) -> None:
    theirs = private_names_of(library) - busprop_private_names()
    allowed = ALLOWED_PRIVATE[library]
    used = uses_of(theirs | set(allowed))
    unlisted = {name: sorted(modules) for name, modules in used.items() if name not in allowed}
    assert unlisted == {}, f"private {library} names used without a listed reason: {unlisted}"
    misplaced = {
        name: sorted(modules - {allowed[name][0]})
        for name, modules in used.items()
        if modules - {allowed[name][0]}
    }
    assert misplaced == {}, f"private {library} names used outside their module: {misplaced}"
    stale = sorted(set(allowed) - set(used))
    assert stale == [], f"listed private {library} names no longer used (remove them from the list): {stale}"
