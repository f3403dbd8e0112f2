"""The broker fixtures start (where they must) and talk to real brokers with the real clients."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.broker


async def test_rabbitmq_round_trip(amqp_url: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        assert message is not None and message.body == b"ping"
        await message.ack()


def test_redis_round_trip(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"busprop-test-{uuid.uuid4().hex}"
    client.set(key, b"ping", ex=10)
    assert client.get(key) == b"ping"
    client.delete(key)


def test_kafka_round_trip(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"busprop-test-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topic, b"ping", headers=[("h", b"v")]).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=20000
    )
    record = next(iter(consumer))
    consumer.close()
    assert record.value == b"ping"
    assert list(record.headers) == [("h", b"v")]
