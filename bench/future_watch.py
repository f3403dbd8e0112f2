"""What watching an aiokafka send's outcome costs, and how much of it is asyncio's.

An ``AIOKafkaProducer.send()`` returns an ``asyncio.Future`` of the record's metadata; the only
public way to learn how the send ended without awaiting it is a done-callback on that future.
busprop adds one to every send (so that a failed delivery is reported in the send's trace). This
times, per future, a future resolved and its loop turned (bare), the same with a done-callback that
does nothing, and with busprop's watch as an unsampled send makes it (the aiokafka client's
callback, and the core's failure record, which the sends of one request's trace share), each the
best of R rounds of N batches of B futures in flight at a time, in one process.

Usage: python bench/future_watch.py [--batch B] [--batches N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from busprop.kafka._aiokafka import CLIENT  # noqa: E402
from busprop.kafka._core import _failure_record  # noqa: E402


def _nothing(_future: Any) -> None:
    pass


def _bare(_future: asyncio.Future[Any]) -> None:
    pass


def _noop_callback(future: asyncio.Future[Any]) -> None:
    future.add_done_callback(_nothing)


def _busprop_watch(future: asyncio.Future[Any]) -> None:
    # An unsampled send: nothing to describe, a failure to report, in the record its trace shares.
    CLIENT.watch_result(future, _failure_record(None))


def per_future(
    loop: asyncio.AbstractEventLoop, watch: Callable[[asyncio.Future[Any]], None], batch: int, batches: int
) -> float:
    """Nanoseconds per future: created, watched, resolved, its callbacks run by the loop, in
    batches of ``batch`` futures at a time (a producer's records in flight, about a batch's worth)."""
    started = time.perf_counter()
    for _ in range(batches):
        futures = [loop.create_future() for _ in range(batch)]
        for future in futures:
            watch(future)
        for future in futures:
            future.set_result(None)
        loop.run_until_complete(asyncio.sleep(0))
    return (time.perf_counter() - started) / (batch * batches) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=100, help="futures in flight at a time")
    parser.add_argument("--batches", type=int, default=1000, help="batches per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the best is reported")
    arguments = parser.parse_args()
    import sentry_sdk

    sentry_sdk.init(dsn="http://public@127.0.0.1/1", traces_sample_rate=0.0)
    loop = asyncio.new_event_loop()
    watches = {
        "bare": _bare,
        "a done-callback doing nothing": _noop_callback,
        "busprop's watch": _busprop_watch,
    }
    best = dict.fromkeys(watches, float("inf"))
    for _ in range(arguments.rounds):
        for name, watch in watches.items():
            best[name] = min(best[name], per_future(loop, watch, arguments.batch, arguments.batches))
    loop.close()
    futures = arguments.batch * arguments.batches
    print(f"best of {arguments.rounds} rounds of {futures:,} futures, {arguments.batch:,} at a time\n")
    print("| per future | ns | over bare |")
    print("| --- | ---: | ---: |")
    for name, figure in best.items():
        print(f"| {name} | {figure:,.0f} | {figure - best['bare']:+,.0f} |")


if __name__ == "__main__":
    main()
