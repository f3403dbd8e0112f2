"""Every performance goal of busprop in one table: each ratio, per client, against its goal, with
the spread of the rounds, measured in one run on one Kafka broker and one RabbitMQ.

The measuring is the benchmarks' own (bench/bench_*.py, imported): kafka-python, aio-pika and
WebSockets run in this process, confluent-kafka, aiokafka and pika one fresh process per scenario
(their instrumentations patch classes process-wide). Every round runs every scenario of every
client once, interleaved, so that other load on the machine weighs on all of them alike. A ratio
is computed within each round (a scenario against its baseline of the same round); the table gives
the median of the rounds and their minimum and maximum.

The figures, as the scripts measure them: this process's CPU time per message (kafka-python,
aio-pika, aiokafka, pika), wall time of the calls (confluent-kafka: librdkafka works in its own
threads, so the Python around ``produce()`` and ``poll()`` is timed), round trips per second
(WebSockets). Speed ratios are baseline cost / busprop's cost (1.0: no cost). Overhead ratios are
busprop's excess over the floor (the static trace headers; bare pika's for pika's floor is the
static-header run) divided by OpenTelemetry's (unsampled, tracing off) or by the sentry-sdk
recipe's (sampled) excess over the same floor.

Beside each goal, the same ratio with sentry-sdk alone in busprop's place (``bench/sdk_alone.py``:
what busprop asks of sentry-sdk per message, written by hand around the bare client, no busprop
code), timed in the same rounds: a goal that sentry-sdk alone misses too is missed by that SDK
work done message by message with no busprop code at all; busprop's own cost is its median
figures' excess over sentry-sdk alone's (negative where busprop gets the same done for less).

Usage: python bench/goals.py [--rounds 7] [--records N] [--messages N] [--only CLIENT] [--json PATH]
(about ten minutes on two cores at the defaults). The broker is KAFKA_BOOTSTRAP_SERVERS, else an
embedded one; RabbitMQ is AMQP_URL (default 127.0.0.1:5672).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_aiokafka  # noqa: E402
import bench_amqp  # noqa: E402
import bench_confluent  # noqa: E402
import bench_kafka  # noqa: E402
import bench_pika  # noqa: E402
import bench_websockets  # noqa: E402
from kafka.admin import KafkaAdminClient  # noqa: E402

from busprop.demo import brokers  # noqa: E402

#: One round's figures of one client: name -> cost per message (µs, or seconds per round trip).
Figures = dict[str, float]


# --- one round of each client ------------------------------------------------------------------


def kafka_python(bootstrap: str, admin: KafkaAdminClient, topic: str, records: int) -> Figures:
    """CPU µs per record: producing (floor, tracing off, unsampled transaction) and consuming
    records of distinct unsampled traces (bare iteration, ``traced_consumer``); busprop's
    scenarios also as sentry-sdk alone ("sdk ...")."""
    produce = functools.partial(bench_kafka.produce_once, bootstrap, admin, records)
    consume = functools.partial(bench_kafka.consume, bootstrap, topic, records)
    timings = {
        "floor": produce(bench_kafka.send_static_headers, bench_kafka.UNSET),
        "off": produce(bench_kafka.send_bare, None),
        "sdk off": produce(bench_kafka.send_sdk_alone, None, traced=False),
        "unsampled": produce(bench_kafka.send_bare, 0.0),
        "sdk unsampled": produce(bench_kafka.send_sdk_alone, 0.0, traced=False),
        "bare iteration": consume(bench_kafka.iterate_bare, bench_kafka.UNSET),
        "traced_consumer": consume(bench_kafka.iterate_traced, 1.0),
        "sdk iteration": consume(bench_kafka.iterate_sdk_alone, 1.0),
    }
    return {name: timing.cpu / records * 1e6 for name, timing in timings.items()}


def aio_pika(url: str, messages: int) -> Figures:
    """CPU µs per message, publish plus consume: bare, and busprop with an unsampled head."""
    figures = {}
    for name, rate, traced, alone in (
        ("bare", bench_amqp.UNSET, False, False),
        ("unsampled", 0.0, True, False),
        ("sdk unsampled", 0.0, False, True),
    ):
        publishing, consuming = asyncio.run(
            bench_amqp.run_variant(url, rate, traced, messages, sdk_alone=alone)
        )
        figures[name] = (publishing[1] + consuming[1]) / messages * 1e6
    return figures


def websockets(round_trips: int) -> Figures:
    """Seconds per echo round trip, bare and both ends traced at ``traces_sample_rate=0.0``, by
    busprop and by sentry-sdk alone."""
    figures = {}
    for connections in (1, bench_websockets.CONCURRENT):
        for name, traced, rate, alone in (
            ("bare", False, None, False),
            ("unsampled", True, 0.0, False),
            ("sdk", False, 0.0, True),
        ):
            bench_websockets.init(rate)
            measuring = bench_websockets.measure(traced, connections, round_trips, sdk_alone=alone)
            figures[f"{name} x{connections}"] = 1 / asyncio.run(measuring)
    return figures


PIKA: dict[str, tuple[str, bool | None]] = {
    "floor": ("static", False),
    "bare": ("bare", False),
    "busprop unsampled": ("busprop", False),
    "busprop off": ("busprop", None),
    "busprop sampled": ("busprop", True),
    "otel unsampled": ("otel", False),
    "recipe sampled": ("recipe", True),
    "sdk unsampled": ("sdk-alone", False),
    "sdk off": ("sdk-alone", None),
    "sdk sampled": ("sdk-alone", True),
}


def pika(messages: int) -> Figures:
    """CPU µs per message of each leg, a fresh process per scenario."""
    figures = {}
    for name, (variant, sampled) in PIKA.items():
        result = bench_pika.run_scenario(variant, sampled, messages)
        for leg in ("produce", "consume"):
            figures[f"{name} {leg}"] = result[leg][1] / messages * 1e6
    return figures


CONFLUENT = {
    "floor": "floor",
    "busprop unsampled": "busprop-unsampled",
    "busprop off": "busprop-off",
    "busprop sampled": "busprop-sampled",
    "otel unsampled": "otel-unsampled",
    "recipe sampled": "recipe-sampled",
    "sdk unsampled": "sdk-alone-unsampled",
    "sdk off": "sdk-alone-off",
    "sdk sampled": "sdk-alone-sampled",
}


def confluent(bootstrap: str, records: int) -> Figures:
    """Wall µs per record of the ``produce()`` calls and of ``poll()`` plus the loop body."""
    figures = {}
    for name, scenario in CONFLUENT.items():
        result = bench_confluent.run_in_process(scenario, bootstrap, records)
        for leg in ("produce", "consume"):
            figures[f"{name} {leg}"] = result[f"{leg}_us"]
    return figures


AIOKAFKA = {
    "floor": "floor (static trace headers)",
    "busprop unsampled": "busprop, unsampled (0.0)",
    "busprop off": "busprop, tracing off (None)",
    "busprop sampled": "busprop, sampled (1.0)",
    "otel unsampled": "OpenTelemetry, unsampled",
    "recipe sampled": "sentry-sdk recipe, sampled",
    "sdk unsampled": "sentry-sdk alone, unsampled (0.0)",
    "sdk off": "sentry-sdk alone, tracing off (None)",
    "sdk sampled": "sentry-sdk alone, sampled (1.0)",
}


def aiokafka(bootstrap: str, records: int) -> Figures:
    """CPU µs per record of each leg, a fresh process per scenario."""
    indexes = {name: index for index, (name, _, _) in enumerate(bench_aiokafka.VARIANTS)}
    figures = {}
    for name, variant in AIOKAFKA.items():
        result = bench_aiokafka.scenario(bootstrap, indexes[variant], records)
        for leg in ("produce", "consume"):
            figures[f"{name} {leg}"] = result[leg][1] / records * 1e6
    return figures


# --- the goals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    client: str
    ratio: str
    goal: str
    at_least: float | None  # the ratio must be >= this, or
    at_most: float | None  # <= this
    value: Callable[[Figures], float]  # the ratio of one round
    detail: Callable[[dict[str, float]], str]  # from the median figures
    #: busprop's figures the ratio reads -> the same scenario as sentry-sdk alone (bench/sdk_alone.py)
    alone: dict[str, str]
    unit: str = "µs"  # of the figures: µs per message, or "rt": seconds per round trip

    def met(self, ratio: float) -> bool:
        if self.at_least is not None:
            return ratio >= self.at_least
        return self.at_most is not None and ratio <= self.at_most

    def value_alone(self, figures: Figures) -> float:
        """The ratio of one round with sentry-sdk alone in busprop's place: what the SDK work
        busprop asks for gives by itself, with no busprop code."""
        return self.value({**figures, **{ours: figures[alone] for ours, alone in self.alone.items()}})

    def own(self, medians: dict[str, float]) -> float:
        """busprop's own cost per message: its figures' excess over sentry-sdk alone's (µs; for a
        throughput, the round trip's)."""
        excess = sum(medians[ours] - medians[alone] for ours, alone in self.alone.items())
        return excess * 1e6 if self.unit == "rt" else excess


def speed(client: str, ratio: str, base: str, ours: str, limit: float, unit: str, alone: str) -> Goal:
    """Baseline cost / busprop's cost, at least ``limit``."""
    return Goal(
        client,
        ratio,
        f">= {limit:g}x",
        limit,
        None,
        lambda f: f[base] / f[ours],
        lambda m: (
            f"{base} {scaled(m[base], unit)}, busprop {scaled(m[ours], unit)}, "
            f"sentry-sdk alone {scaled(m[alone], unit)}"
        ),
        {ours: alone},
        unit,
    )


def scaled(value: float, unit: str) -> str:
    return f"{1 / value:,.0f} round trips/s" if unit == "rt" else f"{value:.1f} µs"


def overhead(client: str, leg: str, mode: str, peer: str, limit: float) -> Goal:
    """busprop's excess over the floor / the peer's excess over the floor, at most ``limit``."""
    ours, theirs, floor = f"busprop {mode} {leg}", f"{peer} {leg}", f"floor {leg}"
    alone = f"sdk {mode} {leg}"
    peer_name = "OpenTelemetry" if peer.startswith("otel") else "sentry-sdk recipe"
    compared = "unsampled" if mode == "off" else mode
    return Goal(
        client,
        f"{leg}, {'tracing off' if mode == 'off' else mode}: busprop's overhead over the floor "
        f"/ {peer_name}'s ({compared}) ({MEASURE[client]})",
        f"<= {'1/3' if limit < 1 else '1'}",
        None,
        limit,
        lambda f: (f[ours] - f[floor]) / (f[theirs] - f[floor]),
        lambda m: (
            f"busprop {m[ours] - m[floor]:+.1f} µs, {peer_name} {m[theirs] - m[floor]:+.1f} µs, "
            f"sentry-sdk alone {m[alone] - m[floor]:+.1f} µs (floor {m[floor]:.1f} µs)"
        ),
        {ours: alone},
    )


MEASURE = {"pika": "CPU", "aiokafka": "CPU", "confluent-kafka": "wall time of the calls"}


def peer_goals(client: str) -> list[Goal]:
    return [
        overhead(client, leg, mode, peer, limit)
        for mode, peer, limit in (
            ("unsampled", "otel unsampled", 1 / 3),
            ("off", "otel unsampled", 1 / 3),
            ("sampled", "recipe sampled", 1.0),
        )
        for leg in ("produce", "consume")
    ]


GOALS: list[Goal] = [
    speed(
        "kafka-python",
        "produce, traces_sample_rate=None, vs the static-header floor (CPU)",
        "floor",
        "off",
        0.85,
        "µs",
        "sdk off",
    ),
    speed(
        "kafka-python",
        "produce in an unsampled transaction vs the floor (CPU)",
        "floor",
        "unsampled",
        0.85,
        "µs",
        "sdk unsampled",
    ),
    speed(
        "kafka-python",
        "consume records of distinct unsampled traces vs bare iteration (CPU)",
        "bare iteration",
        "traced_consumer",
        0.5,
        "µs",
        "sdk iteration",
    ),
    speed(
        "aio-pika",
        "publish + consume, unsampled head, vs bare (CPU)",
        "bare",
        "unsampled",
        0.85,
        "µs",
        "sdk unsampled",
    ),
    speed(
        "websockets",
        "echo, both ends traced, unsampled, vs bare, 1 connection (throughput)",
        "bare x1",
        "unsampled x1",
        0.7,
        "rt",
        "sdk x1",
    ),
    speed(
        "websockets",
        f"echo, both ends traced, unsampled, vs bare, {bench_websockets.CONCURRENT} connections (throughput)",
        f"bare x{bench_websockets.CONCURRENT}",
        f"unsampled x{bench_websockets.CONCURRENT}",
        0.7,
        "rt",
        f"sdk x{bench_websockets.CONCURRENT}",
    ),
    Goal(
        "pika",
        "publish + consume unsampled vs bare (CPU)",
        ">= 0.85x",
        0.85,
        None,
        lambda f: (
            (f["bare produce"] + f["bare consume"])
            / (f["busprop unsampled produce"] + f["busprop unsampled consume"])
        ),
        lambda m: (
            f"bare {m['bare produce'] + m['bare consume']:.1f} µs, busprop "
            f"{m['busprop unsampled produce'] + m['busprop unsampled consume']:.1f} µs, sentry-sdk alone "
            f"{m['sdk unsampled produce'] + m['sdk unsampled consume']:.1f} µs"
        ),
        {
            "busprop unsampled produce": "sdk unsampled produce",
            "busprop unsampled consume": "sdk unsampled consume",
        },
    ),
    *peer_goals("pika"),
    *peer_goals("confluent-kafka"),
    *peer_goals("aiokafka"),
]


# --- the run -----------------------------------------------------------------------------------


def run(rounds: int, records: int, messages: int, clients: list[str]) -> dict[str, list[Figures]]:
    """Every client's figures, one entry per round, the rounds interleaved across clients."""
    url = brokers.amqp_url()
    if {"aio-pika", "pika"} & set(clients) and not brokers.reachable(url):
        raise SystemExit(f"RabbitMQ is not reachable at AMQP_URL={url}")
    measured: dict[str, list[Figures]] = {client: [] for client in clients}
    with brokers.kafka_bootstrap_servers() as bootstrap:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        topic = bench_kafka.new_topic(admin)
        if "kafka-python" in clients:
            bench_kafka.fill(bootstrap, topic, records, sampled=False, per_trace=1)
        measures: dict[str, Callable[[], Figures]] = {
            "kafka-python": lambda: kafka_python(bootstrap, admin, topic, records),
            "aio-pika": lambda: aio_pika(url, messages),
            "websockets": lambda: websockets(messages),
            "pika": lambda: pika(messages),
            "confluent-kafka": lambda: confluent(bootstrap, records),
            "aiokafka": lambda: aiokafka(bootstrap, records),
        }
        warm_up(bootstrap, admin, url, clients)
        for round_number in range(1, rounds + 1):
            for client in clients:
                started = time.monotonic()
                measured[client].append(again_if_failed(client, measures[client]))
                elapsed = time.monotonic() - started
                print(f"round {round_number}/{rounds}: {client} {elapsed:.0f} s", file=sys.stderr, flush=True)
        admin.close()
    return measured


def again_if_failed(client: str, measure: Callable[[], Figures]) -> Figures:
    """One more try of a client's round that failed (a broker's hiccup on a busy machine), saying why."""
    try:
        return measure()
    except Exception as error:  # the second failure ends the run
        output = getattr(error, "stderr", None) or ""
        print(f"{client}: {error!r}, once more\n{output[-3000:]}", file=sys.stderr, flush=True)
        return measure()


def warm_up(bootstrap: str, admin: KafkaAdminClient, url: str, clients: list[str]) -> None:
    """Connections, imports and the brokers' caches, out of the first round (in-process clients;
    the others start a fresh process per scenario anyway)."""
    if "kafka-python" in clients:
        bench_kafka.produce_once(bootstrap, admin, 500, bench_kafka.send_bare, None)
    if "aio-pika" in clients:
        asyncio.run(bench_amqp.run_variant(url, 0.0, True, 200))
    if "websockets" in clients:
        websockets(100)


def summarise(measured: dict[str, list[Figures]]) -> list[dict[str, Any]]:
    rows = []
    for goal in GOALS:
        if goal.client not in measured:
            continue
        rounds = measured[goal.client]
        ratios = [goal.value(figures) for figures in rounds]
        median = statistics.median(ratios)
        alone = statistics.median(goal.value_alone(figures) for figures in rounds)
        medians = {name: statistics.median(figures[name] for figures in rounds) for name in rounds[0]}
        rows.append(
            {
                "client": goal.client,
                "ratio": goal.ratio,
                "goal": goal.goal,
                "median": median,
                "shown": shown(goal, median),
                "min": min(ratios),
                "max": max(ratios),
                "met": goal.met(median),
                "rounds": ratios,
                "sentry-sdk alone": alone,
                "sentry-sdk alone shown": shown(goal, alone),
                "met by sentry-sdk alone": goal.met(alone),
                "busprop's own µs": goal.own(medians),
                "medians behind it": goal.detail(medians),
            }
        )
    return rows


def shown(goal: Goal, ratio: float) -> str:
    """``ratio`` to two decimals, or three where two would read as the other side of the goal
    (0.849 is not 0.85)."""
    two = f"{ratio:.2f}"
    return two if goal.met(float(two)) == goal.met(ratio) else f"{ratio:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| bus / client | ratio | goal | median | min to max over rounds | met "
        "| sentry-sdk alone | busprop's own | median figures |",
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for row in rows:
        alone = f"{row['sentry-sdk alone shown']} ({'meets' if row['met by sentry-sdk alone'] else 'misses'})"
        own = row["busprop's own µs"]
        lines.append(
            f"| {row['client']} | {row['ratio']} | {row['goal']} | {row['shown']} "
            f"| {row['min']:.2f} to {row['max']:.2f} | {'yes' if row['met'] else '**no**'} "
            f"| {alone} | {own:+.1f} µs | {row['medians behind it']} |"
        )
    return "\n".join(lines)


def commit() -> str:
    """The commit measured, and whether busprop/ had uncommitted changes on top of it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    changed = subprocess.run(
        ["git", "status", "--porcelain", "busprop"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split("\n")
    edited = sorted(line[3:] for line in changed if line.strip())
    return (head.stdout.strip() or "unknown") + (f" + uncommitted {', '.join(edited)}" if edited else "")


CLIENTS = ["kafka-python", "aio-pika", "websockets", "pika", "confluent-kafka", "aiokafka"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--records", type=int, default=6000, help="records per Kafka scenario")
    parser.add_argument(
        "--messages", type=int, default=2000, help="messages per AMQP scenario, WebSocket round trips"
    )
    parser.add_argument("--only", choices=CLIENTS, action="append", help="run only this client (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the table's rows, with every round, here")
    arguments = parser.parse_args()
    clients = [client for client in CLIENTS if client in (arguments.only or CLIENTS)]
    started = time.monotonic()
    measured = run(arguments.rounds, arguments.records, arguments.messages, clients)
    rows = summarise(measured)
    minutes = (time.monotonic() - started) / 60
    print(
        f"busprop {commit()}: medians of {arguments.rounds} interleaved rounds, one run, one broker each; "
        f"{arguments.records:,} Kafka records, {arguments.messages:,} AMQP messages and WebSocket round "
        f"trips per scenario; {minutes:.1f} minutes\n"
    )
    print(table(rows))
    if arguments.json:
        document = {
            "commit": commit(),
            "rounds": arguments.rounds,
            "records": arguments.records,
            "messages": arguments.messages,
            "rows": rows,
            "figures": measured,
        }
        arguments.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
