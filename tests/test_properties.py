"""Property-based checks of the carrier: no input makes it raise, writing never disturbs others.

CI runs a short slice; ``BUSPROP_HYPOTHESIS_EXAMPLES=10000 ./dev.sh test tests/test_properties.py``
runs the long one.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import busprop
from busprop.carrier import NO_TRACE, extract, write

EXAMPLES = int(os.environ.get("BUSPROP_HYPOTHESIS_EXAMPLES", "200"))
SENTRY_TRACE = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}(-[01])?")

keys = st.sampled_from(["sentry-trace", "baggage", "traceparent", "other", "sentryTrace", ""])
hexes = st.text(alphabet="0123456789abcdef", min_size=0, max_size=34)
trace_like = st.builds(lambda a, b, c: f"{a}-{b}-{c}", hexes, hexes, st.sampled_from(["0", "1", "", "2"]))
values: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    trace_like,
    trace_like.map(str.encode),
    st.integers(),
    st.none(),
    st.floats(allow_nan=True),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
pairs = st.lists(st.tuples(keys, values), max_size=8)
containers = st.one_of(pairs, pairs.map(dict), pairs.map(tuple), values)


@settings(max_examples=EXAMPLES, deadline=None)
@given(containers, containers)
def test_extract_never_raises_and_returns_only_valid_traces(first: Any, second: Any) -> None:
    trace = extract(first, second)
    if trace is not NO_TRACE:
        assert trace.sentry_trace is not None and SENTRY_TRACE.fullmatch(trace.sentry_trace)
        assert trace.baggage is None or (len(trace.baggage) <= 8192 and trace.baggage.isprintable())


@settings(max_examples=EXAMPLES, deadline=None)
@given(containers)
def test_continue_trace_never_raises(container: Any) -> None:
    with busprop.continue_trace(container, system="c", destination="d"):
        pass


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "sentry-trace", "baggage", "c"]), st.binary(max_size=20)))
)
def test_write_replaces_trace_headers_and_keeps_every_other_in_order(headers: list[tuple[str, Any]]) -> None:
    others = [(key, value) for key, value in headers if key not in ("sentry-trace", "baggage")]
    trace = "771a43a4192642f0b136d5159a501700-b2bd6e9b3e4c5a1f-1"
    write(headers, {"sentry-trace": trace, "baggage": "sentry-trace_id=x"}, as_bytes=True)
    assert [(key, value) for key, value in headers if key not in ("sentry-trace", "baggage")] == others
    assert [value for key, value in headers if key == "sentry-trace"] == [trace.encode()]
    assert len([key for key, _ in headers if key == "baggage"]) == 1
    assert extract(headers).sentry_trace == trace
