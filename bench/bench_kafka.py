"""Throughput of kafka-python producing and consuming, bare and with busprop, on a real broker.

Records are 100 bytes. Producing: ``send()`` N records then ``flush()``: bare; bare with the two
trace headers as static bytes (the floor of any header-based propagation); busprop's
``traced_producer`` with ``traces_sample_rate`` 1.0 (a publish span per record, 100 records per
request transaction), 0.0 (inside an unsampled transaction) and None (tracing disabled).
Consuming N records that carry trace headers: bare iteration; ``traced_consumer`` for records of a
sampled head (a transaction per record), of an unsampled head (``-0``) and with tracing disabled;
and ``poll()`` batches, bare and in batch mode (``process_batch``: one transaction per batch, a
span per record). Envelopes go to a transport that drops them, so the SDK's serialisation is
counted but no network. Each figure is the best of R rounds; ratios are against the bare runs of
the same invocation.

Usage: python bench/bench_kafka.py [--records N] [--rounds R]   (default 10,000 records, 3 rounds;
the issue's size is --records 50000). The broker is KAFKA_BOOTSTRAP_SERVERS, else an embedded one.
"""

from __future__ import annotations

import argparse
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import sdk_alone
import sentry_sdk
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import busprop.kafka
from busprop.demo import brokers
from busprop.testing import LOCAL_DSN

VALUE = b"x" * 100
PER_REQUEST = 100
STATIC_HEADERS = [
    ("sentry-trace", b"771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"),
    (
        "baggage",
        b"sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sample_rand=0.5,sentry-environment=production,"
        b"sentry-public_key=public,sentry-transaction=checkout,sentry-sample_rate=1.0,sentry-sampled=true",
    ),
]
UNSET = object()


class DroppingTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        pass


def init_sentry(rate: object) -> None:
    sentry_sdk.get_client().close()
    if rate is UNSET:
        sentry_sdk.init()  # no DSN: the SDK is inactive
        return
    sentry_sdk.init(
        dsn=LOCAL_DSN, transport=DroppingTransport, traces_sample_rate=rate, default_integrations=False
    )


def new_topic(admin: KafkaAdminClient) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, 1, 1)])
    return name


# --- producing -----------------------------------------------------------------------------------


class Timing(NamedTuple):
    wall: float  # seconds
    cpu: float  # seconds of this process's CPU (kafka-python's threads included; the broker not)


class Clock:
    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Timing:
        return Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def produce(
    bootstrap: str,
    topic: str,
    count: int,
    send: Callable[[Any, str], None],
    rate: object,
    traced: bool = True,
) -> Timing:
    """Seconds to send ``count`` records and flush, with ``send(producer, topic)`` per record
    (through ``traced_producer`` when the SDK is set up and ``traced``)."""
    init_sentry(rate)
    plain = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    producer = busprop.kafka.traced_producer(plain) if rate is not UNSET and traced else plain
    producer.send(topic, VALUE).get(timeout=10)  # connection and metadata out of the clock
    clock = Clock()
    for first in range(0, count, PER_REQUEST):
        with request(rate):
            for _ in range(min(PER_REQUEST, count - first)):
                send(producer, topic)
    producer.flush()
    elapsed = clock.stop()
    producer.close()
    return elapsed


def produce_once(
    bootstrap: str,
    admin: KafkaAdminClient,
    count: int,
    send: Callable[[Any, str], None],
    rate: object,
    traced: bool = True,
) -> Timing:
    return produce(bootstrap, new_topic(admin), count, send, rate, traced)


@contextmanager
def request(rate: object) -> Iterator[None]:
    """The request transaction an application would already be in (none with tracing disabled)."""
    if rate is UNSET or rate is None:
        yield
        return
    with sentry_sdk.start_transaction(name="request", sampled=rate == 1.0):
        yield


def send_bare(producer: Any, topic: str) -> None:
    producer.send(topic, VALUE)


def send_static_headers(producer: Any, topic: str) -> None:
    producer.send(topic, VALUE, headers=list(STATIC_HEADERS))


def send_sdk_alone(producer: Any, topic: str) -> None:
    """A bare producer's send with the trace headers sentry-sdk alone gives it (no busprop)."""
    with sdk_alone.publishing(topic, len(VALUE), "kafka") as headers:
        producer.send(topic, VALUE, headers=[(name, value.encode()) for name, value in headers.items()])


PRODUCE: list[tuple[str, Callable[[Any, str], None], object]] = [
    ("bare send()", send_bare, UNSET),
    ("static trace headers (floor)", send_static_headers, UNSET),
    ("busprop, traces_sample_rate=1.0", send_bare, 1.0),
    ("busprop, traces_sample_rate=0.0", send_bare, 0.0),
    ("busprop, traces_sample_rate=None", send_bare, None),
]


# --- consuming -----------------------------------------------------------------------------------


def fill(bootstrap: str, topic: str, count: int, sampled: bool, per_trace: int = PER_REQUEST) -> None:
    """``count`` records carrying the trace of a sampled or unsampled head, ``per_trace`` records
    per trace (1: every record a trace of its own)."""
    init_sentry(1.0)
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5))
    for first in range(0, count, per_trace):
        with sentry_sdk.start_transaction(name="head", sampled=sampled):
            for _ in range(min(per_trace, count - first)):
                producer.send(topic, VALUE)
    producer.close()


def reader(bootstrap: str, topic: str) -> KafkaConsumer:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10_000, max_poll_records=500)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    return consumer


def iterate_bare(consumer: KafkaConsumer, count: int) -> None:
    for seen, _record in enumerate(consumer, 1):
        if seen == count:
            return


def iterate_traced(consumer: KafkaConsumer, count: int) -> None:
    with busprop.kafka.traced_consumer(consumer) as records:
        for seen, _record in enumerate(records, 1):
            if seen == count:
                return


def iterate_sdk_alone(consumer: KafkaConsumer, count: int) -> None:
    """Bare iteration, each record's (empty) body inside sentry-sdk alone's processing of an
    unsampled head (the records :func:`fill` writes with ``sampled=False``)."""
    for seen, record in enumerate(consumer, 1):
        headers = {name: value.decode() for name, value in record.headers}
        with sdk_alone.processing(headers, record.topic, "unsampled"):
            pass
        if seen == count:
            return


def poll_bare(consumer: KafkaConsumer, count: int) -> None:
    seen = 0
    while seen < count:
        for records in consumer.poll(timeout_ms=1000).values():
            for _record in records:
                seen += 1


def poll_batch_mode(consumer: KafkaConsumer, count: int) -> None:
    seen = 0
    while seen < count:
        with busprop.kafka.process_batch(consumer.poll(timeout_ms=1000)) as records:
            for _record in records:
                seen += 1


def consume(
    bootstrap: str, topic: str, count: int, loop: Callable[[KafkaConsumer, int], None], rate: object
) -> Timing:
    init_sentry(rate)
    consumer = reader(bootstrap, topic)
    consumer.poll(timeout_ms=1000, max_records=1)  # connection out of the clock
    consumer.seek_to_beginning()
    clock = Clock()
    loop(consumer, count)
    elapsed = clock.stop()
    consumer.close()
    return elapsed


CONSUME: list[tuple[str, str, Callable[[KafkaConsumer, int], None], object]] = [
    ("bare iteration", "sampled", iterate_bare, UNSET),
    ("traced_consumer, sampled head (rate 1.0)", "sampled", iterate_traced, 1.0),
    ("traced_consumer, unsampled head (-0)", "unsampled", iterate_traced, 1.0),
    ("traced_consumer, traces_sample_rate=None", "sampled", iterate_traced, None),
    ("bare poll()", "sampled", poll_bare, UNSET),
    ("process_batch, sampled batches (rate 1.0)", "sampled", poll_batch_mode, 1.0),
]


# --- report --------------------------------------------------------------------------------------


def best_of(rounds: int, measures: list[tuple[str, Callable[[], Timing]]]) -> dict[str, Timing]:
    """The best wall and CPU time of each variant over ``rounds`` rounds, the variants interleaved
    in each round so that a machine busy with something else weighs on all of them alike."""
    times: dict[str, list[Timing]] = {name: [] for name, _ in measures}
    for _ in range(rounds):
        for name, measure in measures:
            times[name].append(measure())
    return {name: Timing(min(t.wall for t in runs), min(t.cpu for t in runs)) for name, runs in times.items()}


def table(title: str, rows: dict[str, Timing], count: int, baselines: dict[str, str]) -> None:
    """Print ``rows``; each ratio is against ``baselines[name]`` (default: the first row)."""
    first = next(iter(rows))
    print(f"\n{title} ({count:,} records of {len(VALUE)} bytes)")
    print("| variant | records/s | vs baseline | CPU us/record | vs baseline | baseline |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, timing in rows.items():
        base_name = baselines.get(name, first)
        base = rows[base_name]
        print(
            f"| {name} | {count / timing.wall:,.0f} | {base.wall / timing.wall:.2f}x "
            f"| {timing.cpu / count * 1e6:,.1f} | {base.cpu / timing.cpu:.2f}x | {base_name} |"
        )


FLOOR, BARE_ITERATION, BARE_POLL = "static trace headers (floor)", "bare iteration", "bare poll()"
SAMPLED_ITERATION = "traced_consumer, sampled head (rate 1.0)"
BATCH_MODE = "process_batch, sampled batches (rate 1.0)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="records per run (the issue's: 50000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant; the best is kept")
    arguments = parser.parse_args()
    count, rounds = arguments.records, arguments.rounds
    with brokers.kafka_bootstrap_servers() as bootstrap:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        produce_variants = [
            (name, functools.partial(produce_once, bootstrap, admin, count, send, rate))
            for name, send, rate in PRODUCE
        ]
        produced = best_of(rounds, produce_variants)
        table("producing", produced, count, {name: FLOOR for name, _, rate in PRODUCE if rate is not UNSET})
        topics = {"sampled": new_topic(admin), "unsampled": new_topic(admin)}
        fill(bootstrap, topics["sampled"], count, sampled=True)
        fill(bootstrap, topics["unsampled"], count, sampled=False)
        consume_variants = [
            (name, functools.partial(consume, bootstrap, topics[head], count, loop, rate))
            for name, head, loop, rate in CONSUME
        ]
        consumed = best_of(rounds, consume_variants)
        table("consuming", consumed, count, {BARE_POLL: BARE_POLL, BATCH_MODE: BARE_POLL})
        report_goals({**produced, **consumed}, count)
        admin.close()


def report_goals(timings: dict[str, Timing], count: int) -> None:
    """The issue's goals, on CPU time (steadier than wall time on a shared machine)."""
    cpu = {name: timing.cpu for name, timing in timings.items()}
    print("\ngoals (CPU time)")
    for rate in ("0.0", "None"):
        ratio = cpu[FLOOR] / cpu[f"busprop, traces_sample_rate={rate}"]
        print(f"  produce, traces_sample_rate={rate}: {ratio:.2f}x the static-header floor (goal >= 0.85)")
    ratio = cpu[BARE_ITERATION] / cpu["traced_consumer, unsampled head (-0)"]
    print(f"  consume an unsampled trace: {ratio:.2f}x bare iteration (goal >= 0.8)")
    per_record_tx = (cpu[SAMPLED_ITERATION] - cpu[BARE_ITERATION]) / count * 1e6
    per_record_batch = (cpu[BATCH_MODE] - cpu[BARE_POLL]) / count * 1e6
    print(
        f"  batch mode: {per_record_batch:.1f} us per record over bare poll(), per-record transactions "
        f"{per_record_tx:.1f} us over bare iteration: {per_record_batch / per_record_tx:.2f}x (goal <= 0.3)"
    )


if __name__ == "__main__":
    main()
