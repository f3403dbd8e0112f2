"""Producer process: publishes one JSON message with busprop headers onto a Redis list.

argv: redis_url list_name capture_path traces_sample_rate(float|none) [head: transaction|bare]
"""

from __future__ import annotations

import json
import sys
from typing import Any

import redis
import sentry_sdk

import busprop
from busprop.testing import dump_captured, init_capturing

url, list_name, capture_path, rate_text = sys.argv[1:5]
head = sys.argv[5] if len(sys.argv) > 5 else "transaction"
init_capturing(traces_sample_rate=None if rate_text == "none" else float(rate_text))
client = redis.Redis.from_url(url)


@busprop.producer(system="redis", destination=list_name, headers=lambda message: message["headers"])
def send(message: dict[str, Any]) -> None:
    client.rpush(list_name, json.dumps(message))


if head == "transaction":
    with sentry_sdk.start_transaction(op="test", name="producer"):
        send({"headers": {"baggage": "vendor=acme"}, "body": "order 42"})
else:
    send({"headers": {"baggage": "vendor=acme"}, "body": "order 42"})
dump_captured(capture_path)
