"""Runs every leg of the demo inside one root transaction and prints the resulting trace.

Each leg is reported as ran, skipped (its package or broker is missing: the leg says why) or
failed (it raised). A failed leg, or a transaction captured outside the demo's trace (a hop that
lost the trace), makes the demo exit with status 1 once everything is printed, so that a script
or a test running it can never mistake a broken leg for a missing broker.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType
from typing import Any, TextIO

import sentry_sdk

from busprop.demo import legs
from busprop.demo.waterfall import render
from busprop.testing import LOCAL_DSN, CapturingTransport


def discover_legs() -> list[ModuleType]:
    modules = [
        importlib.import_module(f"{legs.__name__}.{info.name}")
        for info in pkgutil.iter_modules(legs.__path__)
    ]
    return sorted(modules, key=lambda module: getattr(module, "ORDER", 100))


def run_leg(leg: ModuleType) -> str:
    """Run one leg inside its ``demo.leg`` span; returns ``ran``, ``skipped: why`` or ``failed: why``.

    The demo goes on after a failed leg, so that the other legs and the trace are still shown.
    """
    with sentry_sdk.start_span(op="demo.leg", name=leg.TITLE) as span:
        try:
            skipped = leg.run()
        except Exception as error:
            span.set_status("internal_error")
            return f"failed: {type(error).__name__}: {error}"
    return "ran" if skipped is None else f"skipped: {skipped}"


def orphans(trace_id: str) -> list[str]:
    """The names of captured transactions outside the demo's trace: hops that lost it."""
    return [
        str(event.get("transaction"))
        for event in CapturingTransport.transactions()
        if event.get("contexts", {}).get("trace", {}).get("trace_id") != trace_id
    ]


def run_demo(*, spotlight: bool = False, out: TextIO = sys.stdout) -> str:
    """Run the demo; returns the trace id it printed.

    Raises ``SystemExit(1)``, after printing everything, when a leg failed or a hop lost the trace.
    """
    CapturingTransport.clear()
    # sentry-sdk's own integrations stay off: the demo shows what busprop records (with its
    # CeleryIntegration on, that integration would lead the Celery leg; see docs/celery.md).
    options: dict[str, Any] = {
        "dsn": LOCAL_DSN,
        "transport": CapturingTransport,
        "traces_sample_rate": 1.0,
        "auto_enabling_integrations": False,
    }
    if spotlight:
        options["spotlight"] = True
    sentry_sdk.init(**options)
    with sentry_sdk.start_transaction(op="demo", name="busprop demo") as root:
        trace_id = root.trace_id
        failed = []
        for leg in discover_legs():
            status = run_leg(leg)
            print(f"leg {leg.TITLE}: {status}", file=out)
            if status.startswith("failed: "):
                failed.append(leg.TITLE)
    sentry_sdk.flush()
    print("", file=out)
    print(render(CapturingTransport.transactions(), trace_id), file=out)
    lost = orphans(trace_id)
    if lost:
        print(f"\n{len(lost)} transaction(s) outside trace {trace_id}: {', '.join(lost)}", file=out)
    if spotlight:
        print("\nsent to Spotlight at http://localhost:8969 (if it is running)", file=out)
    if failed or lost:
        raise SystemExit(
            f"busprop demo: {len(failed)} leg(s) failed, {len(lost)} transaction(s) outside the trace"
        )
    return trace_id
