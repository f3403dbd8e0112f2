"""Where each microsecond of a traced message goes, per adapter: the client library, busprop,
sentry-sdk or the rest (the standard library, asyncio, the benchmark's own loop), unsampled and
sampled.

Each adapter's hot path runs as its benchmark runs it (bench/bench_*.py, imported: the same
producer and consumer loops, the same brokers), with busprop at ``traces_sample_rate`` 0.0 (an
unsampled head; Kafka records and core calls each of a trace of their own) or 1.0 (sampled). The
benchmark's clock is swapped for one of this module's, twice: the first run times the main
thread's CPU per message (the figure of the table), the second profiles the same spans with
pyinstrument's Profiler (wall-clock samples of the main thread, ``async_mode`` disabled so that
every task of an event loop is seen). Each sample's time goes to the file of the frame it was
spent in; a C function's to the Python code that called it, except waiting (``select``,
``epoll.poll``, ``lock.acquire``, ``sleep``), which is left out, and confluent-kafka's own C
methods, which are the client's. The profile's shares then split the timed run's CPU: the
profiler slows every Python call about threefold, so its absolute figures (the "profiled" column)
overstate Python-heavy code, and the shares lean the same way. Other threads (kafka-python's
sender, librdkafka's) are in neither; the process's CPU per message is given for comparison.
confluent-kafka's C methods called through busprop's patch do not always show in the profile;
that time then counts for the busprop frame calling them (bench_confluent: about 1-2 µs a call).

Each adapter and mode runs in a fresh process (busprop's integrations patch clients
process-wide). Usage: ``python bench/attribution.py [--messages N] [--path NAME] [--mode MODE]``;
paths: kafka-python, confluent-kafka, aiokafka, aio-pika, pika, websockets, core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pyinstrument import Profiler  # noqa: E402
from pyinstrument.frame import Frame  # noqa: E402

from busprop.demo import brokers  # noqa: E402

INTERVAL = 0.0002  # seconds between samples
BUSPROP = str(ROOT / "busprop") + os.sep
CLIENT_PACKAGES = (
    "kafka",
    "confluent_kafka",
    "aiokafka",
    "aio_pika",
    "aiormq",
    "pamqp",
    "pika",
    "websockets",
)
#: C functions of a client's extension module (confluent-kafka's ``cimpl``): the client's time
#: wherever they are called from. Other C functions count for the Python code that calls them.
CLIENT_BUILTINS = ("Producer.", "Consumer.", "Message.", "TopicPartition.")
WAITING = {"select", "poll.poll", "epoll.poll", "kqueue.control", "lock.acquire", "RLock.acquire", "sleep"}
CATEGORIES = ("client", "busprop", "sentry-sdk", "other")
MODES = ("unsampled", "sampled")


# --- the benchmark's clock, timing or profiling ------------------------------------------------

PHASES: list[Phase] = []
PROFILING = False  # the first run of a path times it, the second profiles it


class SpanProfiler(Profiler):
    """pyinstrument's Profiler kept running across a stopwatch's spans, dropping the samples taken
    between them (``paused``): stopping and starting it around every short span (one ``poll()``)
    would lose each span's tail, since a sample is taken only once an interval has passed. It
    overrides the sampler's callback of pyinstrument 5."""

    paused = False

    def _sampler_saw_call_stack(
        self, call_stack: Any, time_since_last_sample: float, async_state: Any
    ) -> None:
        if not self.paused:
            super()._sampler_saw_call_stack(call_stack, time_since_last_sample, async_state)


class Phase:
    """Stands in for a benchmark's stopwatch: sums the main thread's and the process's CPU time
    from each ``start()`` to ``stop()`` (a ``start()`` again restarts the span), and profiles the
    same spans when ``PROFILING``."""

    def __init__(self) -> None:
        finish_profiles()  # the phase before is over
        PHASES.append(self)
        self.thread_seconds = self.process_seconds = 0.0
        self.profiler = SpanProfiler(interval=INTERVAL, async_mode="disabled") if PROFILING else None
        self._started: tuple[float, float] | None = None

    @property
    def seconds(self) -> float:  # what bench_confluent reads
        return self.thread_seconds

    def start(self) -> None:
        if self.profiler is not None:
            if not self.profiler.is_running:
                self.profiler.start()
            self.profiler.paused = False
        self._started = (time.thread_time(), time.process_time())

    def stop(self) -> tuple[float, float]:
        assert self._started is not None
        thread, process = self._started
        self.thread_seconds += time.thread_time() - thread
        self.process_seconds += time.process_time() - process
        if self.profiler is not None:
            self.profiler.paused = True
        return (0.0, 0.0)


def finish_profiles() -> None:
    for phase in PHASES:
        if phase.profiler is not None and phase.profiler.is_running:
            phase.profiler.stop()


class ProfiledClock(Phase):
    """Stands in for a benchmark's clock (made when the timing starts, ``stop()`` when it ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.start()


# --- each adapter's hot path, as its benchmark runs it ------------------------------------------


def kafka_python(mode: str, count: int, bootstrap: str) -> list[str]:
    import bench_kafka
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic = bench_kafka.new_topic(admin)
    sampled = mode == "sampled"
    per_trace = bench_kafka.PER_REQUEST if sampled else 1
    bench_kafka.fill(bootstrap, topic, count, sampled=sampled, per_trace=per_trace)
    bench_kafka.Clock = ProfiledClock  # type: ignore[misc,assignment]
    rate = 1.0 if sampled else 0.0
    bench_kafka.produce_once(bootstrap, admin, count, bench_kafka.send_bare, rate)
    bench_kafka.consume(bootstrap, topic, count, bench_kafka.iterate_traced, 1.0)
    admin.close()
    return ["produce (traced_producer send + flush)", "consume (traced_consumer iteration)"]


def confluent(mode: str, count: int, bootstrap: str) -> list[str]:
    import bench_confluent

    bench_confluent.Stopwatch = Phase  # type: ignore[misc,assignment]
    topic = bench_confluent.create_topic(bootstrap)
    bench_confluent.run_scenario(f"busprop-{mode}", bootstrap, topic, count)
    return ["produce (produce() calls)", "consume (poll() + loop body)"]


def aiokafka(mode: str, count: int, bootstrap: str) -> list[str]:
    import bench_aiokafka

    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    bench_aiokafka.Clock = ProfiledClock  # type: ignore[attr-defined,assignment]
    bench_aiokafka.run_scenario("busprop", 1.0 if mode == "sampled" else 0.0, count)
    return ["produce (await send() + flush)", "consume (async for)"]


def aio_pika(mode: str, count: int, bootstrap: str) -> list[str]:
    import bench_amqp

    bench_amqp.timer = lambda: ProfiledClock().stop
    asyncio.run(bench_amqp.run_variant(brokers.amqp_url(), 1.0 if mode == "sampled" else 0.0, True, count))
    return ["publish (traced_exchange, confirms)", "consume (@consumer callback)"]


def pika(mode: str, count: int, bootstrap: str) -> list[str]:
    import bench_pika

    bench_pika.Clock = ProfiledClock  # type: ignore[attr-defined,assignment]
    bench_pika.run("busprop", mode == "sampled", count)
    return ["publish (basic_publish, confirms)", "consume (basic_consume callback)"]


def websockets(mode: str, count: int, bootstrap: str) -> list[str]:
    import bench_websockets

    round_trips = bench_websockets.echo_round_trips

    async def profiled(ws: Any, count: int) -> None:
        clock = ProfiledClock()
        await round_trips(ws, count)
        clock.stop()

    bench_websockets.echo_round_trips = profiled  # type: ignore[assignment]
    bench_websockets.init(1.0 if mode == "sampled" else 0.0)
    try:
        asyncio.run(bench_websockets.measure(True, 1, count))
    finally:
        bench_websockets.echo_round_trips = round_trips
    return ["send/recv (echo round trip, both ends traced)"]


def core(mode: str, count: int, bootstrap: str) -> list[str]:
    import bench_core
    import bench_kafka

    bench_kafka.init_sentry(1.0)
    headers = bench_core.SAMPLED if mode == "sampled" else bench_core.distinct_traces(bench_core.UNSAMPLED)
    work = bench_core.busprop_continue(headers)
    clock = ProfiledClock()
    for _ in range(count):
        work()
    clock.stop()
    return ["busprop.continue_trace alone" + (" (a new trace each)" if mode == "unsampled" else "")]


PATHS: dict[str, Callable[[str, int, str], list[str]]] = {
    "kafka-python": kafka_python,
    "confluent-kafka": confluent,
    "aiokafka": aiokafka,
    "aio-pika": aio_pika,
    "pika": pika,
    "websockets": websockets,
    "core": core,
}
KAFKA_PATHS = ("kafka-python", "confluent-kafka", "aiokafka")


# --- attribution --------------------------------------------------------------------------------


def category(file_path: str) -> str:
    if file_path.startswith(BUSPROP):
        return "busprop"
    if f"{os.sep}sentry_sdk{os.sep}" in file_path:
        return "sentry-sdk"
    if any(f"site-packages{os.sep}{package}{os.sep}" in file_path for package in CLIENT_PACKAGES):
        return "client"
    return "other"


def attribute(root: Frame | None) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per category (and ``waiting``), and per busprop function, of a frame tree."""
    seconds: defaultdict[str, float] = defaultdict(float)
    functions: defaultdict[str, float] = defaultdict(float)
    stack: list[tuple[Frame, str, str]] = [(root, "other", "")] if root is not None else []
    while stack:
        frame, caller_category, caller_function = stack.pop()
        path = frame.file_path or ""
        if frame.is_synthetic:
            continue  # its time is in its parent's total_self_time
        if path == "<built-in>":
            where = "waiting" if frame.function in WAITING else caller_category
            if frame.function.startswith(CLIENT_BUILTINS):
                where = "client"
            function = caller_function
        else:
            where = category(path)
            function = f"{Path(path).stem}.{frame.function}" if where == "busprop" else ""
        seconds[where] += frame.total_self_time
        if where == "busprop":
            functions[function] += frame.total_self_time
        stack.extend((child, where, function) for child in frame.children)
    return seconds, functions


def heaviest(seconds: dict[str, float], count: int) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda item: item[1], reverse=True)[:count]


def profile_in_process(path: str, mode: str, count: int, bootstrap: str) -> list[dict[str, Any]]:
    """Run the path twice: timed, then profiled; the profile's shares apply to the timed run."""
    global PROFILING
    phases = PATHS[path](mode, count, bootstrap)
    timed = PHASES[:]
    PHASES.clear()
    PROFILING = True
    PATHS[path](mode, count, bootstrap)
    finish_profiles()
    rows = []
    for phase, timing, profiled in zip(phases, timed, PHASES, strict=True):
        assert profiled.profiler is not None and profiled.profiler.last_session is not None
        seconds, functions = attribute(profiled.profiler.last_session.root_frame())
        working = sum(seconds.get(name, 0.0) for name in CATEGORIES)
        scale = timing.thread_seconds / working / count * 1e6 if working else 0.0
        rows.append(
            {
                "path": f"{path} {phase}",
                "mode": mode,
                "thread_cpu_us": timing.thread_seconds / count * 1e6,
                "process_cpu_us": timing.process_seconds / count * 1e6,
                "us": {name: seconds.get(name, 0.0) * scale for name in CATEGORIES},
                "profiled_us": working / count * 1e6,
                "waiting_us": seconds.get("waiting", 0.0) / count * 1e6,
                "busprop_top": [(name, value * scale) for name, value in heaviest(functions, 5)],
            }
        )
    return rows


def profile_in_child(path: str, mode: str, count: int, bootstrap: str) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--child", path, mode, bootstrap, "--messages", str(count)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{path} {mode} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| path | mode | main thread CPU µs/msg | client | busprop | sentry-sdk | other "
        "| process CPU µs/msg | profiled µs/msg (waiting) | busprop's top functions (µs/msg) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        figures, total = row["us"], row["thread_cpu_us"]
        shares = [
            f"{figures[name]:.1f} ({figures[name] / total:.0%})" if total else "-" for name in CATEGORIES
        ]
        top = ", ".join(f"{name} {value:.1f}" for name, value in row["busprop_top"]) or "-"
        lines.append(
            f"| {row['path']} | {row['mode']} | {total:.1f} | {' | '.join(shares)} "
            f"| {row['process_cpu_us']:.1f} | {row['profiled_us']:.0f} ({row['waiting_us']:.0f}) | {top} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per path and mode")
    parser.add_argument("--path", choices=sorted(PATHS), action="append", help="only this path (repeatable)")
    parser.add_argument("--mode", choices=MODES, action="append", help="only this mode (repeatable)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        path, mode, bootstrap = arguments.child
        print(json.dumps(profile_in_process(path, mode, arguments.messages, bootstrap)))
        return
    paths = [path for path in PATHS if path in (arguments.path or PATHS)]
    modes = arguments.mode or list(MODES)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    kafka = any(path in KAFKA_PATHS for path in paths)
    with brokers.kafka_bootstrap_servers() if kafka else nullcontext("") as bootstrap:
        for path in paths:
            for mode in modes:
                rows.extend(profile_in_child(path, mode, arguments.messages, bootstrap or "-"))
                print(f"{path} {mode}: done", file=sys.stderr, flush=True)
    from goals import commit

    print(
        f"busprop {commit()}: pyinstrument profiles, {arguments.messages:,} messages per path and mode, "
        f"{(time.monotonic() - started) / 60:.1f} minutes\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
