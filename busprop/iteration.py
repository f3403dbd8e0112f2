"""Loops over consumers: each loop body runs inside the trace of the message it received.

``for record in consumer`` and ``async for message in queue.iterator()`` hand a message to a loop
body that is not a function busprop could wrap (OpenTelemetry ends its consumer span inside
``__next__``, so the body runs with no trace). Here a message's processing is entered when
``__next__`` returns it and ends at the first of:

- the loop asking for the next message (or finding none);
- the loop being left by ``break`` or ``return``: right there, before the code after the loop;
- an exception leaving the loop body: right there as well, with status ``ok`` (an iterator never
  sees the exception), unless the iterator is used as a context manager, whose exit then ends the
  message with the exception (reported, marked failed);
- ``close()``/``aclose()`` or the end of the ``with`` block.

Python calls nothing on an iterator when a loop is left, so each ``for``/``async for`` iterates a
loop object of its own that only the loop holds; CPython frees it the moment the loop drops it, in
the loop's own thread and context, and a weak reference's callback ends the message there. Whether
the loop was left by ``break``/``return`` or by an exception is read from the instruction the
loop's frame was executing (see :func:`_left_by_break`).

A message's scope is left only in the context that entered it, and only while no scope opened
since is still open: a contextvars reset anywhere else raises inside sentry-sdk or, later in the
same context, undoes the scopes opened since. An end asked for anywhere else (``close()`` from
another thread or task, a collection) finishes the message's span and transaction, which sends
them, and leaves its scope to that context's next step. No ``__del__`` is involved.
"""

from __future__ import annotations

import contextvars
import dis
import logging
import sys
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import FrameType, TracebackType
from typing import Any, Generic, TypeVar

from busprop import sdk
from busprop.processing import MessageProcessing, continue_trace

logger = logging.getLogger("busprop")

T = TypeVar("T")

#: Set, in the context that entered a message's processing, to its :class:`_Entered`. Its token
#: tells that context from any other, and it keeps a processing whose scope is still set alive
#: exactly as long as that context: the isolation scope sentry-sdk opened for it resets context
#: variables when it is collected, which must never happen in a live context at an arbitrary point.
_ENTERED: contextvars.ContextVar[object] = contextvars.ContextVar("busprop_entered_processing", default=None)

#: The instructions with which CPython drops a ``for`` loop's iterator when the loop is left by
#: ``break`` or ``return`` (``POP_ITER`` from 3.14 on).
_LOOP_EXITS = frozenset(dis.opmap[name] for name in ("POP_TOP", "POP_ITER") if name in dis.opmap)


class _Entered:
    """A message's processing that was entered, and where: its context and the scopes it opened."""

    __slots__ = ("isolation_scope", "processing", "scope", "sent", "token")

    def __init__(self, processing: MessageProcessing) -> None:
        processing.__enter__()
        self.processing = processing
        self.scope, self.isolation_scope = sdk.current_scopes()
        self.sent = False
        self.token = _ENTERED.set(self)

    def in_place(self) -> bool:
        """Whether the scope the processing opened is still the current one (nothing since is open)."""
        return sdk.current_scopes()[0] is self.scope

    def claim(self) -> bool:
        """Whether this is the context that entered the processing; if so, it must now exit it."""
        try:
            _ENTERED.reset(self.token)
        except (ValueError, RuntimeError):  # a token of another context, or one already used
            return False
        return True

    def exit(self, error: BaseException | None) -> None:
        if error is None:
            self.processing.__exit__(None, None, None)
        else:
            self.processing.__exit__(type(error), error, error.__traceback__)

    def send(self, error: BaseException | None = None) -> None:
        """Finish the message's span and sampled transaction (so they are sent) without leaving its scope.

        They are finished inside the message's own scopes, entered and left again here, so that the
        event carries the message's scope data and not that of the thread or task that asked.
        An unsampled transaction is left for :meth:`exit`, which accounts for it.
        """
        if self.sent:
            return
        self.sent = True
        processing = self.processing
        span, processing.span = processing.span, None
        transaction = processing.transaction
        sampled = getattr(transaction, "sampled", None) is True
        if sampled:
            processing.transaction = None
        try:
            with sdk.in_scopes((self.scope, self.isolation_scope)):
                if span is not None:
                    sdk.finish_span(span, error)
                if transaction is not None and sampled:
                    sdk.finish_span(transaction, error)
        except Exception:
            logger.debug("busprop: could not send a message's transaction", exc_info=True)


class CurrentProcessing:
    """The processing of the message a loop body (or a connection) is working on, if any.

    Adapters whose receive call is not an iterator (``recv()``) use it directly: ``start`` when a
    message is returned, ``finish`` when the next one is asked for. ``owner`` is the object (an
    iterator, a connection) whose collection sends a message still open; nothing else happens at
    a collection (see the module's docstring).
    """

    __slots__ = ("_entered",)

    def __init__(self, owner: object = None) -> None:
        self._entered: _Entered | None = None
        if owner is not None:
            try:
                weakref.finalize(owner, self.send).atexit = False
            except TypeError:  # an owner without weak references: its open message is not sent
                logger.debug("busprop: %r cannot be watched for collection", type(owner))

    @property
    def processing(self) -> MessageProcessing | None:
        """The current message's processing, until it ends or is sent from elsewhere."""
        entered = self._entered
        return entered.processing if entered is not None and not entered.sent else None

    def start(self, processing: MessageProcessing) -> None:
        """Enter ``processing``: the message's trace is the current one until it is finished."""
        self.finish()  # a message sent from elsewhere leaves its scope here first
        self._entered = _Entered(processing)

    def finish(self, error: BaseException | None = None) -> None:
        """End the current message's processing, failed with ``error`` if given.

        In the context that entered it, it is exited: the transaction is sent and the scope left.
        Anywhere else the transaction is sent and the scope left to that context's next step.
        """
        entered = self._entered
        if entered is None:
            return
        if entered.claim():
            self._entered = None
            entered.exit(error)
        else:
            entered.send(error)

    def loop_left(self, broke: bool, managed: bool) -> None:
        """A loop over the messages ended without asking for another one.

        ``broke``: by ``break`` or ``return``, else by an exception (or the loop object was
        collected late). ``managed``: a ``with`` block around the loop will see the exception, so
        the message is left open for its exit. Otherwise the message ends here when nothing opened
        since is still open in the context that entered it; anywhere else its transaction is sent.
        """
        entered = self._entered
        if entered is None or (managed and not broke):
            return
        if entered.in_place() and entered.claim():
            self._entered = None
            entered.exit(None)
        else:
            entered.send()

    def send(self) -> None:
        """Send the current message's transaction, touching no context's scopes: for collections."""
        entered = self._entered
        if entered is not None:
            entered.send()


class _Loop(Iterator[T]):
    """One ``for`` over a traced iterator; only that loop holds it (see :func:`loop_of`)."""

    __slots__ = ("__weakref__", "_next")

    def __init__(self, next_message: Callable[[], T]) -> None:
        self._next = next_message

    def __iter__(self) -> _Loop[T]:
        return self

    def __next__(self) -> T:
        return self._next()


class _AsyncLoop(AsyncIterator[T]):
    """One ``async for`` over a traced iterator; only that loop holds it (see :func:`async_loop_of`)."""

    __slots__ = ("__weakref__", "_next")

    def __init__(self, next_message: Callable[[], Awaitable[T]]) -> None:
        self._next = next_message

    def __aiter__(self) -> _AsyncLoop[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        return self._next()


#: The weak references watching live loop objects (a weak reference must outlive its referent
#: for its callback to run).
_watching: set[weakref.ref[Any]] = set()


def loop_of(next_message: Callable[[], T], on_left: Callable[[bool], None]) -> Iterator[T]:
    """What ``__iter__`` returns: a loop object calling ``next_message``; ``on_left(broke)`` when dropped."""
    return _watch(_Loop(next_message), on_left)


def async_loop_of(
    next_message: Callable[[], Awaitable[T]], on_left: Callable[[bool], None]
) -> AsyncIterator[T]:
    """What ``__aiter__`` returns: as :func:`loop_of`, for ``async for``."""
    return _watch(_AsyncLoop(next_message), on_left)


L = TypeVar("L")


def _watch(loop: L, on_left: Callable[[bool], None]) -> L:
    def dropped(reference: weakref.ref[Any]) -> None:
        _watching.discard(reference)
        try:
            on_left(_left_by_break(sys._getframe(1)))
        except Exception:
            logger.debug("busprop: could not end a message where its loop ended", exc_info=True)

    _watching.add(weakref.ref(loop, dropped))
    return loop


def _left_by_break(frame: FrameType) -> bool:
    """Whether ``frame``, dropping a loop object, leaves its loop by ``break`` or ``return``.

    CPython pops a loop's iterator with ``POP_TOP`` (or ``POP_ITER``) when the loop is left that
    way, while an exception drops it during unwinding, at the instruction that raised (which is
    never one of those). Any other answer (a collection elsewhere, another interpreter) reads as
    "not a break", the safe side: a message is then left to a ``with`` block that will see an
    exception, and otherwise ended the same way.
    """
    code = frame.f_code.co_code
    return 0 <= frame.f_lasti < len(code) and code[frame.f_lasti] in _LOOP_EXITS


class TracedIterator(Generic[T]):
    """Wrap a sync iterable; ``start(message)`` returns the processing for each message.

    ``next()`` works on it directly (the previous message ends when the next is asked for);
    ``for`` iterates a loop object of its own, whose end ends the message (module docstring).
    """

    def __init__(self, iterable: Iterable[T], start: Callable[[T], MessageProcessing]) -> None:
        self._iterator = iter(iterable)
        self._start = start
        self._current = CurrentProcessing(self)
        self._managed = False

    def __iter__(self) -> Iterator[T]:
        return loop_of(self.__next__, self._loop_left)

    def __next__(self) -> T:
        self._current.finish()
        item = next(self._iterator)
        self._current.start(_processing_for(self._start, item))
        return item

    def _loop_left(self, broke: bool) -> None:
        self._current.loop_left(broke, self._managed)

    def close(self) -> None:
        """End the current message's processing (the wrapped iterator is left open)."""
        self._current.finish()

    def __enter__(self) -> TracedIterator[T]:
        self._managed = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._managed = False
        self._current.finish(exc)


class TracedAsyncIterator(Generic[T]):
    """Wrap an async iterable; ``start(message)`` returns the processing for each message.

    As :class:`TracedIterator`, for ``async for``, ``anext()``, ``aclose()`` and ``async with``.
    """

    def __init__(self, iterable: AsyncIterable[T], start: Callable[[T], MessageProcessing]) -> None:
        self._iterator: AsyncIterator[T] = iterable.__aiter__()
        self._start = start
        self._current = CurrentProcessing(self)
        self._managed = False

    def __aiter__(self) -> AsyncIterator[T]:
        return async_loop_of(self.__anext__, self._loop_left)

    async def __anext__(self) -> T:
        self._current.finish()
        item = await self._iterator.__anext__()
        self._current.start(_processing_for(self._start, item))
        return item

    def _loop_left(self, broke: bool) -> None:
        self._current.loop_left(broke, self._managed)

    async def aclose(self) -> None:
        """End the current message's processing (the wrapped iterator is left open)."""
        self._current.finish()

    async def __aenter__(self) -> TracedAsyncIterator[T]:
        self._managed = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._managed = False
        self._current.finish(exc)


def _processing_for(start: Callable[..., MessageProcessing], item: T, *args: Any) -> MessageProcessing:
    """``start(item, *args)``, or an empty processing (a fresh trace) when the adapter's reader fails."""
    try:
        return start(item, *args)
    except Exception:
        logger.debug("busprop: could not read the message's details", exc_info=True)
        return continue_trace(system="unknown", destination="unknown")
