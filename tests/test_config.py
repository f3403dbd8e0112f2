"""configure: defaults, validation at configure time, messages that name the option."""

from __future__ import annotations

from typing import Any

import pytest

import busprop


def test_defaults() -> None:
    config = busprop.get_config()
    assert config.propagation_targets == [".*"]
    assert config.write_traceparent is False
    assert config.capture_exceptions is True


def test_options_not_given_keep_their_value() -> None:
    busprop.configure(write_traceparent=True)
    busprop.configure(propagation_targets=["a"])
    assert busprop.get_config().write_traceparent is True
    assert busprop.get_config().propagation_targets == ["a"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"propagation_targets": ["("]}, "propagation_targets"),
        ({"propagation_targets": "orders"}, "propagation_targets"),
        ({"propagation_targets": [1]}, "propagation_targets"),
        ({"write_traceparent": "yes"}, "write_traceparent"),
        ({"capture_exceptions": 1}, "capture_exceptions"),
        ({"propagation_target": ["a"]}, "propagation_target"),
    ],
)
def test_invalid_options_fail_fast_naming_the_option(options: dict[str, Any], named: str) -> None:
    before = busprop.get_config()
    with pytest.raises(busprop.ConfigurationError, match=f"'{named}"):
        busprop.configure(**options)
    assert busprop.get_config() == before


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(busprop.ConfigurationError, ValueError)
