"""busprop's options, validated once at configure time.

Options live in a pydantic model so a typo or a bad regex fails when the application starts, with
the option's name in the message, instead of on the first message in production. The hot path
reads plain attributes of the frozen model and a per-destination cache of the target decision.

An Integration (``KafkaIntegration(...)``, ``AMQPIntegration(...)``,
``busprop.celery.CeleryIntegration(...)``) may take the same options for its bus:
:class:`BusOptions` holds them, validated when the Integration is built. An option given to a
bus's Integration wins for that bus; an option it was not given is :func:`configure`'s. The merged
settings are resolved once per ``configure()`` and kept on the Integration, so the hot path reads
them as it reads the global ones.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from busprop import sdk

logger = logging.getLogger("busprop")


class ConfigurationError(ValueError):
    """An option passed to :func:`configure` is invalid; the message names the option."""


class Config(BaseModel):
    """busprop's options (docs/configuration.md describes each one)."""

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
        return _compiled_targets(targets)


def _compiled_targets(targets: list[str]) -> list[str]:
    for target in targets:
        try:
            re.compile(target)
        except Exception as error:  # re.error, and OverflowError or RecursionError for some patterns
            raise ValueError(f"{target!r} is not a valid regular expression: {error}") from None
    return targets


class BusOptions(BaseModel):
    """The options one bus's Integration was given; ``None``: not given, :func:`configure`'s applies."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    #: As :attr:`Config.propagation_targets`, matched against this bus's destinations only.
    propagation_targets: list[str] | None = None
    write_traceparent: bool | None = None
    capture_exceptions: bool | None = None

    @field_validator("propagation_targets")
    @classmethod
    def _compile_targets(cls, targets: list[str] | None) -> list[str] | None:
        return None if targets is None else _compiled_targets(targets)


class Resolved:
    """Options in force (the global ones, or a bus's), their compiled targets and the
    per-destination decisions."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.patterns = [re.compile(target) for target in config.propagation_targets]
        self.propagate_all = any(target in (".*", "") for target in config.propagation_targets)
        self.decisions: dict[str, bool] = {}

    def allows(self, destination: str) -> bool:
        """Whether ``destination`` (a plain ``str``) matches one of the targets; cached."""
        if self.propagate_all:
            return True
        decision = self.decisions.get(destination)
        if decision is None:
            decision = any(pattern.search(destination) for pattern in self.patterns)
            if len(self.decisions) < _MAX_CACHED_DESTINATIONS:
                self.decisions[destination] = decision
        return decision


_state = Resolved(Config())
_MAX_CACHED_DESTINATIONS = 4096


def configure(**options: Any) -> Config:
    """Set busprop's options; options not given keep their current value.

    Raises :class:`ConfigurationError` naming the option when one is unknown or invalid, and
    nothing else, whatever the values: that is the one exception busprop raises on purpose, at
    start-up rather than on a message.
    """
    global _state
    merged = {**_state.config.model_dump(), **options}
    config: Config = _validated(Config, "busprop.configure", merged, options)
    _state = Resolved(config)
    return config


def _validated(model: type[Any], owner: str, values: dict[str, Any], given: dict[str, Any]) -> Any:
    """``model(**values)``, or :class:`ConfigurationError` naming ``owner`` and each bad option."""
    try:
        return model(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"option {'.'.join(str(part) for part in issue['loc']) or '?'!r}: {issue['msg']}"
            for issue in error.errors()
        )
        raise ConfigurationError(f"{owner}: {problems}") from None
    except Exception as error:  # a value pydantic's own checks choke on
        names = ", ".join(sorted(given))
        raise ConfigurationError(f"{owner}: option {names!r}: {type(error).__name__}") from None


def bus_options(owner: str, **options: Any) -> BusOptions:
    """An Integration's options, validated: :class:`ConfigurationError` names ``owner`` and the option."""
    given = {name: value for name, value in options.items() if value is not None}
    validated: BusOptions = _validated(BusOptions, owner, given, given)
    return validated


class BusSettings:
    """One bus's settings: its Integration's options over :func:`configure`'s.

    Resolved again only when :func:`configure` or :func:`reset` replaced the global settings
    (an identity check per message), so the per-destination decisions stay cached in between.
    """

    __slots__ = ("_base", "_resolved", "options")

    def __init__(self, bus: str, options: BusOptions) -> None:
        self.options = options
        if options.model_dump(exclude_none=True):
            _buses_with_options.add(bus)
        self._base: Resolved | None = None
        self._resolved: Resolved | None = None

    def state(self) -> Resolved:
        base = _state
        resolved = self._resolved
        if self._base is base and resolved is not None:
            return resolved
        given = self.options.model_dump(exclude_none=True)
        resolved = Resolved(base.config.model_copy(update=given)) if given else base
        self._base, self._resolved = base, resolved
        return resolved


#: The buses an Integration was ever given options for: for any other bus, the global options
#: apply without looking the Integration up (the common case costs nothing per message).
_buses_with_options: set[str] = set()


def resolved_for(bus: str | None = None) -> Resolved:
    """The options in force for ``bus`` with their cached decisions, for a caller that reads
    several of them per message: its Integration's on the active client (when it was given
    options: one lookup of the Integration), else the global ones."""
    if bus is None or bus not in _buses_with_options:
        return _state
    try:
        settings = sdk.enabled_integration_attribute(bus, "settings")
    except Exception:
        logger.debug("busprop: could not read the %s Integration's options", bus, exc_info=True)
        return _state
    return settings.state() if isinstance(settings, BusSettings) else _state


def reset() -> Config:
    """Restore every option to its default (used by tests and by ``uninstall`` helpers)."""
    global _state
    _state = Resolved(Config())
    return _state.config


def get_config(bus: str | None = None) -> Config:
    """The options in force; for ``bus`` (an Integration's identifier), with its Integration's options."""
    return resolved_for(bus).config


def should_propagate(destination: str, bus: str | None = None, *, resolved: Resolved | None = None) -> bool:
    """Whether trace headers may be written for a message to ``destination`` (on ``bus``, whose
    Integration's ``propagation_targets``, when it was given some, apply instead of the global ones).

    A destination that is not a ``str`` matches no target, not even ``.*``: it is a caller's
    mistake, rejected with a debug record rather than a ``TypeError`` in the caller's send. A
    ``str`` subclass is matched as the plain string it holds, so none of its methods run here.
    ``resolved`` (from :func:`resolved_for`) saves looking the bus's options up again.
    """
    if type(destination) is not str:
        if not isinstance(destination, str):
            logger.debug(
                "busprop: a destination of type %s is not a str: no trace headers written",
                type(destination).__name__,
            )
            return False
        destination = str.__str__(destination)
    if resolved is None:
        resolved = _state if bus is None else resolved_for(bus)
    return resolved.allows(destination)
