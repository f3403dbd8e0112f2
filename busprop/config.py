"""busprop's options, validated once at configure time.

Options live in a pydantic model so a typo or a bad regex fails when the application starts, with
the option's name in the message, instead of on the first message in production. The hot path
reads plain attributes of the frozen model and a per-destination cache of the target decision.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

logger = logging.getLogger("busprop")


class ConfigurationError(ValueError):
    """An option passed to :func:`configure` is invalid; the message names the option."""


class Config(BaseModel):
    """busprop's options. See README, section "Configuration", for each one."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    #: Regexes matched with ``re.search`` against each adapter's destination string; trace
    #: headers are written only for destinations that match one. ``[]`` writes none at all.
    propagation_targets: list[str] = [".*"]
    #: Also write a W3C ``traceparent`` header on inject, for OpenTelemetry-instrumented consumers.
    write_traceparent: bool = False
    #: Report an exception raised by a consumer to Sentry (it is re-raised either way).
    capture_exceptions: bool = True

    @field_validator("propagation_targets")
    @classmethod
    def _compile_targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            try:
                re.compile(target)
            except Exception as error:  # re.error, and OverflowError or RecursionError for some patterns
                raise ValueError(f"{target!r} is not a valid regular expression: {error}") from None
        return targets


class _State:
    """The active configuration, its compiled targets and the per-destination decisions."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.patterns = [re.compile(target) for target in config.propagation_targets]
        self.propagate_all = any(target in (".*", "") for target in config.propagation_targets)
        self.decisions: dict[str, bool] = {}


_state = _State(Config())
_MAX_CACHED_DESTINATIONS = 4096


def configure(**options: Any) -> Config:
    """Set busprop's options; options not given keep their current value.

    Raises :class:`ConfigurationError` naming the option when one is unknown or invalid, and
    nothing else, whatever the values: that is the one exception busprop raises on purpose, at
    start-up rather than on a message.
    """
    global _state
    merged = {**_state.config.model_dump(), **options}
    try:
        config = Config(**merged)
    except ValidationError as error:
        problems = "; ".join(
            f"option {'.'.join(str(part) for part in issue['loc']) or '?'!r}: {issue['msg']}"
            for issue in error.errors()
        )
        raise ConfigurationError(f"busprop.configure: {problems}") from None
    except Exception as error:  # a value pydantic's own checks choke on
        names = ", ".join(sorted(options))
        message = f"busprop.configure: option {names!r}: {type(error).__name__}"
        raise ConfigurationError(message) from None
    _state = _State(config)
    return config


def reset() -> Config:
    """Restore every option to its default (used by tests and by ``uninstall`` helpers)."""
    global _state
    _state = _State(Config())
    return _state.config


def get_config() -> Config:
    """The options in force."""
    return _state.config


def should_propagate(destination: str) -> bool:
    """Whether trace headers may be written for a message to ``destination``.

    A destination that is not a ``str`` matches no target, not even ``.*``: it is a caller's
    mistake, rejected with a debug record rather than a ``TypeError`` in the caller's send. A
    ``str`` subclass is matched as the plain string it holds, so none of its methods run here.
    """
    if type(destination) is not str:
        if not isinstance(destination, str):
            logger.debug(
                "busprop: a destination of type %s is not a str: no trace headers written",
                type(destination).__name__,
            )
            return False
        destination = str.__str__(destination)
    state = _state
    if state.propagate_all:
        return True
    decision = state.decisions.get(destination)
    if decision is None:
        decision = any(pattern.search(destination) for pattern in state.patterns)
        if len(state.decisions) < _MAX_CACHED_DESTINATIONS:
            state.decisions[destination] = decision
    return decision
