"""pika publishing and consuming against the real RabbitMQ: bare, static headers, busprop,
OpenTelemetry's pika instrumentation and Sentry's queues recipe, unsampled and sampled.

Each scenario publishes N messages through a ``BlockingConnection`` (publisher confirms on, one at a
time, in requests of 100 messages: each request a Sentry transaction or an OpenTelemetry root span,
none for bare and static) and consumes them with a ``basic_consume`` callback (prefetch 100, one ack
each). The scenarios:

- bare: pika alone;
- static headers: pika writing a fixed ``sentry-trace`` and ``baggage`` into a copy of the
  properties and the consumer reading both: the floor any header propagation pays;
- busprop: the same plain pika code under ``AMQPIntegration``;
- OpenTelemetry: ``PikaInstrumentor`` with an SDK ``TracerProvider`` whose exporter drops spans
  (``ParentBased(ALWAYS_ON)`` / ``ALWAYS_OFF``);
- recipe: sentry-sdk by hand around bare pika, as Sentry's "Instrument Queues" recipe writes it;
- sentry-sdk alone (``bench/sdk_alone.py``): the sentry-sdk work busprop asks for per message,
  by hand around bare pika, under the same request transactions and with the Queues data busprop
  gives a pika message, so that busprop's own cost reads as the difference between the two.

Sentry's variants get a transport that drops envelopes. Each scenario runs in a fresh process
(instrumentations patch classes process-wide), the rounds are interleaved so other load on the
machine weighs on every scenario alike, and each figure is the median of the rounds. The figures
are this process's CPU time per message (steadier than throughput on a shared machine), its excess
over bare, and the publish-plus-consume throughput against bare.

Usage: python bench/bench_pika.py [--messages N] [--rounds R]   (AMQP_URL as for the tests)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sdk_alone  # noqa: E402  (bench/ is on the path of every bench script)
from bench_peers import Clock, init_dropping, init_otel, init_sentry, recipe_process, recipe_publish, request  # noqa: E402

from busprop.demo import brokers  # noqa: E402

PER_REQUEST = 100
BODY = b'{"order": 42, "items": ["book", "pen"], "total": 17.5, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
#: (label, variant, sampled: None for tracing off), in the order of the table.
SCENARIOS: list[tuple[str, str, bool | None]] = [
    ("bare pika", "bare", False),
    ("static headers (floor)", "static", False),
    ("busprop, unsampled", "busprop", False),
    ("busprop, tracing off", "busprop", None),
    ("OpenTelemetry, unsampled", "otel", False),
    ("recipe, unsampled", "recipe", False),
    ("busprop, sampled", "busprop", True),
    ("OpenTelemetry, sampled", "otel", True),
    ("recipe, sampled", "recipe", True),
    ("sentry-sdk alone, unsampled", "sdk-alone", False),
    ("sentry-sdk alone, tracing off", "sdk-alone", None),
    ("sentry-sdk alone, sampled", "sdk-alone", True),
]
#: The request each variant publishes from: sentry-sdk alone from busprop's Sentry transactions.
REQUESTS = {"busprop": "busprop", "sdk-alone": "busprop", "otel": "otel", "recipe": "recipe"}
#: sentry-sdk alone's mode for a scenario's ``sampled``.
MODES: dict[bool | None, str] = {False: "unsampled", None: "off", True: "sampled"}
ORIGIN = "auto.queue.busprop.pika"
#: A ``basic_consume`` callback: (channel, method, properties, body).
PikaCallback = Callable[[Any, Any, Any, bytes], None]
STATIC_HEADERS = {
    "sentry-trace": "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1",
    "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-sample_rate=1.0,sentry-sampled=true",
}


def setup(variant: str, sampled: bool | None) -> None:
    if variant == "busprop":
        from busprop.amqp import AMQPIntegration

        init_dropping(sdk_alone.RATES[MODES[sampled]], [AMQPIntegration()])
    elif variant == "recipe":
        init_sentry(bool(sampled))
    elif variant == "otel":
        from opentelemetry.instrumentation.pika import PikaInstrumentor

        init_otel(bool(sampled))
        PikaInstrumentor().instrument()
    elif variant == "sdk-alone":
        sdk_alone.init(MODES[sampled])


def publish(channel: Any, variant: str, queue: str) -> None:
    import pika

    if variant == "static":
        properties = pika.BasicProperties(headers=dict(STATIC_HEADERS))
        channel.basic_publish("", queue, BODY, properties)
    elif variant == "recipe":
        with recipe_publish(queue, BODY) as headers:
            channel.basic_publish("", queue, BODY, pika.BasicProperties(headers=dict(headers)))
    elif variant == "sdk-alone":
        with sdk_alone.publishing(
            f"/{queue}", len(BODY), "rabbitmq", ORIGIN, {sdk_alone.ROUTING_KEY: queue}
        ) as headers:
            channel.basic_publish("", queue, BODY, pika.BasicProperties(headers=dict(headers)))
    else:
        channel.basic_publish("", queue, BODY)


def run(variant: str, sampled: bool | None, count: int) -> dict[str, Any]:
    import pika

    setup(variant, sampled)
    connection = pika.BlockingConnection(pika.URLParameters(brokers.amqp_url()))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_qos(prefetch_count=100)
    queue = str(channel.queue_declare(f"bench-pika-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue)
    clock = Clock()
    for first in range(0, count, PER_REQUEST):
        with request(REQUESTS.get(variant, "bare")):
            for _ in range(min(PER_REQUEST, count - first)):
                publish(channel, variant, queue)
    produced = clock.stop()
    published_at = time.time()  # sentry-sdk alone's messages carry no publish time: this stands in
    consumed_count = [0]

    def handle(ch: Any, method: Any, properties: Any, body: bytes) -> None:  # the user's callback
        ch.basic_ack(method.delivery_tag)
        consumed_count[0] += 1
        if consumed_count[0] == count:
            ch.stop_consuming()

    def static_handle(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = properties.headers or {}
        headers.get("sentry-trace"), headers.get("baggage")
        handle(ch, method, properties, body)

    def recipe_handle(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = {key: str(value) for key, value in (properties.headers or {}).items()}
        with recipe_process(headers, queue, body, str(method.delivery_tag), None):
            handle(ch, method, properties, body)

    callbacks = {
        "static": static_handle,
        "recipe": recipe_handle,
        "sdk-alone": sdk_alone_callback(handle, MODES[sampled], published_at),
    }
    callback = callbacks.get(variant, handle)
    clock = Clock()
    channel.basic_consume(queue, callback)
    channel.start_consuming()
    consumed = clock.stop()
    connection.close()
    return {"produce": produced, "consume": consumed}


def sdk_alone_callback(handle: PikaCallback, mode: str, published_at: float) -> PikaCallback:
    """``handle`` run inside sentry-sdk alone's processing of each message, in ``mode``, with the
    Queues data busprop gives a pika message when sampled (``published_at`` stands in for the
    publish time the messages do not carry)."""

    def processed(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = {key: str(value) for key, value in (properties.headers or {}).items()}
        destination = f"{method.exchange}/{method.routing_key}"
        data = (
            sdk_alone.amqp_data(
                destination,
                None,
                len(body),
                method.redelivered,
                published_at,
                method.routing_key,
                method.delivery_tag,
            )
            if mode == "sampled"
            else None
        )
        with sdk_alone.processing(headers, destination, mode, data, origin=ORIGIN):
            handle(ch, method, properties, body)

    return processed


def run_scenario(variant: str, sampled: bool | None, count: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--scenario", variant, str(sampled), str(count)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(count: int, rounds: int) -> None:
    import pika

    url = brokers.amqp_url()
    if not brokers.reachable(url):
        raise SystemExit(f"RabbitMQ is not reachable at AMQP_URL={url}")
    run_scenario("bare", False, min(count, 500))  # warm-up: imports, the broker's caches
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in SCENARIOS}
    for _ in range(rounds):
        for label, variant, sampled in SCENARIOS:
            results[label].append(run_scenario(variant, sampled, count))
    print(f"pika {pika.__version__}, {count} messages, median of {rounds} round(s)\n")
    print(
        "| variant | publish CPU µs/msg | over bare | consume CPU µs/msg | over bare | throughput vs bare |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    bare = medians(results["bare pika"], count)
    for label, runs in results.items():
        figures = medians(runs, count)
        cells = [
            f"{figures['produce_cpu']:,.1f} | {figures['produce_cpu'] - bare['produce_cpu']:+,.1f}",
            f"{figures['consume_cpu']:,.1f} | {figures['consume_cpu'] - bare['consume_cpu']:+,.1f}",
            f"{bare['wall'] / figures['wall']:.2f}x",
        ]
        print(f"| {label} | {' | '.join(cells)} |")


def medians(runs: list[dict[str, Any]], count: int) -> dict[str, float]:
    """Median CPU microseconds per message of each phase, and median wall seconds of both."""
    return {
        "produce_cpu": statistics.median(run["produce"][1] / count * 1e6 for run in runs),
        "consume_cpu": statistics.median(run["consume"][1] / count * 1e6 for run in runs),
        "wall": statistics.median(run["produce"][0] + run["consume"][0] for run in runs),
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--scenario":
        sampled = {"True": True, "False": False}.get(sys.argv[3])  # "None": tracing off
        print(json.dumps(run(sys.argv[2], sampled, int(sys.argv[4]))))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per scenario")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all scenarios; medians reported")
    arguments = parser.parse_args()
    main(arguments.messages, arguments.rounds)
