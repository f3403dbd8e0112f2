"""What a Kafka producer holds for records sent and not yet acknowledged, with busprop and without.

A busprop send keeps, until the broker answers, what reporting a failure then needs: the send's
scopes and its span. Sentry's hand-written recipe keeps nothing. This script sends a warm-up, then
``--records`` records without flushing (heads in thirds: sampled, unsampled, untraced, as in
``bench/memory.py``) and reads Python's small-object allocator (bytes in live blocks, after
``gc.collect()``) before the flush and after it, for busprop and for the recipe, each in a fresh
process. It explains the part of the Kafka RSS plateau (docs/proof.md) that is a high-water mark.

Run: ``python bench/in_flight.py [--records 500]`` (Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` or an
embedded Tansu).
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


def measure(variant: str, records: int) -> dict[str, int | str]:
    init_sentry()
    send, raw, _ = kafka_sender(recipe=variant == "recipe")
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
    return {"variant": variant, "records": records, "in_flight": in_flight, "after_flush": flushed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.variant:
        print(json.dumps(measure(options.variant, options.records)))
        os._exit(0)  # kafka-python's threads need no orderly shutdown
    print(f"| Python objects alive, {options.records:,} records sent | before the flush | after it |")
    print("| --- | ---: | ---: |")
    rows = []
    with brokers.kafka_bootstrap_servers() as bootstrap:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--variant", variant, "--records", str(options.records)]
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(
                f"| {variant} | {rows[-1]['in_flight'] / 1024:+,.0f} KiB | {rows[-1]['after_flush'] / 1024:+,.0f} KiB |"
            )
    if options.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
