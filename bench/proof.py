"""Proof at the sizes docs/proof.md claims: bad input, load and memory, one table.

docs/proof.md states figures for every receive path of every adapter: 10,000 generated messages per
receive path without an exception escaping busprop, 100,000 messages under load with no trace
mixed up or lost, and memory that stays flat over 200,000 messages per adapter (2,000,000 Kafka
records for RSS). CI runs the same code at a few hundred messages; this script runs it at the claimed
sizes and prints one row per adapter and receive path, so every figure has one command behind it:

- fuzz: ``tests/test_bad_input.py`` with ``BUSPROP_HYPOTHESIS_EXAMPLES=N``, one pytest run per
  adapter; the counts are what each property prints (cases run, how many carried a usable trace).
  An escape is a property that failed with an exception other than an assertion (an exception that
  reached the code processing the message); hypothesis stops at the first, so it is 0 or 1 per row.
  Any other failure (a wrong trace, an altered payload) shows as FAIL with its message;
- load: ``bench/load.py --messages M`` (the four adapters at once, M/4 each): mix-ups and lost;
- memory: ``bench/memory.py --messages K`` per adapter (RSS and tracemalloc growth), and Kafka's RSS
  alone over ``--plateau`` records.

Run: ``./dev.sh proof`` (the claimed sizes: hours on a 2-core machine); ``./dev.sh proof --quick``
(CI's sizes, a few minutes); ``--adapters kafka,amqp`` and ``--fuzz/--load/--memory/--plateau N``
pick a subset and sizes (0 skips a part). Exits 1 when any part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("core", "kafka", "amqp", "celery", "websockets")
FULL = {"fuzz": 10_000, "load": 100_000, "memory": 200_000, "warmup": 5_000, "plateau": 2_000_000}
QUICK = {"fuzz": 60, "load": 1_200, "memory": 400, "warmup": 100, "plateau": 0}
#: Fuzz property -> (adapter, receive path). A property not listed gets a row named after itself.
PROPERTIES = {
    "test_kafka_record_processing_on_generated_headers": ("kafka", "record_processing"),
    "test_kafka_records_from_the_broker": ("kafka", "traced_consumer (broker)"),
    "test_kafka_traced_records_on_generated_poll_batches": ("kafka", "traced_records"),
    "test_kafka_consumer_decorator_on_generated_records": ("kafka", "@kafka.consumer"),
    "test_kafka_process_batch_on_generated_poll_batches": ("kafka", "process_batch"),
    "test_amqp_message_processing_on_messages_from_rabbitmq": ("amqp", "message_processing"),
    "test_amqp_callback_consumer_on_generated_batches": ("amqp", "@amqp.consumer"),
    "test_amqp_traced_iterator_on_generated_batches": ("amqp", "traced_iterator"),
    "test_celery_task_headers_top_level_and_nested": ("celery", "task tracer + signals"),
    "test_celery_tasks_through_redis_and_a_worker": ("celery", "celery worker (Redis)"),
    "test_websocket_frames_over_a_real_connection": ("websockets", "traced_handler (server)"),
    "test_websocket_frames_received_by_a_traced_client": ("websockets", "traced(...).recv (client)"),
}
#: The other clients' properties, in their own modules on the same oracle and settings:
#: test id -> (adapter, receive path).
CLIENT_PROPERTIES = {
    "tests/test_kafka_confluent.py::test_generated_trace_headers_from_the_broker": (
        "kafka",
        "confluent-kafka traced_consumer (broker)",
    ),
    "tests/test_kafka_aiokafka.py::test_generated_trace_headers_from_the_broker": (
        "kafka",
        "aiokafka traced_consumer (broker)",
    ),
    "tests/test_amqp_pika.py::test_generated_headers_from_rabbitmq_are_continued_or_start_a_fresh_trace": (
        "amqp",
        "pika @amqp.consumer",
    ),
}
#: The receive path each load leg and memory flow drives, so their figures sit on that row.
LOAD_PATH = {
    "kafka": "traced_consumer (broker)",
    "amqp": "@amqp.consumer",
    "celery": "celery worker (Redis)",
    "websockets": "traced_handler (server)",
}
MEMORY_PATH = {**LOAD_PATH, "core": "publish + continue_trace"}
COUNTS = re.compile(r"^(\d+) (?:messages|tasks): (\d+) continued", re.MULTILINE)


@dataclass
class Row:
    """One adapter and receive path; ``None`` where a part did not drive this path."""

    adapter: str
    path: str
    cases: int | None = None
    continued: int | None = None
    messages: int | None = None
    mixups: int | None = None
    lost: int | None = None
    escapes: int | None = None
    rss: int | None = None
    traced: int | None = None
    failures: list[str] = field(default_factory=list)


class Table:
    """The rows, created on first mention, in adapter order."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}

    def row(self, adapter: str, path: str) -> Row:
        return self.rows.setdefault((adapter, path), Row(adapter, path))

    def ordered(self) -> list[Row]:
        return sorted(self.rows.values(), key=lambda row: ADAPTERS.index(row.adapter))


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    print(f"proof: {' '.join(command)}", file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def fuzz(table: Table, adapter: str, examples: int) -> None:
    """``tests/test_bad_input.py`` for one adapter's properties at ``examples`` each, then the
    properties of the adapter's other clients."""
    fuzz_run(table, adapter, examples, ["tests/test_bad_input.py", "-k", adapter.rstrip("s")])
    tests = [test for test, (owner, _) in CLIENT_PROPERTIES.items() if owner == adapter]
    if tests:  # their modules keep the suite's 120 s per test: give the long run what the others get
        fuzz_run(table, adapter, examples, [*tests, "-o", f"timeout={120 + examples // 5}"])


def fuzz_run(table: Table, adapter: str, examples: int, selection: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory, "junit.xml")
        done = run(
            [sys.executable, "-m", "pytest", *selection, "-q", "-p", "no:cacheprovider",
             f"--junitxml={report}", "-o", "junit_logging=system-out"],
            env={**os.environ, "BUSPROP_HYPOTHESIS_EXAMPLES": str(examples)},
        )  # fmt: skip
        if not report.exists():
            table.row(adapter, "(fuzz)").failures.append(
                f"pytest exited {done.returncode}: {done.stderr[-500:]}"
            )
            return
        for case in ET.parse(report).iter("testcase"):
            record_case(table, adapter, case)


def record_case(table: Table, adapter: str, case: ET.Element) -> None:
    """One property's counts, or its failure, on its row (skipped and xfail tests have no row)."""
    name = case.get("name", "").split("[")[0]
    module = case.get("classname", "").replace(".", "/")
    path = CLIENT_PROPERTIES.get(f"{module}.py::{name}")
    if case.find("skipped") is not None or not (path or name.startswith(f"test_{adapter.rstrip('s')}")):
        return
    found = COUNTS.search(case.findtext("system-out") or "")
    problem = case.find("failure")
    problem = case.find("error") if problem is None else problem  # an Element without children is falsy
    if name not in PROPERTIES and found is None and problem is None:
        return  # a plain test (no property counts) that passed
    row = table.row(*(path or PROPERTIES.get(name, (adapter, name))))
    if found:
        row.cases, row.continued = int(found[1]), int(found[2])
    if problem is None:
        row.escapes = row.escapes or 0
        return
    message = problem.get("message", "")
    row.escapes = (row.escapes or 0) + (not message.startswith(("AssertionError", "assert")))
    row.failures.append(f"{name}: {message[:300]}")


def load(table: Table, adapters: list[str], messages: int) -> None:
    """``bench/load.py`` with the given adapters at once, ``messages`` split between them."""
    legs = [adapter for adapter in adapters if adapter in LOAD_PATH]
    if not legs:
        return
    done = run(
        [sys.executable, "bench/load.py", "--messages", str(messages), "--adapters", ",".join(legs), "--json"]
    )
    rows = _json_rows(done)
    if rows is None:
        table.row(legs[0], LOAD_PATH[legs[0]]).failures.append(
            f"load exited {done.returncode}: {done.stderr[-500:]}"
        )
        return
    for result in rows:
        row = table.row(result["adapter"], LOAD_PATH[result["adapter"]])
        if "error" in result:
            row.failures.append(f"load: {result['error']}")
            continue
        row.messages, row.mixups = result["processed"], result["mixups"]
        row.lost = result["missing"]
        row.failures += [f"load mix-up {example}" for example in result["examples"]]


def memory(table: Table, adapters: list[str], messages: int, warmup: int, rss_only: bool = False) -> None:
    """``bench/memory.py`` over the adapters; with ``rss_only`` Kafka's long RSS plateau run."""
    command = [sys.executable, "bench/memory.py", "--adapters", ",".join(adapters), "--json"]
    command += ["--messages", str(messages), "--warmup", str(warmup)] + (["--rss-only"] if rss_only else [])
    done = run(command)
    rows = _json_rows(done)
    if rows is None:
        table.row(adapters[0], MEMORY_PATH[adapters[0]]).failures.append(f"memory exited {done.returncode}")
        return
    record_memory(table, rows, f"RSS over {messages:,} (Kafka plateau)" if rss_only else None)


def record_memory(table: Table, rows: list[dict[str, Any]], path: str | None = None) -> None:
    """``bench/memory.py``'s rows on the table (``path`` names the row instead of the adapter's
    memory path); a growth at or over that script's goal fails the row, as it fails the script."""
    from memory import LIMIT

    for result in rows:
        adapter = result["adapter"]
        row = table.row(adapter, path or MEMORY_PATH[adapter])
        if "error" in result:
            row.failures.append(f"memory: {result['error'][-300:]}")
            continue
        row.rss, row.traced = result["rss_growth"], result["tracemalloc_growth"]
        if result["processed"] != result["messages"]:
            row.lost = (row.lost or 0) + result["messages"] - result["processed"]
        for name, growth in [("RSS", row.rss), ("tracemalloc", row.traced)]:
            if growth is not None and growth >= LIMIT:
                row.failures.append(
                    f"memory: {name} grew {growth / 1024:,.0f} KiB, the goal is under {LIMIT // 1024:,} KiB"
                )


def _json_rows(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]] | None:
    lines = done.stdout.strip().splitlines()
    try:
        rows = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return rows if isinstance(rows, list) else None


def cell(value: int | None, kib: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:,.0f} KiB" if kib else f"{value:,}"


def report(table: Table, sizes: dict[str, int], seconds: float) -> bool:
    """Print the table (Markdown, as docs/proof.md's) and every failure; whether all passed."""
    print(
        f"\nfuzz {sizes['fuzz']:,} examples per property; load {sizes['load']:,} messages (split over the"
        f" adapters); memory {sizes['memory']:,} per adapter after {sizes['warmup']:,}; {seconds:.0f} s\n"
    )
    print("| adapter | receive path | fuzz cases | continued | load messages | mix-ups | lost | escapes"
          " | RSS growth | tracemalloc growth |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    failed = False
    for row in table.ordered():
        status = " **FAIL**" if row.failures else ""
        failed = failed or bool(row.failures)
        print(
            f"| {row.adapter}{status} | {row.path} | {cell(row.cases)} | {cell(row.continued)} | {cell(row.messages)}"
            f" | {cell(row.mixups)} | {cell(row.lost)} | {cell(row.escapes)} | {cell(row.rss, True)}"
            f" | {cell(row.traced, True)} |"
        )
    for row in table.ordered():
        for failure in row.failures:
            print(f"FAIL {row.adapter} {row.path}: {failure}")
    return not failed


def sizes_of(args: argparse.Namespace) -> dict[str, int]:
    base = QUICK if args.quick else FULL
    return {key: base[key] if getattr(args, key) is None else getattr(args, key) for key in base}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI's sizes instead of docs/proof.md's claims")
    parser.add_argument("--adapters", default=",".join(ADAPTERS), help="a subset, comma-separated")
    for part, text in [("fuzz", "examples per property"), ("load", "messages in all"),
                       ("memory", "messages per adapter"), ("warmup", "memory warm-up"),
                       ("plateau", "Kafka records for the RSS-only run")]:  # fmt: skip
        parser.add_argument(f"--{part}", type=int, help=f"{text} (0 skips)")
    parser.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = parser.parse_args()
    sizes, adapters = sizes_of(args), args.adapters.split(",")
    started, table = time.monotonic(), Table()
    for adapter in adapters:
        if sizes["fuzz"] and adapter != "core":
            fuzz(table, adapter, sizes["fuzz"])
    if sizes["load"]:
        load(table, adapters, sizes["load"])
    if sizes["memory"]:
        memory(table, adapters, sizes["memory"], sizes["warmup"])
    if sizes["plateau"] and "kafka" in adapters:
        memory(table, ["kafka"], sizes["plateau"], sizes["warmup"], rss_only=True)
    passed = report(table, sizes, time.monotonic() - started)
    if args.json:
        print(json.dumps([vars(row) for row in table.ordered()]))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
