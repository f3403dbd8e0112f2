"""What a Kafka producer holds for records sent and not yet acknowledged, with busprop and without.

A busprop send keeps, until the broker answers, what reporting a failure then needs: the send's
isolation scope and its trace values, or its span. Sentry's hand-written recipe keeps nothing.
This script sends a warm-up, then ``--records`` records from a producer that sends nothing until
flushed (so every one of them is in flight, whatever the broker's timing), each from a head of
its own (the worst case: the sends of one request share its scopes), and reads Python's
small-object allocator (bytes in live blocks, after ``gc.collect()``) before the flush and after
it, for busprop and for the recipe, each in a fresh process. Heads are in thirds (sampled,
unsampled, untraced, as in ``bench/memory.py``), or ``--heads`` of one kind each. It explains the
part of the Kafka RSS plateau (docs/proof.md) that is a high-water mark.

Run: ``python bench/in_flight.py [--records 500] [--heads mixed,sampled,unsampled,untraced]``
(Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` or an embedded Tansu).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import ROOT, brokers, init_sentry
from memory import kafka_sender, python_allocator

VARIANTS = ("busprop", "recipe")
#: Heads in thirds (``bench/memory.py``'s mix), or every record of one kind.
MIXED = "mixed"
HEADS = (MIXED, "sampled", "unsampled", "untraced")


def measure(variant: str, records: int, heads: str) -> dict[str, int | str]:
    init_sentry()
    only = None if heads == MIXED else heads
    send, raw, _ = kafka_sender(recipe=variant == "recipe", hold=True, only=only)
    for index in range(2_000):
        send(index)
    raw.flush()
    gc.collect()
    before = python_allocator()["python_blocks"]
    for index in range(records):
        send(index)
    gc.collect()
    in_flight = python_allocator()["python_blocks"] - before
    raw.flush()
    gc.collect()
    flushed = python_allocator()["python_blocks"] - before
    return {
        "variant": variant,
        "heads": heads,
        "records": records,
        "in_flight": in_flight,
        "after_flush": flushed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    parser.add_argument("--heads", default=MIXED, help=f"comma-separated, of {', '.join(HEADS)}")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    heads = options.heads.split(",")
    if unknown := set(heads) - set(HEADS):
        parser.error(f"--heads: unknown {', '.join(sorted(unknown))}")
    if options.variant:
        print(json.dumps(measure(options.variant, options.records, heads[0])))
        os._exit(0)  # kafka-python's threads need no orderly shutdown
    print(
        f"| {options.records:,} records sent, not flushed | heads | Python objects alive | per record | after the flush |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    rows = []
    with brokers.kafka_bootstrap_servers() as bootstrap:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        for kind in heads:
            for variant in VARIANTS:
                command = [
                    *(sys.executable, __file__, "--variant", variant),
                    *("--records", str(options.records), "--heads", kind),
                ]
                done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"| {variant} | {kind} | {row['in_flight'] / 1024:+,.0f} KiB | "
                    f"{row['in_flight'] / options.records:+,.0f} B | {row['after_flush'] / 1024:+,.0f} KiB |"
                )
    if options.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
