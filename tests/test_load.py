"""A slice of the load and memory proofs (``bench/load.py``, ``bench/memory.py``) for every CI run.

The full runs (100,000 messages through the four adapters at once; 200,000 per adapter for memory)
take minutes and are one command each (docs/proof.md). Here the same code runs on a few hundred messages
per adapter against the real brokers, so a change that swaps traces under concurrency, loses a
message or leaks a scope per message fails CI. The checker itself is proven to see a mix-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import load  # noqa: E402
import proof  # noqa: E402

PER_ADAPTER = 300
TRACE_A, TRACE_B = "a" * 32, "b" * 32


def run_bench(script: str, *args: str, kafka: str, timeout: float) -> tuple[int, list[dict[str, Any]], str]:
    """Run a bench script with ``--json``; its exit code, its JSON rows and its output."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return done.returncode, rows, done.stdout + done.stderr[-3000:]


def test_the_four_adapters_at_once_never_mix_traces(
    kafka_bootstrap: str, amqp_url: str, redis_url: str
) -> None:
    code, rows, output = run_bench(
        "load.py", "--messages", str(4 * PER_ADAPTER), "--timeout", "60", kafka=kafka_bootstrap, timeout=120
    )
    assert code == 0, output
    assert [row["adapter"] for row in rows] == list(load.ADAPTERS)
    for row in rows:
        assert (row["sent"], row["processed"], row["missing"], row["mixups"]) == (
            PER_ADAPTER,
            PER_ADAPTER,
            0,
            0,
        )
        assert (row["sampled"], row["unsampled"], row["untraced"]) == (100, 100, 100)
        assert row["duplicates"] == 0
    # Untraced messages each start a fresh trace of their own (none shared, none a producer's).
    assert [row["untraced_traces"] for row in rows] == [100, 100, 100, 100]


def ledger_with(
    kind: str, head_trace: str | None, wire: str | None, processed: load.Processed
) -> load.Ledger:
    ledger = load.Ledger()
    ledger.sent("m1", kind, head_trace)
    ledger.on_wire("m1", wire)
    ledger.saw("m1", processed)
    ledger.sent("m2", "sampled", TRACE_A)
    ledger.on_wire("m2", f"{TRACE_A}-{'1' * 16}-1")
    ledger.saw("m2", (TRACE_A, "1" * 16, True))
    return ledger


@pytest.mark.parametrize(
    ("kind", "head_trace", "wire", "processed"),
    [
        ("sampled", TRACE_B, f"{TRACE_B}-{'2' * 16}-1", (TRACE_A, "2" * 16, True)),  # another trace
        ("sampled", TRACE_B, f"{TRACE_B}-{'2' * 16}-1", (TRACE_B, "1" * 16, True)),  # another parent
        ("sampled", TRACE_B, f"{TRACE_B}-{'2' * 16}-1", (TRACE_B, "2" * 16, False)),  # decision lost
        ("unsampled", TRACE_B, f"{TRACE_B}-{'2' * 16}-1", (TRACE_B, "2" * 16, True)),  # wire flag wrong
        ("sampled", TRACE_B, f"{TRACE_A}-{'2' * 16}-1", (TRACE_A, "2" * 16, True)),  # producer wrote A
        ("untraced", None, None, (TRACE_A, None, True)),  # fresh message in a producer's trace
        ("untraced", None, f"{TRACE_B}-{'2' * 16}", ("c" * 32, None, True)),  # header on untraced
    ],
)
def test_the_checker_sees_every_kind_of_mix_up(
    kind: str, head_trace: str | None, wire: str | None, processed: load.Processed
) -> None:
    counts = load.check("test", ledger_with(kind, head_trace, wire, processed))
    assert (counts["sent"], counts["processed"], counts["mixups"], counts["missing"]) == (2, 2, 1, 0)
    assert counts["examples"][0].startswith("m1: ")


def test_the_checker_counts_lost_and_duplicated_messages() -> None:
    ledger = ledger_with("sampled", TRACE_B, f"{TRACE_B}-{'2' * 16}-1", (TRACE_B, "2" * 16, True))
    ledger.saw("m1", (TRACE_B, "2" * 16, True))
    ledger.sent("m3", "unsampled", "d" * 32)
    counts = load.check("test", ledger)
    assert (counts["mixups"], counts["missing"], counts["duplicates"]) == (0, 1, 1)


#: What tracemalloc sees after 400 messages is bounded turnover (docs/proof.md, "Load and memory"): about
#: 150 KiB for the core and WebSockets, more where the client keeps buffers (Kafka's 124 KiB receive
#: buffer, Celery's decoding), so a leaked scope per message (over 400 KiB) is caught on the first two.
TRACED_LIMIT = {"core": 256 * 1024, "websockets": 256 * 1024, "amqp": 768 * 1024}
TRACED_LIMIT_DEFAULT = 1024 * 1024


def test_memory_stays_flat_through_every_adapter(kafka_bootstrap: str) -> None:
    code, rows, output = run_bench(
        "memory.py",
        *("--adapters", "core,kafka,amqp,celery,websockets", "--messages", "400", "--warmup", "100"),
        kafka=kafka_bootstrap,
        timeout=300,
    )
    assert code == 0, output
    assert [row["adapter"] for row in rows] == ["core", "kafka", "amqp", "celery", "websockets"]
    for row in rows:
        assert row["processed"] == 400, output
        assert row["tracemalloc_growth"] < TRACED_LIMIT.get(row["adapter"], TRACED_LIMIT_DEFAULT), output
        assert row["rss_growth"] < 2 * 1024 * 1024, output


def test_the_kafka_memory_flow_runs_with_the_recipe_and_reads_the_allocators_along_the_way(
    kafka_bootstrap: str,
) -> None:
    """``bench/memory.py --kafka-with recipe --series N``: the comparison docs/proof.md makes of the
    Kafka plateau with and without busprop, and where its memory is."""
    code, rows, output = run_bench(
        "memory.py",
        *("--adapters", "kafka", "--messages", "1000", "--warmup", "100", "--rss-only"),
        *("--kafka-with", "recipe", "--series", "500"),
        kafka=kafka_bootstrap,
        timeout=300,
    )
    assert code == 0, output
    [row] = rows
    assert row["processed"] == 1000, output
    assert [reading["messages"] for reading in row["series"]] == [0, 500, 1000], output
    for reading in row["series"]:
        assert reading["rss"] > 0 and reading["rss_anonymous"] > 0, output
        assert reading["in_use"] > 0 and reading["python_arenas"] > 0 and reading["python_blocks"] > 0, output


def test_what_a_kafka_producer_holds_for_unacknowledged_records_goes_with_the_flush(
    kafka_bootstrap: str,
) -> None:
    """``bench/in_flight.py``: busprop's sends keep what a failure report needs until the broker
    answers, and nothing after (docs/proof.md, the Kafka plateau)."""
    code, rows, output = run_bench("in_flight.py", "--records", "300", kafka=kafka_bootstrap, timeout=300)
    assert code == 0, output
    assert [row["variant"] for row in rows] == ["busprop", "recipe"], output
    for row in rows:
        assert row["in_flight"] > 0, output
        assert abs(row["after_flush"]) < 64 * 1024, output


def junit_case(module: str, name: str, output: str = "", failure: str | None = None) -> ET.Element:
    case = ET.Element("testcase", classname=f"tests.{module}", name=name)
    ET.SubElement(case, "system-out").text = output
    if failure is not None:
        ET.SubElement(case, "failure", message=failure)
    return case


def test_the_proof_table_puts_each_property_on_its_receive_paths_row() -> None:
    """``./dev.sh proof``'s fuzz columns: every client's property on its own row, a failure
    that is not an assertion counted as an escape, and another adapter's tests left out."""
    table = proof.Table()
    kinds = "kinds [(False, None), (True, True)]"
    for case in [
        junit_case("test_bad_input", "test_kafka_records_from_the_broker", f"120 messages: 40 continued, {kinds}"),
        junit_case("test_kafka_confluent", "test_generated_trace_headers_from_the_broker", f"80 messages: 30 continued, {kinds}"),
        junit_case("test_kafka_aiokafka", "test_generated_trace_headers_from_the_broker", failure="ValueError: boom"),
        junit_case("test_bad_input", "test_amqp_message_processing_on_messages_from_rabbitmq", "9 messages: 1 continued"),
    ]:  # fmt: skip
        proof.record_case(table, "kafka", case)
    proof.record_case(
        table,
        "amqp",
        junit_case(
            "test_amqp_pika",
            "test_generated_headers_from_rabbitmq_are_continued_or_start_a_fresh_trace",
            "60 messages: 20 continued",
            failure="AssertionError: a wrong trace",
        ),
    )
    rows = {(row.adapter, row.path): row for row in table.ordered()}
    assert set(rows) == {
        ("kafka", "traced_consumer (broker)"),
        ("kafka", "confluent-kafka traced_consumer (broker)"),
        ("kafka", "aiokafka traced_consumer (broker)"),
        ("amqp", "pika @amqp.consumer"),
    }
    broker = rows["kafka", "traced_consumer (broker)"]
    assert (broker.cases, broker.continued, broker.escapes, broker.failures) == (120, 40, 0, [])
    confluent = rows["kafka", "confluent-kafka traced_consumer (broker)"]
    assert (confluent.cases, confluent.continued, confluent.escapes) == (80, 30, 0)
    aiokafka = rows["kafka", "aiokafka traced_consumer (broker)"]
    assert (aiokafka.cases, aiokafka.escapes) == (None, 1)
    assert aiokafka.failures == ["test_generated_trace_headers_from_the_broker: ValueError: boom"]
    pika = rows["amqp", "pika @amqp.consumer"]
    assert (pika.cases, pika.continued, pika.escapes) == (60, 20, 0)
    assert pika.failures and "a wrong trace" in pika.failures[0]


def test_the_proof_table_fails_a_memory_row_over_the_goal() -> None:
    """``./dev.sh proof``'s memory columns: a growth at or over ``bench/memory.py``'s goal fails its
    row, as it fails that script (a Kafka plateau of 2,060 KiB once passed as a table row)."""
    table = proof.Table()
    plateau = {"adapter": "kafka", "messages": 10, "processed": 10, "rss_growth": 2 * 1024 * 1024}
    proof.record_memory(table, [{**plateau, "tracemalloc_growth": None}], "RSS over 10 (Kafka plateau)")
    under = {"adapter": "amqp", "messages": 10, "processed": 9, "rss_growth": 2 * 1024 * 1024 - 1}
    proof.record_memory(table, [{**under, "tracemalloc_growth": 3 * 1024 * 1024}])
    rows = {(row.adapter, row.path): row for row in table.ordered()}
    kafka = rows["kafka", "RSS over 10 (Kafka plateau)"]
    assert (kafka.rss, kafka.traced, kafka.lost) == (2 * 1024 * 1024, None, None)
    assert kafka.failures == ["memory: RSS grew 2,048 KiB, the goal is under 2,048 KiB"]
    amqp = rows["amqp", "@amqp.consumer"]
    assert (amqp.rss, amqp.traced, amqp.lost) == (2 * 1024 * 1024 - 1, 3 * 1024 * 1024, 1)
    assert amqp.failures == ["memory: tracemalloc grew 3,072 KiB, the goal is under 2,048 KiB"]
