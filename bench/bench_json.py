"""The JSON work of the WebSocket adapter, with each JSON library it could use, in one run.

A traced WebSocket message is parsed once on each end: the receiver parses a message that
contains the text ``"metadata"`` to read the trace; the sender parses a text frame to see whether
it is a JSON object, then writes the trace, appending ``"metadata":{...}`` to the original text (a
second serialisation of the whole body only when the message already has a ``metadata`` object).
This script times those three operations with the standard library's ``json``, ``pydantic_core``
(what busprop uses: pydantic is already a dependency) and ``orjson`` (when installed), for
messages from the benchmark's 87-byte chat message to 256 KiB, and then shows what each library
does with JSON that is valid for some parsers and not others: the adapter must never alter or
drop such a message, and a parse that fails only loses the trace.

Run: ``python bench/bench_json.py [--repeats R]`` (about 30 s).
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any

import pydantic_core

Loads = Callable[[str], Any]
Dumps = Callable[[Any], str]

TRACE = {
    "sentryTrace": "771a43a4192642f0b136d5159a501700-b0e6f15b45c36b12-1",
    "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key=49d0f7386ad645858ae85020e393bef3,"
    "sentry-sample_rate=1.0,sentry-sampled=true,sentry-sample_rand=0.8642",
}
CHAT = {"user": "bench", "message": "hello there, how is the weather today?", "room": "lobby"}


def body_of(size: int) -> dict[str, Any]:
    """A chat-like JSON object of about ``size`` bytes: text, numbers, nested objects."""
    if size <= 100:
        return dict(CHAT)
    rows = [
        {"id": index, "name": f"item {index}", "price": index * 1.25, "tags": ["a", "bé"], "ok": True}
        for index in range(max(1, size // 75))
    ]
    return {"user": "bench", "room": "lobby", "items": rows}


def libraries() -> dict[str, tuple[Loads, Dumps]]:
    found: dict[str, tuple[Loads, Dumps]] = {
        "json (standard library)": (
            json.loads,
            lambda value: json.dumps(value, separators=(",", ":"), ensure_ascii=False),
        ),
        "pydantic_core (busprop)": (
            lambda text: pydantic_core.from_json(text, cache_strings="keys"),
            lambda value: pydantic_core.to_json(value, inf_nan_mode="constants").decode(),
        ),
    }
    try:
        import orjson
    except ImportError:
        return found
    found["orjson"] = (orjson.loads, lambda value: orjson.dumps(value).decode())
    return found


def receive(loads: Loads, message: str) -> Any:
    """What a traced ``recv()`` does with a message's text: find, parse, read ``metadata``."""
    if '"metadata"' not in message:
        return None
    body = loads(message)
    return body.get("metadata") if isinstance(body, dict) else None


def send(loads: Loads, dumps: Dumps, message: str) -> str:
    """What a traced ``send()`` does: parse, then append the trace to the original text."""
    body = loads(message)
    if not isinstance(body, dict):
        return message
    if "metadata" in body:  # re-serialise the body with the trace in its metadata
        body["metadata"] = {**body["metadata"], **TRACE}
        return dumps(body)
    stripped = message.rstrip()
    return f'{stripped[:-1]},"metadata":{dumps(TRACE)}}}'


def microseconds(operation: Callable[[], Any], repeats: int) -> float:
    number = 200
    while min(timeit.repeat(operation, number=number, repeat=1)) < 0.05:
        number *= 2
    return min(timeit.repeat(operation, number=number, repeat=repeats)) / number * 1e6


def timings(repeats: int) -> None:
    dumps_std = libraries()["json (standard library)"][1]
    print(
        "| library | message | receive (find, parse) | send (parse, append the trace) | send into an existing `metadata` |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for size in (87, 1024, 16 * 1024, 256 * 1024):
        body = body_of(size)
        plain = dumps_std(body)
        traced = dumps_std({**body, "metadata": TRACE})
        with_metadata = dumps_std({**body, "metadata": {"room": "lobby"}})
        for name, (loads, dumps) in libraries().items():
            assert json.loads(send(loads, dumps, plain)) == json.loads(traced), name
            cells = [
                microseconds(lambda loads=loads, traced=traced: receive(loads, traced), repeats),
                microseconds(
                    lambda loads=loads, dumps=dumps, plain=plain: send(loads, dumps, plain), repeats
                ),
                microseconds(
                    lambda loads=loads, dumps=dumps, text=with_metadata: send(loads, dumps, text), repeats
                ),
            ]
            print(
                f"| {name} | {len(plain.encode()):,} B | "
                + " | ".join(f"{cell:,.1f} µs" for cell in cells)
                + " |"
            )


#: JSON that some parsers accept and some refuse, as peers send it.
EDGE_CASES = {
    "NaN, Infinity (JavaScript's JSON.stringify writes null; Python's json writes these)": '{"a": NaN, "b": Infinity}',
    "an integer over 64 bits": '{"a": 123456789012345678901234567890}',
    "a lone surrogate escape (\\ud800)": '{"a": "\\ud800"}',
    "a duplicate key": '{"a": 1, "a": 2}',
    "1,000 nested arrays": '{"a": ' + "[" * 1000 + "]" * 1000 + "}",
}


def outcome(loads: Loads, dumps: Dumps, text: str) -> str:
    try:
        value = loads(text)
    except Exception as error:
        return f"refused ({type(error).__name__})"
    try:
        written = dumps(value)
    except Exception as error:
        return f"read; not written back ({type(error).__name__})"
    if json.dumps(json.loads(written)) == json.dumps(json.loads(text)):
        return "read and written back"
    return f"read; written back as `{written[:24]}`"


def edge_cases() -> None:
    names = list(libraries())
    print("| input | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for label, text in EDGE_CASES.items():
        cells = [outcome(loads, dumps, text) for loads, dumps in libraries().values()]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"per message, best of {args.repeats} rounds\n")
    timings(args.repeats)
    print()
    edge_cases()


if __name__ == "__main__":
    main()
