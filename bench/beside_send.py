"""What Python code costs beside kafka-python's ``send()``, against what it costs alone.

The kafka-python produce goal compares busprop's send with the static-header floor in one loop
of real sends. busprop's own send path costs about 5 µs alone (a stub producer, hot caches), but
adds 15 to 25 µs per record of the main thread's CPU in that loop. This script measures whether
that gap is busprop's or the loop's: in the same loop of real sends (the floor: two static trace
headers), it adds per record busprop's send path on a stub producer (a kafka-python ``Future`` returned,
nothing sent), or sentry-sdk's own ``get_traceparent()`` and ``get_baggage()`` (what its recipe
for custom instrumentation calls per message), or a plain arithmetic loop of a few microseconds,
and runs each of them alone. The amplification is (floor + work - floor) / (work alone): 1.0 when the
work costs beside a send what it costs alone.

Figures are the main thread's CPU time per record (``time.thread_time``; kafka-python's sender
thread excluded) and the whole process's, medians of interleaved rounds, one broker.

Usage: python bench/beside_send.py [--records 6000] [--rounds 5] [--cpus 0,1]
(``--cpus 0`` pins the process, and the embedded broker it starts, to one core.) The broker is
KAFKA_BOOTSTRAP_SERVERS, else an embedded one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_kafka  # noqa: E402
import sentry_sdk  # noqa: E402
from kafka import KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient  # noqa: E402
from kafka.future import Future  # noqa: E402

import busprop.kafka  # noqa: E402
from busprop.demo import brokers  # noqa: E402
from busprop.kafka import _core, _kafka_python  # noqa: E402

Send = Callable[[Any, str], None]


def stub_send(*_args: Any, **_kwargs: Any) -> Future:
    """A producer's ``send`` that sends nothing: busprop's path around it is what runs."""
    return Future()


def busprop_path(_producer: Any, topic: str) -> None:
    _core.traced_produce(_kafka_python.CLIENT, stub_send, (topic, bench_kafka.VALUE), {})


def sdk_headers(_producer: Any, _topic: str) -> None:
    """The two headers as sentry-sdk's own API gives them (its recipe for custom instrumentation)."""
    [
        ("sentry-trace", (sentry_sdk.get_traceparent() or "").encode()),
        ("baggage", (sentry_sdk.get_baggage() or "").encode()),
    ]


def plain_loop(_producer: Any, _topic: str) -> None:
    total = 0
    for number in range(150):
        total += number


def floor(producer: Any, topic: str) -> None:
    bench_kafka.send_static_headers(producer, topic)


def floor_and(work: Send) -> Send:
    def send(producer: Any, topic: str) -> None:
        floor(producer, topic)
        work(producer, topic)

    return send


#: name: (per-record function, traces_sample_rate, whether the producer is busprop's).
SCENARIOS: dict[str, tuple[Send, object, bool]] = {
    "floor (static trace headers)": (floor, None, False),
    "busprop, traces_sample_rate=None": (bench_kafka.send_bare, None, True),
    "busprop, unsampled transaction": (bench_kafka.send_bare, 0.0, True),
    "floor + busprop's path on a stub": (floor_and(busprop_path), None, False),
    "busprop's path on a stub, alone": (busprop_path, None, False),
    "floor + sentry-sdk's get_traceparent() and get_baggage()": (floor_and(sdk_headers), None, False),
    "sentry-sdk's get_traceparent() and get_baggage(), alone": (sdk_headers, None, False),
    "floor + plain loop": (floor_and(plain_loop), None, False),
    "plain loop, alone": (plain_loop, None, False),
}


def run(bootstrap: str, admin: KafkaAdminClient, records: int, scenario: str) -> tuple[float, float]:
    """Main-thread and process CPU µs per record of one scenario."""
    send, rate, traced = SCENARIOS[scenario]
    bench_kafka.init_sentry(rate)
    plain = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    producer = busprop.kafka.traced_producer(plain) if traced else plain
    topic = bench_kafka.new_topic(admin)
    producer.send(topic, bench_kafka.VALUE).get(timeout=10)  # connection and metadata out of the clock
    process, thread = time.process_time(), time.thread_time()
    for first in range(0, records, bench_kafka.PER_REQUEST):
        with bench_kafka.request(rate):
            for _ in range(min(bench_kafka.PER_REQUEST, records - first)):
                send(producer, topic)
    thread = time.thread_time() - thread
    producer.flush()
    process = time.process_time() - process
    producer.close()
    return thread / records * 1e6, process / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpus", default="", help="pin to these cores, e.g. 0 (comma-separated)")
    options = parser.parse_args()
    if options.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in options.cpus.split(",")})
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in SCENARIOS}
    with brokers.kafka_bootstrap_servers() as bootstrap:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        for _ in range(options.rounds):
            for name in SCENARIOS:
                figures[name].append(run(bootstrap, admin, options.records, name))
        admin.close()
    thread = {name: statistics.median(main for main, _ in runs) for name, runs in figures.items()}
    cores = options.cpus or ",".join(map(str, sorted(os.sched_getaffinity(0))))
    print(
        f"{options.records:,} records per scenario, medians of {options.rounds} interleaved rounds, cores {cores}\n"
    )
    print("| per record | main thread CPU µs | process CPU µs |")
    print("| --- | ---: | ---: |")
    for name, runs in figures.items():
        print(f"| {name} | {thread[name]:.1f} | {statistics.median(whole for _, whole in runs):.1f} |")
    base = thread["floor (static trace headers)"]
    print()
    for work, beside, alone in (
        ("busprop's path", "floor + busprop's path on a stub", "busprop's path on a stub, alone"),
        (
            "sentry-sdk's two headers",
            "floor + sentry-sdk's get_traceparent() and get_baggage()",
            "sentry-sdk's get_traceparent() and get_baggage(), alone",
        ),
        ("plain loop", "floor + plain loop", "plain loop, alone"),
    ):
        added = thread[beside] - base
        print(
            f"{work}: {thread[alone]:.1f} µs alone, +{added:.1f} µs beside a send: "
            f"x{added / thread[alone]:.1f}"
        )


if __name__ == "__main__":
    main()
