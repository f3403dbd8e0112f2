"""Celery tasks from enqueue to completion: bare Celery, busprop, and sentry-sdk's CeleryIntegration.

Each variant runs in fresh processes (sentry-sdk sets its Celery integration up once per process):
a ``celery worker`` (solo pool) on Redis, and a producer process that enqueues N small tasks and
waits until the worker has run them all (each task increments a Redis counter); producer and worker
run side by side, so the slower of the two sets the pace, as in production. The clock runs from the first
enqueue to the last completion. Bare: no Sentry at all. Requests only: sentry-sdk with no Celery
tracing (the producer's transactions, nothing propagated). busprop: ``busprop.celery.install`` with
sentry-sdk's CeleryIntegration disabled. sentry-sdk: its CeleryIntegration alone. With Sentry, the
producer enqueues inside one transaction per task (as a web request would), the head sampled (every
task a transaction, the worst case) or unsampled; no auto-enabled integrations (no Redis spans),
and a transport that drops envelopes stands in for the network.
Two figures per variant: throughput (wall clock, noisy on a shared machine) and the CPU time producer
and worker spent per task (steady), each with its ratio to bare Celery (higher is better).
Run: ``python bench/bench_celery.py [--tasks N] [--repeats R]`` (default 300 tasks, one round; the
figures in docs/performance.md are for ``--tasks 2000 --repeats 2``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
#: (variant, traces_sample_rate): "requests only" is sentry-sdk with no Celery tracing at all (the
#: producer's transactions, nothing propagated), what an app using Sentry pays without either.
VARIANTS = [
    ("bare", None),
    ("requests only", 1.0),
    ("busprop", 1.0),
    ("sentry-sdk", 1.0),
    ("requests only", 0.0),
    ("busprop", 0.0),
    ("sentry-sdk", 0.0),
]


def setup(variant: str, rate: float | None, queue: str) -> Any:
    """The app of one variant, with Sentry and busprop set up as that variant says."""
    import sentry_sdk
    from celery import Celery
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.transport import Transport

    class DroppingTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            pass

    if variant != "bare":
        sentry_sdk.init(
            dsn="http://public@127.0.0.1/1",
            transport=DroppingTransport,
            traces_sample_rate=rate,
            auto_enabling_integrations=False,
            integrations=[CeleryIntegration()] if variant == "sentry-sdk" else [],
        )
    app = Celery("bench", broker=REDIS_URL, set_as_current=True)
    app.conf.update(
        task_default_queue=queue, task_ignore_result=True, broker_connection_retry_on_startup=True
    )
    if variant == "busprop":
        import busprop.celery

        busprop.celery.install(app)

    counter = f"{queue}:done"

    @app.task(name="bench.work")
    def work(order_id: int) -> None:
        app.backend_redis.incr(counter)

    import redis

    app.backend_redis = redis.Redis.from_url(REDIS_URL)
    app.counter = counter
    return app


def run_worker(variant: str, rate: float | None, queue: str) -> None:
    app = setup(variant, rate, queue)
    argv = ["worker", "-P", "solo", "-Q", queue, "-l", "ERROR", "-n", f"{queue}@%h", "--without-gossip"]
    app.worker_main([*argv, "--without-mingle", "--without-heartbeat", "--prefetch-multiplier", "16"])


def run_producer(variant: str, rate: float | None, queue: str, tasks: int, worker_pid: int) -> None:
    """Enqueue ``tasks`` tasks and wait until the worker has run them all; prints the seconds taken
    and the CPU seconds this producer and the worker spent meanwhile."""
    import sentry_sdk

    app = setup(variant, rate, queue)
    work = app.tasks["bench.work"]
    work.delay(-1)  # warm up: connections, and a worker that answers
    wait_for(app, 1)
    app.backend_redis.set(app.counter, 0)
    start, cpu_start = time.perf_counter(), time.process_time() + cpu_seconds(worker_pid)
    for order_id in range(tasks):
        if variant == "bare":
            work.delay(order_id)  # no Sentry at all
        else:
            with sentry_sdk.start_transaction(op="http.server", name="enqueue"):
                work.delay(order_id)
    wait_for(app, tasks)
    print(time.perf_counter() - start, time.process_time() + cpu_seconds(worker_pid) - cpu_start)
    app.backend_redis.delete(app.counter, queue)


def wait_for(app: Any, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while int(app.backend_redis.get(app.counter) or 0) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish in time")
        time.sleep(0.001)


def start_worker(variant: str, rate: float | None) -> tuple[subprocess.Popen[bytes], str]:
    queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, __file__, "--worker", variant, str(rate), queue]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), queue


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Figures:
    throughput: float  # tasks per second, enqueue to completion (wall clock)
    cpu_per_task: float  # producer + worker CPU microseconds per task


def measure(
    variant: str, rate: float | None, worker: subprocess.Popen[bytes], queue: str, tasks: int
) -> Figures:
    """One producer run (a fresh process) against the variant's worker."""
    output = subprocess.run(
        [sys.executable, __file__, "--producer", variant, str(rate), queue, str(tasks), str(worker.pid)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    elapsed, cpu = (float(value) for value in output.strip().splitlines()[-1].split())
    return Figures(tasks / elapsed, cpu / tasks * 1e6)


def compare(tasks: int, repeats: int) -> dict[tuple[str, float | None], Figures]:
    """Best figures of each variant over ``repeats`` interleaved rounds; one worker per variant."""
    kinds = dict.fromkeys(variant for variant, _ in VARIANTS)  # a worker samples as its parent says
    workers = {variant: start_worker(variant, None if variant == "bare" else 1.0) for variant in kinds}
    best: dict[tuple[str, float | None], Figures] = {}
    try:
        for _ in range(repeats):
            for variant, rate in VARIANTS:
                figures = measure(variant, rate, *workers[variant], tasks)
                previous = best.get((variant, rate), figures)
                best[(variant, rate)] = Figures(
                    max(previous.throughput, figures.throughput),
                    min(previous.cpu_per_task, figures.cpu_per_task),
                )
    finally:
        for process, _ in workers.values():
            process.terminate()
            process.wait(timeout=30)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--worker", nargs=3, metavar=("VARIANT", "RATE", "QUEUE"))
    parser.add_argument("--producer", nargs=5, metavar=("VARIANT", "RATE", "QUEUE", "TASKS", "WORKER_PID"))
    options = parser.parse_args()
    if options.worker:
        variant, rate, queue = options.worker
        run_worker(variant, None if rate == "None" else float(rate), queue)
        return
    if options.producer:
        variant, rate, queue, tasks, worker_pid = options.producer
        run_producer(variant, None if rate == "None" else float(rate), queue, int(tasks), int(worker_pid))
        return
    print(f"Celery on Redis: {options.tasks} tasks, enqueue to completion, best of {options.repeats}\n")
    best = compare(options.tasks, options.repeats)
    bare = best[("bare", None)]
    print(
        f"| {'variant':<30} | {'tasks/s':>7} | {'vs bare':>7} | {'CPU µs/task':>11} | {'CPU vs bare':>11} |"
    )
    print(f"| {'-' * 30} | {'-' * 7}:| {'-' * 7}:| {'-' * 11}:| {'-' * 11}:|")
    for (variant, rate), figures in best.items():
        label = variant if rate is None else f"{variant}, head {'sampled' if rate else 'unsampled'}"
        speed = figures.throughput / bare.throughput
        cost = bare.cpu_per_task / figures.cpu_per_task
        print(
            f"| {label:<30} | {figures.throughput:>7.0f} | {speed:>6.2f}x | {figures.cpu_per_task:>11.0f} | {cost:>10.2f}x |"
        )


if __name__ == "__main__":
    main()
