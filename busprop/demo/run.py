"""Runs every leg of the demo inside one root transaction and prints the resulting trace."""

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


def run_demo(*, spotlight: bool = False, out: TextIO = sys.stdout) -> str:
    """Run the demo; returns the trace id it printed."""
    CapturingTransport.clear()
    # sentry-sdk's own integrations stay off: the demo shows what busprop records (with its
    # CeleryIntegration on, that integration would lead the Celery leg; see README, "Celery").
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
        for leg in discover_legs():
            with sentry_sdk.start_span(op="demo.leg", name=leg.TITLE):
                skipped = leg.run()
            status = "ran" if skipped is None else f"skipped: {skipped}"
            print(f"leg {leg.TITLE}: {status}", file=out)
    sentry_sdk.flush()
    print("", file=out)
    print(render(CapturingTransport.transactions(), trace_id), file=out)
    if spotlight:
        print("\nsent to Spotlight at http://localhost:8969 (if it is running)", file=out)
    return trace_id
