"""Generic ``@producer`` and ``@consumer`` decorators, for any transport.

For a bus busprop has no adapter for, the user says where a message's headers are (a function of
the decorated function's arguments) and busprop does the rest with :func:`busprop.publish` and
:func:`busprop.continue_trace`. Sync and async functions are both supported; the adapters'
decorators are built on :func:`traced_call`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeAlias, TypeVar, cast

from busprop.processing import DEFAULT_ORIGIN, continue_trace
from busprop.publishing import publish

logger = logging.getLogger("busprop")

F = TypeVar("F", bound=Callable[..., Any])
#: A fixed value, or a function of the decorated function's ``(*args, **kwargs)``.
FromCall: TypeAlias = "str | Callable[..., Any] | None"


def _first_argument(*args: Any, **kwargs: Any) -> Any:
    return args[0] if args else None


def resolve(source: FromCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Evaluate ``source`` for one call; a user function that raises yields ``None``."""
    if source is None or isinstance(source, str):
        return source
    try:
        return source(*args, **kwargs)
    except Exception:
        logger.debug("busprop: could not read message details", exc_info=True)
        return None


def destination_text(value: Any) -> str:
    """The destination string for a resolved value: ``"unknown"`` for none, or one ``str()`` fails on.

    A resolved value is the user's (often a field of a message); turning it into a string must
    not raise into the decorated function's caller.
    """
    if isinstance(value, str):
        return str.__str__(value) or "unknown"
    if value is None:
        return "unknown"
    try:
        return str.__str__(str(value)) or "unknown"
    except Exception:
        logger.debug("busprop: a destination of type %s has no str()", type(value).__name__)
        return "unknown"


def traced_call(
    func: F, enter: Callable[[tuple[Any, ...], dict[str, Any]], AbstractContextManager[Any]]
) -> F:
    """Run ``func`` (sync or async) inside the context manager ``enter(args, kwargs)`` returns."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with enter(args, kwargs):
                return await func(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with enter(args, kwargs):
            return func(*args, **kwargs)

    return cast(F, wrapper)


def consumer(
    *,
    system: str,
    destination: FromCall,
    headers: Callable[..., Any] = _first_argument,
    name: FromCall = None,
    message_id: FromCall = None,
    body_size: Callable[..., Any] | None = None,
    retry_count: Callable[..., Any] | None = None,
    published_at: Callable[..., Any] | None = None,
    origin: str = DEFAULT_ORIGIN,
) -> Callable[[F], F]:
    """Decorate a message handler so it runs inside the trace its message carries.

    Each of ``headers``, ``destination``, ``message_id`` ... is a value or a function of the
    handler's arguments; ``headers`` defaults to the first argument. Example::

        @busprop.consumer(system="custom", destination="orders", headers=lambda msg: msg["headers"])
        def handle(msg): ...
    """

    def decorate(func: F) -> F:
        def enter(args: tuple[Any, ...], kwargs: dict[str, Any]) -> AbstractContextManager[Any]:
            return continue_trace(
                resolve(headers, args, kwargs),
                system=system,
                destination=destination_text(resolve(destination, args, kwargs)),
                name=resolve(name, args, kwargs),
                message_id=resolve(message_id, args, kwargs),
                body_size=resolve(body_size, args, kwargs),
                retry_count=resolve(retry_count, args, kwargs),
                published_at=resolve(published_at, args, kwargs),
                origin=origin,
            )

        return traced_call(func, enter)

    return decorate


def producer(
    *,
    system: str,
    destination: FromCall,
    headers: Callable[..., Any],
    name: FromCall = None,
    message_id: FromCall = None,
    body_size: Callable[..., Any] | None = None,
    origin: str = DEFAULT_ORIGIN,
) -> Callable[[F], F]:
    """Decorate a function that sends a message: a ``queue.publish`` span around the call, and
    the current trace written into the headers container ``headers(*args, **kwargs)`` returns
    (a mutable mapping or list of pairs) before the function body runs. Example::

        @busprop.producer(system="custom", destination="orders", headers=lambda msg: msg["headers"])
        def send(msg): queue.put(msg)
    """

    def decorate(func: F) -> F:
        def enter(args: tuple[Any, ...], kwargs: dict[str, Any]) -> AbstractContextManager[Any]:
            carrier = resolve(headers, args, kwargs)
            return publish(
                carrier if carrier is not None else {},
                system=system,
                destination=destination_text(resolve(destination, args, kwargs)),
                name=resolve(name, args, kwargs),
                message_id=resolve(message_id, args, kwargs),
                body_size=resolve(body_size, args, kwargs),
                origin=origin,
            )

        return traced_call(func, enter)

    return decorate
