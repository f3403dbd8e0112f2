"""What every busprop Integration has in common: its options, given to its constructor.

As with sentry-sdk's own integrations, ``KafkaIntegration(propagation_targets=[...])`` configures
that bus only: an option given here wins for the bus, one not given (or ``None``) is
:func:`busprop.configure`'s. The options are validated when the Integration is built, so a bad
value fails at start-up with :class:`busprop.ConfigurationError` naming the Integration and the
option, never on a message.
"""

from __future__ import annotations

from typing import ClassVar

from busprop import sdk
from busprop.config import BusSettings, bus_options

__all__ = ["BusIntegration"]


class BusIntegration(sdk.Integration):
    """A sentry-sdk Integration for one bus, with that bus's options on its constructor.

    A subclass sets ``identifier`` (the bus its options apply to) and ``public_name`` (how users
    import it, for error messages).
    """

    public_name: ClassVar[str]

    def __init__(
        self,
        *,
        propagation_targets: list[str] | None = None,
        write_traceparent: bool | None = None,
        capture_exceptions: bool | None = None,
    ) -> None:
        #: Read per message by the bus's adapter (see :mod:`busprop.config`).
        self.settings = BusSettings(
            self.identifier,
            bus_options(
                self.public_name,
                propagation_targets=propagation_targets,
                write_traceparent=write_traceparent,
                capture_exceptions=capture_exceptions,
            ),
        )
        self.built()

    def built(self) -> None:
        """Called at the end of the constructor, before ``sentry_sdk.init`` uses the Integration."""
