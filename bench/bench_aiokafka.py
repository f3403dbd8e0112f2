"""aiokafka producing and consuming: bare, the static-header floor, busprop, OpenTelemetry, the recipe.

The same workload for every variant, on the same broker, in one run: produce N records of about
100 bytes (``await producer.send()`` in requests of 100, each request a Sentry transaction or an
OpenTelemetry root span; then ``flush()``), then consume them with ``async for record in consumer``
(``assign()``, no group). Variants:

- ``bare``: no SDK; ``floor``: bare, each record sent with the two trace headers as static bytes
  (the least any header-based propagation costs);
- ``busprop``: ``KafkaIntegration`` on the unchanged code, ``traces_sample_rate`` 1.0 (sampled), 0.0
  (unsampled) and None (tracing off);
- ``otel``: OpenTelemetry's aiokafka instrumentation, ``ParentBased(ALWAYS_ON)`` / ``ALWAYS_OFF``, an
  SDK ``TracerProvider`` whose exporter drops spans, W3C propagators;
- ``recipe``: Sentry's "Instrument Queues" recipe written around the bare client (as in
  ``bench/bench_peers.py``), sampled and unsampled;
- ``sdk-alone``: the sentry-sdk work busprop asks for per record, written by hand around the bare
  client with no busprop code (``bench/sdk_alone.py``), at 1.0, 0.0 and None, so that what the SDK
  costs by itself reads beside busprop in the same run (busprop's own cost is the difference).

sentry-sdk gets a transport that drops envelopes. Each variant runs in a fresh process (the
instrumentations patch classes process-wide) once per round, the rounds interleaved so that other
load weighs on every variant alike; the table gives the median CPU time per record (this process's
CPU, aiokafka's own work included; the broker runs elsewhere), the overhead over bare and over the
floor, and how many loop bodies ran inside their producer's trace. CPU time is the steadier figure
on a shared machine.

Usage: python bench/bench_aiokafka.py [--records N] [--rounds R]   (default 5,000 records, 5 rounds).
The broker is KAFKA_BOOTSTRAP_SERVERS, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sdk_alone  # noqa: E402
from bench_peers import (  # noqa: E402
    Clock,
    covered,
    init_dropping,
    init_otel,
    payload,
    recipe_process,
    recipe_publish,
    request,
)

from busprop.demo import brokers  # noqa: E402

PER_REQUEST = 100
STATIC_HEADERS = [
    ("sentry-trace", b"771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"),
    (
        "baggage",
        b"sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sample_rand=0.5,sentry-environment=production,"
        b"sentry-public_key=public,sentry-transaction=checkout,sentry-sample_rate=1.0,sentry-sampled=true",
    ),
]
#: (name, variant, traces_sample_rate / sampled / ``bench/sdk_alone.py``'s mode) in the order of the table.
VARIANTS: list[tuple[str, str, Any]] = [
    ("bare", "bare", None),
    ("floor (static trace headers)", "floor", None),
    ("busprop, sampled (1.0)", "busprop", 1.0),
    ("busprop, unsampled (0.0)", "busprop", 0.0),
    ("busprop, tracing off (None)", "busprop", None),
    ("sentry-sdk alone, sampled (1.0)", "sdk-alone", "sampled"),
    ("sentry-sdk alone, unsampled (0.0)", "sdk-alone", "unsampled"),
    ("sentry-sdk alone, tracing off (None)", "sdk-alone", "off"),
    ("OpenTelemetry, sampled", "otel", True),
    ("OpenTelemetry, unsampled", "otel", False),
    ("sentry-sdk recipe, sampled", "recipe", 1.0),
    ("sentry-sdk recipe, unsampled", "recipe", 0.0),
]


def setup(variant: str, setting: Any) -> None:
    if variant == "busprop":
        import busprop.kafka

        init_dropping(setting, [busprop.kafka.KafkaIntegration()])
    elif variant == "recipe":
        init_dropping(setting)
    elif variant == "sdk-alone":
        sdk_alone.init(setting)
    elif variant == "otel":
        init_otel(setting)
        from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor

        AIOKafkaInstrumentor().instrument()


def trace_variant(variant: str) -> str:
    """How ``bench_peers`` reads the current trace (sentry-sdk's API for sdk-alone): floor and bare have none."""
    if variant == "sdk-alone":
        return "sentry-sdk"
    return "busprop" if variant == "busprop" else variant if variant in ("otel", "recipe") else "bare"


async def workload(variant: str, setting: Any, count: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    reader = trace_variant(variant)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    await producer.partitions_for(topic)  # connection and metadata off the clock
    clock = Clock()
    for first in range(0, count, PER_REQUEST):
        with request(reader):
            for _ in range(min(PER_REQUEST, count - first)):
                body = payload(reader)
                if variant == "floor":
                    await producer.send(topic, body, headers=list(STATIC_HEADERS))
                elif variant == "recipe":
                    with recipe_publish(topic, body) as headers:
                        await producer.send(
                            topic, body, headers=[(k, v.encode()) for k, v in headers.items()]
                        )
                elif variant == "sdk-alone":
                    with sdk_alone.publishing(topic, len(body), "kafka") as headers:
                        await producer.send(
                            topic, body, headers=[(k, v.encode()) for k, v in headers.items()]
                        )
                else:
                    await producer.send(topic, body)
    await producer.flush()
    produced = clock.stop()
    await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, max_poll_records=500)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.seek_to_beginning()
    await consumer.getmany(timeout_ms=1000, max_records=1)  # connection off the clock
    await consumer.seek_to_beginning()
    hits = seen = 0
    clock = Clock()
    async for record in consumer:  # the user's loop body
        if variant == "recipe":
            headers = {key: value.decode() for key, value in record.headers}
            with recipe_process(headers, topic, record.value, str(record.offset), record.timestamp / 1000):
                hits += covered(reader, record.value)
        elif variant == "sdk-alone":
            headers = {key: value.decode() for key, value in record.headers}
            data = (
                sdk_alone.kafka_data(
                    record.topic,
                    record.partition,
                    record.offset,
                    record.serialized_value_size,
                    record.timestamp,
                )
                if setting == "sampled"
                else None
            )
            with sdk_alone.processing(headers, topic, setting, data):
                hits += covered(reader, record.value)
        else:
            hits += covered(reader, record.value)
        seen += 1
        if seen == count:
            break
    consumed = clock.stop()
    await consumer.stop()
    return {"produce": produced, "consume": consumed, "covered": hits, "checked": seen}


def run_scenario(variant: str, setting: Any, count: int) -> dict[str, Any]:
    setup(variant, setting)
    return asyncio.run(workload(variant, setting, count))


def scenario(bootstrap: str, index: int, count: int) -> dict[str, Any]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    command = [sys.executable, __file__, "--scenario", str(index), str(count)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"scenario {VARIANTS[index][0]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report(results: dict[str, list[dict[str, Any]]], count: int, rounds: int) -> None:
    def median(name: str, leg: str) -> float:
        return statistics.median(run[leg][1] for run in results[name]) / count * 1e6

    print(
        f"\naiokafka {_version('aiokafka')}, {count:,} records of about 100 bytes, median of {rounds} rounds"
    )
    print("CPU us per record; overhead = variant - bare (- floor: variant - floor)\n")
    print("| variant | produce | over bare | over floor | consume | over bare | over floor | in trace |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    bare, floor = VARIANTS[0][0], VARIANTS[1][0]
    for name, _variant, _setting in VARIANTS:
        cells = []
        for leg in ("produce", "consume"):
            value = median(name, leg)
            cells += [
                f"{value:.1f}",
                f"{value - median(bare, leg):+.1f}",
                f"{value - median(floor, leg):+.1f}",
            ]
        last = results[name][-1]
        print(f"| {name} | {' | '.join(cells)} | {last['covered']}/{last['checked']} |")
    print("\ngoal: busprop's overhead over the floor <= 1/3 of OpenTelemetry's at equal sampling")
    for busprop_name, otel_name in (
        ("busprop, sampled (1.0)", "OpenTelemetry, sampled"),
        ("busprop, unsampled (0.0)", "OpenTelemetry, unsampled"),
        ("busprop, tracing off (None)", "OpenTelemetry, unsampled"),
    ):
        for leg in ("produce", "consume"):
            ours = median(busprop_name, leg) - median(floor, leg)
            theirs = median(otel_name, leg) - median(floor, leg)
            print(f"  {leg}, {busprop_name}: {ours:+.1f} vs {theirs:+.1f} us: {ours / theirs:.2f} of it")


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", nargs=2, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.scenario:
        index, count = map(int, arguments.scenario)
        _name, variant, setting = VARIANTS[index]
        print(json.dumps(run_scenario(variant, setting, count)))
        return
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in VARIANTS}
    with brokers.kafka_bootstrap_servers() as bootstrap:
        for round_number in range(arguments.rounds):
            for index, (name, _variant, _setting) in enumerate(VARIANTS):
                results[name].append(scenario(bootstrap, index, arguments.records))
            print(f"round {round_number + 1}/{arguments.rounds} done", file=sys.stderr)
    report(results, arguments.records, arguments.rounds)


if __name__ == "__main__":
    main()
