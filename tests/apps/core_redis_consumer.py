"""Consumer process: pops one message from a Redis list, processes it with busprop, forwards it.

argv: redis_url list_name forward_list capture_path traces_sample_rate(float|none)
The forwarded message's headers are what this process sends on to the next hop.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import redis

import busprop
from busprop.testing import dump_captured, init_capturing

url, list_name, forward_list, capture_path, rate_text = sys.argv[1:6]
init_capturing(traces_sample_rate=None if rate_text == "none" else float(rate_text))
client = redis.Redis.from_url(url)


@busprop.producer(system="redis", destination=forward_list, headers=lambda message: message["headers"])
def forward(message: dict[str, Any]) -> None:
    client.rpush(forward_list, json.dumps(message))


@busprop.consumer(system="redis", destination=list_name, headers=lambda message: message["headers"])
def handle(message: dict[str, Any]) -> None:
    forward({"headers": {}, "body": message["body"]})


popped = client.blpop([list_name], timeout=20)
if popped is None:
    sys.exit("no message arrived")
handle(json.loads(popped[1]))
dump_captured(capture_path)
