"""Every adapter, end to end, with sentry-sdk in one state (``faults_common.MODES``).

Usage: ``faults_sdk.py MODE KAFKA_BOOTSTRAP AMQP_URL REDIS_URL CELERY_QUEUE OUT``. Each scenario sends
``COUNT`` messages through a traced producer and a traced consumer, as user code would, and writes
to OUT what was sent, what the user's code received, and any exception that reached it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import sentry_sdk
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from websockets.asyncio.server import serve

import busprop
import busprop.amqp
import busprop.celery
import busprop.kafka
from busprop import websockets as traced_ws
from tests.apps.faults_common import RaisingTransport, create_app, init_sentry

COUNT = 20
PAYLOADS = [f"message {number} \u00e9\u2603".encode() for number in range(COUNT)]


def head(number: int) -> Any:
    """Each message is sent from its own request's transaction (a no-op when the SDK is off)."""
    return sentry_sdk.start_transaction(name=f"request {number}", op="test")


def kafka_scenario(bootstrap: str) -> list[Any]:
    topic = f"busprop-faults-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = busprop.kafka.traced_producer(KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0))
    for number, payload in enumerate(PAYLOADS):
        with head(number):
            producer.send(topic, payload, key=b"k", headers=[("tenant", b"acme")]).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    received = []
    with busprop.kafka.traced_consumer(consumer) as records:
        for record in records:
            received.append(
                [record.value.decode(), record.key.decode(), dict(record.headers)["tenant"].decode()]
            )
            if len(received) == COUNT:
                break
    consumer.close()
    return received


async def amqp_scenario(url: str, iterate: bool) -> list[Any]:
    async with await aio_pika.connect_robust(url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"busprop-faults-{uuid.uuid4().hex[:8]}", exclusive=True)
        exchange = busprop.amqp.traced_exchange(channel.default_exchange)
        for number, payload in enumerate(PAYLOADS):
            with head(number):
                await exchange.publish(
                    aio_pika.Message(payload, headers={"tenant": "acme"}), routing_key=queue.name
                )
        received: list[Any] = []
        if iterate:
            async with busprop.amqp.traced_iterator(queue.iterator()) as messages:
                async for message in messages:
                    async with message.process():
                        received.append([message.body.decode(), str(message.headers["tenant"])])
                    if len(received) == COUNT:
                        break
            return received
        done = asyncio.Event()

        @busprop.amqp.consumer
        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                received.append([message.body.decode(), str(message.headers["tenant"])])
            if len(received) == COUNT:
                done.set()

        await queue.consume(handle)
        await asyncio.wait_for(done.wait(), timeout=20)
        return received


def celery_scenario(broker: str, backend: str | None, queue: str, eager: bool) -> list[Any]:
    app = create_app(broker, backend, queue)
    app.conf.task_always_eager = eager
    busprop.celery.install(app)
    try:
        results = []
        for number, payload in enumerate(PAYLOADS):
            with head(number):
                results.append(
                    app.send_task("faults.identity", (payload.decode(),))
                    if not eager
                    else app.tasks["faults.identity"].delay(payload.decode())
                )
        return [result.get(timeout=30) for result in results]
    finally:
        busprop.celery.uninstall()
        app.close()


async def websockets_scenario() -> list[Any]:
    seen: list[str] = []

    async def echo(ws: traced_ws.TracedConnection) -> None:
        async for message in ws:
            seen.append(json.loads(message)["message"])
            await ws.send(json.dumps({"echo": json.loads(message)["message"]}))

    async with serve(traced_ws.traced_handler(echo), "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        replies = []
        async with traced_ws.connect(f"ws://127.0.0.1:{port}/chat", strip_metadata=True) as ws:
            for number, payload in enumerate(PAYLOADS):
                with head(number):
                    await ws.send(json.dumps({"message": payload.decode()}))
                replies.append(json.loads(await ws.recv()))
    return [[message, reply] for message, reply in zip(seen, replies, strict=True)]


def user_errors_scenario() -> list[Any]:
    """A consumer that raises: the user's own exception comes back, unchanged, and nothing else."""
    app = create_app("memory://", "cache+memory://", "eager")
    app.conf.task_always_eager = True

    @app.task(name="faults.fail")  # type: ignore[untyped-decorator]
    def fail(payload: str) -> None:
        raise KeyError(payload)

    @busprop.consumer(system="custom", destination="orders", headers=lambda message: message)
    def handle(message: Any) -> None:
        raise KeyError(message["body"])

    def fail_eagerly(text: Any) -> None:
        fail.apply((text,), throw=True)

    busprop.celery.install(app)
    caught = []
    try:
        for number, payload in enumerate(PAYLOADS):
            text = payload.decode()
            for run, argument in ((fail_eagerly, text), (handle, {"body": text})):
                with head(number):
                    try:
                        run(argument)
                    except KeyError as error:
                        caught.append(error.args[0])
    finally:
        busprop.celery.uninstall()
        app.close()
    return caught


def attempt(run: Callable[[], list[Any]]) -> dict[str, Any]:
    try:
        return {"received": run(), "error": None}
    except BaseException as error:  # what reached the user's code
        return {"received": None, "error": f"{type(error).__name__}: {error}"}


def main() -> None:
    mode, bootstrap, amqp_url, redis_url, celery_queue, out = sys.argv[1:7]
    init_sentry(mode)
    results = {
        "kafka": attempt(lambda: kafka_scenario(bootstrap)),
        "amqp_consumer": attempt(lambda: asyncio.run(amqp_scenario(amqp_url, iterate=False))),
        "amqp_iterator": attempt(lambda: asyncio.run(amqp_scenario(amqp_url, iterate=True))),
        "celery_eager": attempt(lambda: celery_scenario("memory://", "cache+memory://", "eager", True)),
        "celery_worker": attempt(lambda: celery_scenario(redis_url, redis_url, celery_queue, False)),
        "websockets": attempt(lambda: asyncio.run(websockets_scenario())),
        "user_errors": attempt(user_errors_scenario),
    }
    sentry_sdk.flush()
    summary = {
        "sent": [payload.decode() for payload in PAYLOADS],
        "results": results,
        "transport_calls": RaisingTransport.calls,
        "client": type(sentry_sdk.get_client()).__name__,
        "dsn": sentry_sdk.get_client().options.get("dsn"),
    }
    with open(out, "w", encoding="utf-8") as file:
        json.dump(summary, file)


if __name__ == "__main__":
    main()
