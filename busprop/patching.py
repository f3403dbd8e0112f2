"""The one way busprop's Integrations patch a client library: install, uninstall, never twice.

An Integration traces unchanged user code by wrapping methods of the client library's classes
(``KafkaProducer.send``, ``aio_pika.Exchange.publish`` ...). When each adapter kept its own dict of
originals and its patched methods looked the original up there on every call, a call racing
``uninstall()`` raised ``KeyError`` into user code, and two threads installing at once could wrap
a method twice or record a patch as the original. Here every patch is a wrapper in the manner of
``wrapt.FunctionWrapper`` (the wrapper type OpenTelemetry's instrumentations use as well), so that:

- a call never looks its original up: the wrapper holds it (``__wrapped__``) and hands it to the
  wrapper function already bound to the instance;
- each wrapper has an on/off switch; uninstalling turns it off before putting the original back,
  so a call that already holds the wrapper (a bound method taken earlier, a call racing the
  uninstall) just runs the original;
- each wrapper is marked with its patch's identity; installing looks for that mark down the
  attribute's ``__wrapped__`` chain (another instrumentation may have wrapped busprop's wrapper)
  and switches a found wrapper back on instead of wrapping a second time;
- one lock per :class:`Patches` makes install and uninstall atomic with respect to each other,
  and both are idempotent.

A wrapper function has wrapt's signature ``wrapper(wrapped, instance, args, kwargs)``: ``wrapped``
is the original (bound to ``instance`` for a method); it returns what the call returns.

A class implemented in C (confluent-kafka's ``Producer``) refuses new attributes, so its methods
cannot be wrapped in place. :func:`patchable_subclass` gives a Python subclass that takes the
patches instead, and :class:`Patches` (``names=``) puts it in place of the class under the names
the library exports while installed: objects created from those names afterwards are traced.

wrapt's proxy binds itself anew on every call through an instance (about half a microsecond, the
largest single cost of a patched send). A method that is a plain Python function or coroutine
function (every send and receive busprop patches but pika's generator ``BlockingChannel.consume``),
and a method such a subclass inherits from its C class, is therefore patched by a plain function
(a coroutine function for a coroutine function) carrying the same switch, mark and
``__wrapped__``: it keeps the method's name, kind and signature, and binds the original itself. A
module's function, a generator function, a static or class method or any other callable keeps
wrapt's proxy.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import wrapt

logger = logging.getLogger("busprop")

__all__ = ["Patches", "Wrapper", "patchable_subclass"]

#: ``wrapper(wrapped, instance, args, kwargs)``, wrapt's signature.
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

#: The attribute of a busprop ``FunctionWrapper`` holding its :class:`_Switch`. wrapt keeps
#: ``_self_``-prefixed attributes on the proxy itself rather than on the wrapped function.
_MARK = "_self_busprop_switch"
#: Depth limit when following ``__wrapped__`` chains (a cycle must not hang an install).
_MAX_DEPTH = 64


class _Absent:
    """The owner class did not define the attribute itself (it inherited it)."""


_ABSENT = _Absent()


class _Switch:
    """What a busprop ``FunctionWrapper`` calls: the patch's wrapper while on, else the original."""

    __slots__ = ("identity", "on", "patches", "wrapper")

    def __init__(self, patches: str, identity: str, wrapper: Wrapper) -> None:
        self.patches = patches
        self.identity = identity
        self.wrapper = wrapper
        self.on = True

    def __call__(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self.on:
            return self.wrapper(wrapped, instance, args, kwargs)
        return wrapped(*args, **kwargs)


class _KeepsInstanceChecks(type):
    """The metaclass of :func:`patchable_subclass` classes: ``isinstance`` against them still
    holds for every instance of the class they stand in for (created before, or by its other
    subclasses), so code checking ``isinstance(p, confluent_kafka.Producer)`` sees no change."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls.__mro__[1])

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls.__mro__[1])


def patchable_subclass(cls: type) -> type:
    """A subclass of ``cls`` (a C type that takes no patches) with its name, to be patched instead."""
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    return _KeepsInstanceChecks(cls.__name__, (cls,), namespace)


def _takes_plain_patch(owner: Any, own: Any, current: Any) -> bool:
    """Whether ``owner.attribute`` (``current``, ``own`` when the owner defines it) is patched by
    a plain function (:func:`_method_patch`) rather than a ``wrapt.FunctionWrapper``: a method a
    :func:`patchable_subclass` inherits from its C type, or a class's plain Python function or
    coroutine function. A module's function, a generator function, a static or class method and
    anything else take wrapt's proxy, which stands in for any callable."""
    if own is _ABSENT and isinstance(owner, _KeepsInstanceChecks):
        return True
    if isinstance(owner, ModuleType) or not inspect.isfunction(current):
        return False
    return not (inspect.isgeneratorfunction(current) or inspect.isasyncgenfunction(current))


def _method_patch(function: Any, switch: _Switch) -> Callable[..., Any]:
    """The patch of a method: a plain function calling ``switch`` as a ``FunctionWrapper`` would
    (``function`` bound to the instance), marked alike, and a coroutine function when ``function``
    is one (so ``inspect.iscoroutinefunction`` still holds). It saves wrapt's binding of a proxy
    on every call, about half a microsecond on every patched send and receive."""
    if inspect.iscoroutinefunction(function):

        async def patched_coroutine(self: Any, *args: Any, **kwargs: Any) -> Any:
            method = function.__get__(self, type(self))
            if switch.on:  # what ``switch(method, self, args, kwargs)`` does, one call less
                return await switch.wrapper(method, self, args, kwargs)
            return await method(*args, **kwargs)

        patched: Callable[..., Any] = patched_coroutine
    else:

        def patched_function(self: Any, *args: Any, **kwargs: Any) -> Any:
            method = function.__get__(self, type(self))
            if switch.on:
                return switch.wrapper(method, self, args, kwargs)
            return method(*args, **kwargs)

        patched = patched_function
    functools.update_wrapper(patched, function)  # its name, doc and ``__wrapped__``
    setattr(patched, _MARK, switch)
    return patched


@dataclass(frozen=True)
class _Swap:
    """A module attribute holding a class, replaced by a patchable subclass while installed."""

    module: Any
    name: str
    replacement: type


@dataclass(frozen=True)
class _Patch:
    owner: type
    attribute: str
    wrapper: Wrapper


@dataclass
class _Installed:
    """One installed patch: its switch, and what uninstalling puts back (if busprop placed it)."""

    switch: _Switch
    function_wrapper: Any
    placed: bool
    original: Any


def _switch_of(candidate: Any) -> _Switch | None:
    """The switch of a busprop wrapper, read on the proxy itself (wrapt forwards other lookups)."""
    try:
        switch = object.__getattribute__(candidate, _MARK)
    except AttributeError:
        return None
    return switch if isinstance(switch, _Switch) else None


def _chain(function: Any) -> Iterable[Any]:
    """``function`` and the objects down its ``__wrapped__`` chain."""
    for _ in range(_MAX_DEPTH):
        if function is None:
            return
        yield function
        function = getattr(function, "__wrapped__", None)


class Patches:
    """The patches of one Integration: ``Patches(name, [(owner class, attribute, wrapper), ...])``.

    :meth:`install` wraps every attribute (idempotent, thread-safe), :meth:`uninstall` restores the
    exact objects it replaced, and :meth:`original` gives a method without busprop's wrapper, for
    explicit wrappers (``traced_producer`` ...) that must not be traced a second time by the patch.
    Once :meth:`uninstall` returns no wrapper function starts any more; a call racing it runs
    either the wrapper or the original, and never raises for it.
    """

    def __init__(
        self,
        name: str,
        patches: Iterable[tuple[type, str, Wrapper]],
        *,
        names: Iterable[tuple[Any, str, type]] = (),
    ) -> None:
        self.name = name
        self._patches = tuple(_Patch(owner, attribute, wrapper) for owner, attribute, wrapper in patches)
        #: ``(module, attribute, replacement)``: set while installed, the original put back after.
        self._swaps = tuple(_Swap(module, attribute, replacement) for module, attribute, replacement in names)
        self._lock = threading.Lock()
        self._installed: dict[tuple[type, str], _Installed] = {}
        self._swapped: dict[_Swap, Any] = {}

    def __repr__(self) -> str:
        return f"Patches({self.name!r}, installed={self.installed})"

    @property
    def installed(self) -> bool:
        return bool(self._installed or self._swapped)

    def _identity(self, owner: type, attribute: str) -> str:
        """The mark of this Integration's wrapper on ``owner.attribute``, stable across reloads.

        ``owner`` may also be a module, for a function the library calls by its module name.
        """
        if isinstance(owner, ModuleType):
            return f"{self.name}:{owner.__name__}.{attribute}"
        return f"{self.name}:{owner.__module__}.{owner.__qualname__}.{attribute}"

    def install(self) -> bool:
        """Wrap every attribute; ``False`` (and nothing changes) when it is installed already.

        An attribute that cannot be wrapped (a client library version without it) is skipped and
        logged at debug level: instrumentation never makes ``sentry_sdk.init`` raise.
        """
        with self._lock:
            if self.installed:
                return False
            for patch in self._patches:
                try:
                    self._installed[(patch.owner, patch.attribute)] = self._wrap(patch)
                except Exception:
                    logger.debug(
                        "busprop: could not patch %s.%s", patch.owner, patch.attribute, exc_info=True
                    )
            for swap in self._swaps:
                current = swap.module.__dict__.get(swap.name)
                # Already in place (an earlier copy's install): put back the class it stands in for.
                self._swapped[swap] = swap.replacement.__mro__[1] if current is swap.replacement else current
                setattr(swap.module, swap.name, swap.replacement)
            return True

    def uninstall(self) -> bool:
        """Switch every wrapper off and restore the originals; ``False`` when nothing was installed."""
        with self._lock:
            if not self.installed:
                return False
            for swap, original in self._swapped.items():
                if swap.module.__dict__.get(swap.name) is swap.replacement:  # else replaced since: left
                    setattr(swap.module, swap.name, original)
            self._swapped.clear()
            for (owner, attribute), installed in reversed(self._installed.items()):
                # First: from here on, a call that already holds the wrapper runs the original.
                installed.switch.on = False
                try:
                    self._restore(owner, attribute, installed)
                except Exception:
                    logger.debug("busprop: could not restore %s.%s", owner, attribute, exc_info=True)
            self._installed.clear()
            return True

    def original(self, owner: type, attribute: str) -> Any:
        """``owner.attribute`` (unbound, as in the class) without this Integration's wrapper on top.

        It reads the class once, so it is consistent while another thread installs or uninstalls.
        """
        function = inspect.getattr_static(owner, attribute)
        for _ in range(_MAX_DEPTH):
            switch = _switch_of(function)
            if switch is None or switch.patches != self.name:
                break
            function = function.__wrapped__
        return function

    def _wrap(self, patch: _Patch) -> _Installed:
        owner, attribute = patch.owner, patch.attribute
        own = owner.__dict__.get(attribute, _ABSENT)
        current = own if own is not _ABSENT else inspect.getattr_static(owner, attribute)
        identity = self._identity(owner, attribute)
        for function in _chain(current):
            switch = _switch_of(function)
            if switch is not None and switch.identity == identity:
                return self._adopt(patch, function, switch, placed=function is own)
        switch = _Switch(self.name, identity, patch.wrapper)
        if _takes_plain_patch(owner, own, current):
            function_wrapper: Any = _method_patch(current, switch)
        else:
            function_wrapper = wrapt.FunctionWrapper(current, switch)
            setattr(function_wrapper, _MARK, switch)
        setattr(owner, attribute, function_wrapper)
        return _Installed(switch, function_wrapper, placed=True, original=own)

    @staticmethod
    def _adopt(patch: _Patch, function_wrapper: Any, switch: _Switch, *, placed: bool) -> _Installed:
        """Reuse a wrapper found already in place (never wrap twice): switch it on with ``patch``'s wrapper.

        One on top of the class attribute (left by an earlier copy of the module) is removed on
        uninstall; one below another instrumentation's wrapper can only be switched off.
        """
        logger.debug("busprop: %s.%s is already wrapped by busprop", patch.owner, patch.attribute)
        switch.wrapper = patch.wrapper
        switch.on = True
        return _Installed(switch, function_wrapper, placed=placed, original=function_wrapper.__wrapped__)

    @staticmethod
    def _restore(owner: type, attribute: str, installed: _Installed) -> None:
        if not installed.placed:
            return
        if owner.__dict__.get(attribute) is not installed.function_wrapper:
            logger.debug(
                "busprop: %s.%s was replaced after busprop patched it; left as it is", owner, attribute
            )
            return
        if installed.original is _ABSENT:
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, installed.original)
