"""Loops over consumers: each loop body runs inside the trace of the message it received.

``for record in consumer`` and ``async for message in queue.iterator()`` hand a message to a loop
body that is not a function busprop could wrap. OpenTelemetry ends its consumer span inside
``__next__``, so the user's code runs with no trace (REFERENCE section 5). Here the message's
processing is entered when ``__next__`` returns it and exited when the loop asks for the next
message, ends, breaks (the iterator is closed or collected), or, used as a context manager, raises:

    with TracedIterator(consumer, start) as messages:
        for message in messages: ...

The ``with`` form is the one that sees the loop body's exception and marks the transaction failed;
without it, a raising body ends the transaction when the iterator is collected, status ``ok``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Generic, TypeVar

from busprop.processing import MessageProcessing, continue_trace

logger = logging.getLogger("busprop")

T = TypeVar("T")


class CurrentProcessing:
    """The processing of the message a loop body (or a connection) is working on, if any.

    Adapters whose receive call is not an iterator (``recv()``) use it directly: ``start`` when a
    message is returned, ``finish`` when the next one is asked for.
    """

    __slots__ = ("processing",)

    def __init__(self) -> None:
        self.processing: MessageProcessing | None = None

    def start(self, processing: MessageProcessing) -> None:
        processing.__enter__()
        self.processing = processing

    def finish(self, exc: BaseException | None = None) -> None:
        processing, self.processing = self.processing, None
        if processing is not None:
            if exc is None:
                processing.__exit__(None, None, None)
            else:
                processing.__exit__(type(exc), exc, exc.__traceback__)


class TracedIterator(Generic[T]):
    """Wrap a sync iterable; ``start(message)`` returns the processing for each message."""

    def __init__(self, iterable: Iterable[T], start: Callable[[T], MessageProcessing]) -> None:
        self._iterator = iter(iterable)
        self._start = start
        self._current = CurrentProcessing()

    def __iter__(self) -> TracedIterator[T]:
        return self

    def __next__(self) -> T:
        self._current.finish()
        item = next(self._iterator)
        self._current.start(_processing_for(self._start, item))
        return item

    def close(self) -> None:
        """End the current message's processing (the wrapped iterator is left open)."""
        self._current.finish()

    def __enter__(self) -> TracedIterator[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._current.finish(exc)

    def __del__(self) -> None:
        self._current.finish()


class TracedAsyncIterator(Generic[T]):
    """Wrap an async iterable; ``start(message)`` returns the processing for each message."""

    def __init__(self, iterable: AsyncIterable[T], start: Callable[[T], MessageProcessing]) -> None:
        self._iterator: AsyncIterator[T] = iterable.__aiter__()
        self._start = start
        self._current = CurrentProcessing()

    def __aiter__(self) -> TracedAsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        self._current.finish()
        item = await self._iterator.__anext__()
        self._current.start(_processing_for(self._start, item))
        return item

    async def aclose(self) -> None:
        """End the current message's processing (the wrapped iterator is left open)."""
        self._current.finish()

    async def __aenter__(self) -> TracedAsyncIterator[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._current.finish(exc)

    def __del__(self) -> None:
        self._current.finish()


def _processing_for(start: Callable[[T], MessageProcessing], item: T) -> MessageProcessing:
    """``start(item)``, or an empty processing (a fresh trace) when the adapter's reader fails."""
    try:
        return start(item)
    except Exception:
        logger.debug("busprop: could not read the message's details", exc_info=True)
        return continue_trace(system="unknown", destination="unknown")
