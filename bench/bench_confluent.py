"""confluent-kafka with busprop against its peers: µs per record over the bare client, on one broker.

Scenarios, each in a fresh process (instrumentations replace ``confluent_kafka.Producer`` and
``Consumer`` process-wide): bare; bare with the two trace headers as static bytes (the floor of any
header-based propagation); busprop's KafkaIntegration at ``traces_sample_rate`` 1.0, 0.0 and None
(tracing off); OpenTelemetry's confluent-kafka instrumentation with ``ParentBased(ALWAYS_ON)`` and
``ParentBased(ALWAYS_OFF)``; Sentry's "Instrument Queues" recipe written by hand around the bare
client at 1.0 and 0.0 (as in ``bench/bench_peers.py``); and "sentry-sdk alone" at 1.0, 0.0 and None:
the sentry-sdk work busprop asks for per record, written by hand around the bare client with no
busprop code (``bench/sdk_alone.py``), so that what the SDK costs by itself reads beside busprop in
the same run (busprop's own cost is the difference). Sampling is equal between peers.

Each scenario produces N 100-byte records in requests of 100 (each request a Sentry transaction
or an OpenTelemetry root span; none for bare and floor), timing the ``produce()`` calls (librdkafka
enqueues in C, so the Python around the call is what shows) and then ``flush()`` untimed; then it
reads them back with a ``poll()`` loop (``assign()``, no group join), timing each ``poll()`` that
returns a record plus the loop body's trace lookup. Envelopes and spans are dropped, not sent.

The scenarios run interleaved, round after round, so other load on the machine weighs on each alike;
the table gives the median of the rounds. Usage: python bench/bench_confluent.py [--records N]
[--rounds R] (default 5,000 records, 5 rounds). The broker is KAFKA_BOOTSTRAP_SERVERS, else an
embedded Tansu broker started for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sdk_alone  # noqa: E402
from bench_peers import init_dropping, init_otel, init_sentry, recipe_process, recipe_publish  # noqa: E402

from busprop.demo import brokers  # noqa: E402

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
#: name: (label, sampled: True / False / None for tracing off or no tracing at all)
SCENARIOS: dict[str, tuple[str, bool | None]] = {
    "bare": ("bare confluent-kafka", None),
    "floor": ("static trace headers (the floor)", None),
    "busprop-unsampled": ("busprop, unsampled (traces_sample_rate=0.0)", False),
    "busprop-off": ("busprop, tracing off (traces_sample_rate=None)", None),
    "busprop-sampled": ("busprop, sampled (traces_sample_rate=1.0)", True),
    "sdk-alone-unsampled": ("sentry-sdk alone, unsampled (traces_sample_rate=0.0)", False),
    "sdk-alone-off": ("sentry-sdk alone, tracing off (traces_sample_rate=None)", None),
    "sdk-alone-sampled": ("sentry-sdk alone, sampled (traces_sample_rate=1.0)", True),
    "otel-unsampled": ("OpenTelemetry, ParentBased(ALWAYS_OFF)", False),
    "otel-sampled": ("OpenTelemetry, ParentBased(ALWAYS_ON)", True),
    "recipe-unsampled": ("sentry-sdk recipe, traces_sample_rate=0.0", False),
    "recipe-sampled": ("sentry-sdk recipe, traces_sample_rate=1.0", True),
}


#: The variants that read and start traces with sentry-sdk's API.
SENTRY = ("busprop", "sdk-alone", "recipe")


def variant_of(scenario: str) -> str:
    return scenario.rsplit("-", 1)[0]


def mode_of(scenario: str) -> str:
    """``sampled``, ``unsampled`` or ``off`` (``bench/sdk_alone.py``'s modes)."""
    return {True: "sampled", False: "unsampled", None: "off"}[SCENARIOS[scenario][1]]


def setup(scenario: str) -> None:
    variant, sampled = variant_of(scenario), SCENARIOS[scenario][1]
    if variant == "busprop":
        import busprop.kafka

        init_dropping(sdk_alone.RATES[mode_of(scenario)], [busprop.kafka.KafkaIntegration()])
    elif variant == "otel":
        from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

        ConfluentKafkaInstrumentor().instrument(tracer_provider=init_otel(bool(sampled)))
    elif variant == "recipe":
        init_sentry(bool(sampled))
    elif variant == "sdk-alone":
        sdk_alone.init(mode_of(scenario))


@contextmanager
def request(scenario: str) -> Iterator[None]:
    """The request transaction (or root span) an application produces from."""
    variant, sampled = variant_of(scenario), SCENARIOS[scenario][1]
    if variant == "otel":
        from opentelemetry import trace

        with trace.get_tracer("bench").start_as_current_span("request"):
            yield
    elif variant in SENTRY and sampled is not None:
        import sentry_sdk

        with sentry_sdk.start_transaction(op="http.server", name="request"):
            yield
    else:
        yield


def current_trace(variant: str) -> str:
    """What a loop body reads to know its trace (each peer's own API)."""
    if variant == "otel":
        from opentelemetry import trace

        return format(trace.get_current_span().get_span_context().trace_id, "032x")
    if variant in SENTRY:
        import sentry_sdk

        span = sentry_sdk.get_current_span()
        if span is not None:
            return str(span.trace_id)
        return (sentry_sdk.get_traceparent() or "-").split("-")[0]  # tracing off: no span
    return "-"


class Stopwatch:
    """Seconds summed over its ``start()``-``stop()`` spans; a ``start()`` again without ``stop()``
    drops the span begun (a ``poll()`` that returned nothing). bench/attribution.py swaps in a profiler."""

    def __init__(self) -> None:
        self.seconds, self._started = 0.0, 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> None:
        self.seconds += time.perf_counter() - self._started


def run_scenario(scenario: str, bootstrap: str, topic: str, count: int) -> dict[str, float]:
    """In a fresh process: µs per record for producing and for consuming."""
    setup(scenario)
    import confluent_kafka  # after setup: the instrumented classes, if any

    variant, mode = variant_of(scenario), mode_of(scenario)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    producer.produce(topic, b"warm-up")
    producer.flush(10)
    producing, consuming = Stopwatch(), Stopwatch()
    for first in range(0, count, PER_REQUEST):
        with request(scenario):
            producing.start()
            for _ in range(min(PER_REQUEST, count - first)):
                if variant == "floor":
                    producer.produce(topic, VALUE, headers=STATIC_HEADERS)
                elif variant == "recipe":
                    with recipe_publish(topic, VALUE) as headers:
                        producer.produce(topic, VALUE, headers=headers)
                elif variant == "sdk-alone":
                    with sdk_alone.publishing(topic, len(VALUE), "kafka") as headers:
                        producer.produce(topic, VALUE, headers=[(k, v.encode()) for k, v in headers.items()])
                else:
                    producer.produce(topic, VALUE)
            producing.stop()
        producer.poll(0)
    assert producer.flush(30) == 0

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}"}
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    while (first := consumer.poll(1.0)) is None or first.error() is not None:
        pass  # the warm-up record; then librdkafka fetches the rest into its queue, out of the clock
    time.sleep(2)
    seen, covered = 0, 0
    while seen < count:
        consuming.start()
        message = consumer.poll(1.0)
        if message is None or message.error() is not None:
            continue
        if variant == "recipe":
            headers = {key: value.decode() for key, value in message.headers() or []}
            with recipe_process(headers, topic, message.value(), str(message.offset()), None):
                covered += current_trace(variant) != "-"
        elif variant == "sdk-alone":
            headers = {key: value.decode() for key, value in message.headers() or []}
            data = (
                sdk_alone.kafka_data(
                    topic, message.partition(), message.offset(), len(message.value()), message.timestamp()[1]
                )
                if mode == "sampled"
                else None
            )
            with sdk_alone.processing(headers, topic, mode, data):
                covered += current_trace(variant) != "-"
        else:
            covered += current_trace(variant) != "-"
        consuming.stop()
        seen += 1
    consumer.close()
    return {
        "produce_us": producing.seconds / count * 1e6,
        "consume_us": consuming.seconds / count * 1e6,
        "covered": covered,
    }


def create_topic(bootstrap: str) -> str:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = f"bench-{uuid.uuid4().hex[:10]}"
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(10)
    return name


def run_in_process(scenario: str, bootstrap: str, records: int) -> dict[str, float]:
    """``run_scenario`` in a fresh process, on a new topic."""
    command = [sys.executable, __file__, "--scenario", scenario, "--bootstrap", bootstrap]
    command += ["--topic", create_topic(bootstrap), "--records", str(records)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(output.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.scenario:
        print(
            json.dumps(
                run_scenario(arguments.scenario, arguments.bootstrap, arguments.topic, arguments.records)
            )
        )
        return

    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    embedded = None if configured else brokers.start_embedded_kafka()
    bootstrap = configured or embedded.bootstrap_servers  # type: ignore[union-attr]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SCENARIOS}
    try:
        for _ in range(arguments.rounds):
            for scenario in SCENARIOS:
                results[scenario].append(run_in_process(scenario, bootstrap, arguments.records))
    finally:
        if embedded is not None:
            embedded.stop()
    report(results, arguments.records, arguments.rounds)


def report(results: dict[str, list[dict[str, float]]], records: int, rounds: int) -> None:
    def median(scenario: str, key: str) -> float:
        return statistics.median(run[key] for run in results[scenario])

    bare_produce, bare_consume = median("bare", "produce_us"), median("bare", "consume_us")
    print(f"confluent-kafka {records} records x {rounds} interleaved rounds, medians, µs per record")
    print("| scenario | produce | over bare | consume (poll + body) | over bare | bodies in their trace |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for scenario, (label, _) in SCENARIOS.items():
        produce, consume = median(scenario, "produce_us"), median(scenario, "consume_us")
        covered = int(median(scenario, "covered"))
        print(
            f"| {label} | {produce:.2f} | +{produce - bare_produce:.2f} | {consume:.2f} "
            f"| +{consume - bare_consume:.2f} | {covered}/{records} |"
        )


if __name__ == "__main__":
    main()
