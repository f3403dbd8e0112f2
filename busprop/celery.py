"""Celery: one trace from the code that enqueues a task to every task it sets off, with signals only.

Celery announces every publish and every task run with signals, so busprop needs no monkeypatching:
``before_task_publish``/``after_task_publish`` bracket a ``queue.publish`` span and write the trace
into the task message headers, ``task_prerun``/``task_postrun`` bracket a ``queue.process``
transaction that continues it. The headers go at the top level of the message and again in its
nested ``headers`` dict, where sentry-sdk's own Celery worker reads them (celery#4875), with the
publish time under sentry-sdk's key, so either side of the broker may run either integration.

Nothing outlives its signal on a thread. A publish that raises sends no signal at all, so its span
is current only while the headers are written; a run whose ``task_postrun`` never came is ended by
the next run on its thread, once Celery is done with it; beat's mark dies with beat's thread.

Two ways in: ``sentry_sdk.init(integrations=[busprop.celery.CeleryIntegration()])``, or
:func:`install` next to any ``sentry_sdk.init``. sentry-sdk enables its own CeleryIntegration
whenever Celery is importable, and only one of the two may trace a task, or every header is written
twice and every task has two transactions. busprop's Integration, listed in ``integrations=[...]``,
leaves sentry-sdk's out of that client, as sentry-sdk's own integrations do for each other; one
that lists sentry-sdk's explicitly keeps it, and sentry-sdk's leads. :func:`install` never takes
the lead from sentry-sdk's: it steps aside, with a warning naming the one-line fix.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from busprop import sdk
from busprop.carrier import BAGGAGE, NO_TRACE, SENTRY_TRACE, extract, write
from busprop.config import get_config, should_propagate
from busprop.integration import BusIntegration
from busprop.processing import MessageProcessing, continue_trace, mechanism_of
from busprop.publishing import Publishing, inject, publish
from busprop.spandata import DESTINATION, RETRY_COUNT


class CeleryMissing(sdk.DidNotEnable, ImportError):
    """Celery is not installed: ``sentry_sdk.init`` refuses the Integration, an import fails."""


try:
    from celery import current_app, signals, states
    from celery.exceptions import Ignore, Reject, Retry
except ImportError as missing:
    raise CeleryMissing(f"busprop.celery needs Celery (pip install celery): {missing}") from None

__all__ = [
    "ENQUEUED_TIME",
    "IDENTIFIER",
    "ORIGIN",
    "PROPAGATE",
    "CeleryIntegration",
    "install",
    "is_leading",
    "uninstall",
]

logger = logging.getLogger("busprop")

#: The publish time (float epoch seconds) in the headers; sentry-sdk's Celery integration uses this key.
ENQUEUED_TIME = "sentry-task-enqueued-time"
#: Per-task opt-out honoured by sentry-sdk's integration: ``apply_async(headers={PROPAGATE: False})``.
PROPAGATE = "sentry-propagate-traces"
#: The nested headers dict Celery hands to the worker as ``task.request.headers`` (celery#4875).
NESTED = "headers"
ORIGIN = "auto.queue.busprop.celery"
SYSTEM = "celery"
#: sentry-sdk's CeleryIntegration identifier.
SENTRY_INTEGRATION = "celery"
#: busprop's :class:`CeleryIntegration` identifier, and the bus its options apply to.
IDENTIFIER = "busprop_celery"

#: Transaction status for each final task state (``task_postrun``'s ``state``).
STATUS_BY_STATE = {
    states.SUCCESS: "ok",
    states.FAILURE: "internal_error",
    states.RETRY: "aborted",
    states.IGNORED: "aborted",
    states.REJECTED: "aborted",
}

#: Exceptions a task raises to steer Celery (retry, ignore, reject), not errors.
CONTROL_FLOW = (Retry, Ignore, Reject)


@dataclass(eq=False)
class _Sending:
    """A publish between ``before_task_publish`` and ``after_task_publish``."""

    task_id: Any
    publishing: Publishing


@dataclass(eq=False)
class _Run:
    """A task between ``task_prerun`` and ``task_postrun``: its request (Celery pops it when the run
    ends, with or without ``task_postrun``) and the isolation scope the run entered."""

    task_id: Any
    processing: MessageProcessing
    task: Any
    request: Any
    scope: Any = None
    status: str | None = None


class _BeatThreads:
    """Which threads run beat. A mark lives in the thread's own storage and dies with the thread:
    a thread id is reused once its thread has ended, and a later thread must not pass for beat."""

    def __init__(self) -> None:
        self._marks = threading.local()

    def mark_current(self) -> None:
        self._marks.beat = True

    def is_current(self) -> bool:
        return bool(getattr(self._marks, "beat", False))

    def clear(self) -> None:
        self._marks = threading.local()


_sendings: ContextVar[tuple[_Sending, ...]] = ContextVar("busprop_celery_sendings", default=())
_runs: ContextVar[tuple[_Run, ...]] = ContextVar("busprop_celery_runs", default=())
_beat_threads = _BeatThreads()
_systems: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
#: ``installed``: :func:`install` was called; ``integration``: :class:`CeleryIntegration` is set up;
#: ``connected``: the signal receivers are connected (either of the two).
_state: dict[str, Any] = {"installed": False, "integration": False, "connected": False, "app": None}
#: The clients busprop already warned about stepping aside for sentry-sdk's integration.
_warned: weakref.WeakSet[Any] = weakref.WeakSet()


class CeleryIntegration(BusIntegration):
    """``sentry_sdk.init(integrations=[busprop.celery.CeleryIntegration()])`` traces Celery.

    Publishers, workers and beat alike, with Celery's signals (see the module's docstring). Listed
    in ``integrations=[...]``, it leaves sentry-sdk's auto-enabled CeleryIntegration out of that
    client, so each task is traced once, by busprop; listing sentry-sdk's too keeps sentry-sdk's
    in the lead (busprop's then steps aside with a warning). The options apply to Celery's tasks
    only and win over :func:`busprop.configure`'s; one not given is ``configure()``'s. A bad value
    raises :class:`busprop.ConfigurationError` naming it, here, before ``sentry_sdk.init``.
    """

    identifier = IDENTIFIER
    public_name = "busprop.celery.CeleryIntegration"

    def built(self) -> None:
        """Leave sentry-sdk's auto-enabled CeleryIntegration out of the clients initialised with this one."""
        if not sdk.deactivate_auto_enabled(IDENTIFIER, SENTRY_INTEGRATION):
            logger.warning(
                "busprop: this sentry-sdk cannot leave its CeleryIntegration out; pass "
                "disabled_integrations=[sentry_sdk.integrations.celery.CeleryIntegration] to let "
                "busprop.celery.CeleryIntegration trace Celery (until then it steps aside)"
            )

    @staticmethod
    def setup_once() -> None:
        sdk.require_supported_sdk()
        _state["integration"] = True
        _connect()

    @staticmethod
    def uninstall() -> None:
        """Disconnect (unless :func:`install` is in force); a later ``sentry_sdk.init`` sets up again."""
        _state["integration"] = False
        if not _state["installed"]:
            _disconnect()
        with sdk.capture_internal_exceptions():
            sdk.restore_auto_enabled(IDENTIFIER)
            sdk.forget_integration(IDENTIFIER)


def is_leading() -> bool:
    """Whether busprop traces Celery for the active client: its :class:`CeleryIntegration` is set up
    on it, or :func:`install` was called, and sentry-sdk's own CeleryIntegration is not enabled on
    it (when it is, it leads and busprop steps aside, with a warning)."""
    return bool(_state["connected"]) and _leads()


def _leads() -> bool:
    """Whether busprop traces Celery for the active client (per signal: one lookup of its integrations)."""
    enabled = sdk.enabled_integrations()
    if IDENTIFIER not in enabled and not _state["installed"]:
        return False
    if SENTRY_INTEGRATION in enabled:
        _warn_stepping_aside()
        return False
    return True


def _warn_stepping_aside() -> None:
    """Say once per client that busprop is not tracing Celery, and the line that changes it."""
    client = sdk.current_client()
    if client in _warned:
        return
    with contextlib.suppress(TypeError):
        _warned.add(client)
    if sdk.integration_enabled(IDENTIFIER) and sdk.user_listed_integration(SENTRY_INTEGRATION):
        fix = (
            "sentry_sdk.integrations.celery.CeleryIntegration is listed in integrations=[...]; "
            "remove it to let busprop.celery.CeleryIntegration trace Celery"
        )
    elif sdk.integration_enabled(IDENTIFIER):
        fix = "pass disabled_integrations=[sentry_sdk.integrations.celery.CeleryIntegration]"
    else:
        fix = (
            "let busprop trace Celery with sentry_sdk.init(integrations="
            "[busprop.celery.CeleryIntegration()]) instead of busprop.celery.install()"
        )
    logger.warning("busprop: sentry-sdk's CeleryIntegration traces Celery, busprop steps aside: %s", fix)


def _guarded(handler: Callable[..., None], *, starts: bool) -> Callable[..., None]:
    """Never let a handler raise into Celery; one that starts tracing runs only when busprop leads
    (one that finishes always runs: it only ends what busprop started)."""

    def receiver(sender: Any = None, **kwargs: Any) -> None:
        try:
            if not starts or _leads():
                handler(sender, **kwargs)
        except Exception:
            logger.debug("busprop: celery %s handler failed", handler.__name__, exc_info=True)

    receiver.__name__ = handler.__name__
    return receiver


def _system(app: Any) -> str:
    """The broker transport (``redis``, ``amqp``, ``memory``...) of ``app``, looked up once."""
    if app is None:
        return SYSTEM
    try:
        return _systems[app]
    except (KeyError, TypeError):
        pass
    try:
        system = str(app.connection_for_write().transport.driver_type)
    except Exception:
        system = SYSTEM
    with contextlib.suppress(TypeError):  # an app that cannot be weakly referenced
        _systems[app] = system
    return system


def _publishing_app() -> Any:
    app = _state["app"]
    return app if app is not None else current_app._get_current_object()


# ---------------------------------------------------------------- publishing side


def _message_id(headers: Mapping[str, Any], body: Any) -> Any:
    if "id" in headers:
        return headers["id"]
    return body.get("id") if isinstance(body, Mapping) else None  # protocol 1 keeps it in the body


def _in_beat_without_span() -> bool:
    """Beat runs outside any transaction: each scheduled run must start its own trace."""
    return _beat_threads.is_current() and sdk.current_span() is None


def _write_nested(headers: dict[str, Any], published_at: float) -> None:
    """Copy the trace written at the top level into the nested headers dict, with the publish time."""
    headers[ENQUEUED_TIME] = published_at
    nested = headers.get(NESTED)
    if nested is None:
        nested = headers[NESTED] = {}
    if not isinstance(nested, dict):
        return
    values = {key: headers[key] for key in (SENTRY_TRACE, BAGGAGE) if isinstance(headers.get(key), str)}
    write(nested, values)
    nested[ENQUEUED_TIME] = published_at


def _before_publish(sender: Any, headers: Any = None, body: Any = None, **kwargs: Any) -> None:
    if not isinstance(headers, dict):
        return
    _close_sendings(_sendings.get(), failed=True)  # a publish that raised never saw after_task_publish
    if not headers.pop(PROPAGATE, True):
        return
    name = sender if isinstance(sender, str) else str(headers.get("task"))
    if not should_propagate(name, IDENTIFIER):
        return
    published_at = time.time()
    if _in_beat_without_span():
        headers[ENQUEUED_TIME] = published_at  # no trace headers: the worker starts a fresh trace
        return
    queue = kwargs.get("routing_key") or kwargs.get("exchange") or None
    publishing = publish(
        headers,
        system=_system(_publishing_app()),
        destination=name,
        message_id=_message_id(headers, body),
        name=name,
        origin=ORIGIN,
        extra_data={DESTINATION: queue, RETRY_COUNT: headers.get("retries")},
        bus=IDENTIFIER,
    )
    previous = sdk.current_span()
    publishing.__enter__()
    _step_out_of(publishing, previous)
    _sendings.set((*_sendings.get(), _Sending(_message_id(headers, body), publishing)))
    _write_nested(headers, published_at)


def _step_out_of(publishing: Publishing, previous: Any) -> None:
    """Make the span that was current before the publish current again, once the headers are written.

    A publish that raises never sends ``after_task_publish``, and no signal tells of the error:
    a ``queue.publish`` span left current would adopt everything the caller does next.
    """
    span = publishing.span
    if span is not None and sdk.current_span() is span:
        sdk.set_current_span(previous)


def _after_publish(sender: Any, headers: Any = None, body: Any = None, **kwargs: Any) -> None:
    pending = _sendings.get()
    if not pending or not isinstance(headers, Mapping):
        return
    task_id = _message_id(headers, body)
    for index in range(len(pending) - 1, -1, -1):
        if pending[index].task_id == task_id:
            _close_sendings(pending[index + 1 :], failed=True)
            _close_sendings(pending[index : index + 1], failed=False)
            return


def _close_sendings(sendings: tuple[_Sending, ...], *, failed: bool) -> None:
    """End publish spans, newest first; one whose publish raised ends as failed.

    The spans are not current (see :func:`_step_out_of`): each is finished on its own, so that
    the current span stays what it is.
    """
    if not sendings:
        return
    remaining = tuple(sending for sending in _sendings.get() if all(sending is not s for s in sendings))
    _sendings.set(remaining)
    for sending in reversed(sendings):
        span, sending.publishing.span = sending.publishing.span, None
        if span is not None:
            sdk.finish_span_elsewhere(span, failed=failed)


# ---------------------------------------------------------------- worker side


def _carriers(request: Any) -> tuple[Any, ...]:
    """Top-level message headers (the request's attributes) and the nested headers dict."""
    return (vars(request), getattr(request, "headers", None))


def _published_at(carriers: tuple[Any, ...]) -> float | None:
    for carrier in carriers:
        if isinstance(carrier, Mapping):
            value = carrier.get(ENQUEUED_TIME)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
    return None


def _delivery_queue(delivery_info: Any) -> str | None:
    if isinstance(delivery_info, Mapping):
        queue = delivery_info.get("routing_key") or delivery_info.get("exchange")
        if queue:
            return str(queue)
    return None


def _queue(request: Any, task: Any) -> str | None:
    queue = _delivery_queue(getattr(request, "delivery_info", None))
    if queue is None:
        queue = getattr(task, "queue", None) or task.app.conf.task_default_queue
    return str(queue) if queue else None


def _runs_eagerly(request: Any) -> bool:
    """Whether ``apply()`` runs the task in this process.

    ``request.is_eager`` alone can be set by any producer (Celery copies message headers onto the
    request); ``delivery_info`` comes from the broker on a worker and says ``is_eager`` only in
    ``Task.apply``.
    """
    delivery_info = getattr(request, "delivery_info", None)
    return (
        bool(getattr(request, "is_eager", False))
        and isinstance(delivery_info, dict)
        and (delivery_info.get("is_eager") is True)
    )


def _eager_carriers(request: Any, task: Any, carriers: tuple[Any, ...]) -> tuple[Any, ...]:
    """An eager task was never published: it continues the caller's trace, as a published one would."""
    if not _runs_eagerly(request) or extract(*carriers) is not NO_TRACE:
        return carriers
    headers: dict[str, Any] = {}
    inject(headers, destination=task.name, system=SYSTEM, bus=IDENTIFIER)
    return (headers,)


def _task_processing(task: Any, task_id: Any, request: Any, args: Any, kwargs: Any) -> MessageProcessing:
    carriers = _eager_carriers(request, task, _carriers(request))
    return continue_trace(
        *carriers,
        system=_system(task.app),
        destination=task.name,
        message_id=task_id,
        retry_count=getattr(request, "retries", None),
        published_at=_published_at(carriers),
        name=task.name,
        origin=ORIGIN,
        extra_data={DESTINATION: _queue(request, task)},
        sampling_context={"celery_job": {"task": task.name, "args": list(args or ()), "kwargs": kwargs}},
        bus=IDENTIFIER,
    )


def _prerun(sender: Any, task_id: Any = None, task: Any = None, **kwargs: Any) -> None:
    if task is None:
        return
    _close_sendings(_sendings.get(), failed=True)  # a publish in this context that raised
    _end_runs(tuple(run for run in _runs.get() if not _still_running(run)))
    request = task.request
    processing = _task_processing(task, task_id, request, kwargs.get("args"), kwargs.get("kwargs"))
    processing.__enter__()
    _runs.set((*_runs.get(), _Run(task_id, processing, task, request, sdk.current_isolation_scope())))


def _still_running(run: _Run) -> bool:
    """Whether Celery is still running ``run``: its request is still on its task's request stack.

    Celery pops the request when a run ends, whether or not ``task_postrun`` reached busprop
    (busprop uninstalled mid-run, an error in its receiver); a run enclosing an eager ``apply()``
    is still on it. An unreadable stack counts as running.
    """
    try:
        return any(request is run.request for request in run.task.request_stack.stack)
    except Exception:
        return True


def _end_runs(runs: tuple[_Run, ...]) -> None:
    """End runs whose ``task_postrun`` never came, newest first, with the status recorded (else
    ``unknown``), so that the thread's next task starts outside them.

    A run whose isolation scope is still current is left through it, which puts back the scopes
    in place before the run. One whose scope was left already (sentry-sdk's threading integration
    puts the scopes back after each work item of a thread pool) is ended inside its own scope,
    whose exit then puts back the scopes in place now: the transaction goes out with the run's
    tags, and the next task starts from the thread's scopes, not from those of an earlier task.
    """
    if not runs:
        return
    _runs.set(tuple(other for other in _runs.get() if all(other is not run for run in runs)))
    for run in reversed(runs):
        run.processing.set_status(run.status or "unknown")
        if run.scope is None or sdk.current_isolation_scope() is run.scope:
            run.processing.__exit__(None, None, None)
        else:
            with sdk.in_isolation_scope(run.scope):
                run.processing.__exit__(None, None, None)


def _find_run(task_id: Any) -> _Run | None:
    for run in reversed(_runs.get()):
        if run.task_id == task_id:
            return run
    return None


def _postrun(sender: Any, task_id: Any = None, state: Any = None, **kwargs: Any) -> None:
    run = _find_run(task_id)
    if run is None:
        return
    runs = _runs.get()
    _end_runs(runs[runs.index(run) + 1 :])  # runs entered after this one cannot still be running
    _runs.set(tuple(other for other in _runs.get() if other is not run))
    try:
        _close_sendings(_sendings.get(), failed=True)
        if run.status is None and state is None:  # an eager task that propagates: the error is in flight
            _mark_failed(run, sender, sys.exc_info()[1])
        run.processing.set_status(run.status or STATUS_BY_STATE.get(state, "unknown"))
    finally:
        run.processing.__exit__(None, None, None)  # the run's scope is left, whatever failed above


def _mark_failed(run: _Run, task: Any, exception: Any) -> None:
    """Record a task's error on its run (captured, unless the task declares it in ``throws``)."""
    if isinstance(exception, CONTROL_FLOW):
        run.status = "aborted"
        return
    if not isinstance(exception, Exception):
        return
    run.status = "internal_error"
    if get_config(IDENTIFIER).capture_exceptions and not isinstance(
        exception, getattr(task, "throws", ()) or ()
    ):
        sdk.capture_exception(exception, mechanism=mechanism_of(ORIGIN))


def _failure(sender: Any, task_id: Any = None, exception: Any = None, **kwargs: Any) -> None:
    run = _find_run(task_id)
    if run is not None:
        _mark_failed(run, sender, exception)


def _retry(sender: Any, request: Any = None, **kwargs: Any) -> None:
    run = _find_run(getattr(request, "id", None))
    if run is not None:
        run.status = "aborted"


def _record_unprocessed(name: str, message: Any, carriers: tuple[Any, ...], status: str, app: Any) -> None:
    """A task that will not run here (revoked, rejected, unknown) still ends its hop of the trace;
    ``message`` is the request or kombu message, for its id and delivery info."""
    headers = getattr(message, "headers", None)
    message_id = getattr(message, "id", None) or (headers.get("id") if isinstance(headers, Mapping) else None)
    processing = continue_trace(
        *carriers,
        system=_system(app),
        destination=name,
        message_id=message_id,
        published_at=_published_at(carriers),
        name=name,
        origin=ORIGIN,
        extra_data={DESTINATION: _delivery_queue(getattr(message, "delivery_info", None))},
        bus=IDENTIFIER,
    )
    with processing:
        processing.set_status(status)


def _revoked(sender: Any, request: Any = None, expired: bool = False, **kwargs: Any) -> None:
    task_id = getattr(request, "id", None)
    run = _find_run(task_id)
    if run is not None:
        run.status = "cancelled"
        return
    status = "deadline_exceeded" if expired else "cancelled"
    name = str(getattr(sender, "name", "unknown"))
    _record_unprocessed(name, request, _carriers(request), status, getattr(sender, "app", None))


def _message_carriers(message: Any) -> tuple[Any, ...]:
    headers = getattr(message, "headers", None)
    nested = headers.get(NESTED) if isinstance(headers, Mapping) else None
    return (headers, nested)


def _rejected(sender: Any, message: Any = None, **kwargs: Any) -> None:
    headers = getattr(message, "headers", None) or {}
    name = str(headers.get("task") or "unknown")
    app = getattr(sender, "app", None)
    _record_unprocessed(name, message, _message_carriers(message), "invalid_argument", app)


def _unknown(sender: Any, message: Any = None, name: Any = None, **kwargs: Any) -> None:
    app = getattr(sender, "app", None)
    _record_unprocessed(str(name or "unknown"), message, _message_carriers(message), "not_found", app)


def _beat_started(sender: Any, **kwargs: Any) -> None:
    _beat_threads.mark_current()


_RECEIVERS = (  # (signal, handler, whether it starts tracing)
    (signals.before_task_publish, _before_publish, True),
    (signals.after_task_publish, _after_publish, False),
    (signals.task_prerun, _prerun, True),
    (signals.task_postrun, _postrun, False),
    (signals.task_failure, _failure, False),
    (signals.task_retry, _retry, False),
    (signals.task_revoked, _revoked, True),
    (signals.task_rejected, _rejected, True),
    (signals.task_unknown, _unknown, True),
    (signals.beat_init, _beat_started, False),
)
_CONNECTED = [
    (signal, _guarded(handler, starts=starts), f"busprop.celery.{handler.__name__}")
    for signal, handler, starts in _RECEIVERS
]


def install(app: Any = None) -> None:
    """Trace Celery in this process: publishers, workers and beat alike. Installing again changes nothing.

    The form without an Integration, for any ``sentry_sdk.init``; when sentry-sdk's CeleryIntegration
    is enabled it leads and this hook steps aside, with a warning (list
    :class:`CeleryIntegration` instead to let busprop lead). Celery's signals are process-wide, so
    every app in the process is traced; ``app`` names the app whose broker transport is reported as
    ``messaging.system`` for publishes (default: the current app; workers always use the task's app).
    """
    if app is not None:
        _state["app"] = app
    if _state["installed"]:
        return
    _state["installed"] = True
    _connect()
    if sdk.integration_enabled(SENTRY_INTEGRATION):
        _warn_stepping_aside()


def uninstall() -> None:
    """Undo :func:`install`: Celery is left exactly as before it (unless :class:`CeleryIntegration`
    is set up, whose receivers stay)."""
    _state["installed"] = False
    _state["app"] = None
    if not _state["integration"]:
        _disconnect()


def _connect() -> None:
    if _state["connected"]:
        return
    for signal, receiver, uid in _CONNECTED:
        signal.connect(receiver, weak=False, dispatch_uid=uid)
    _state["connected"] = True


def _disconnect() -> None:
    for signal, receiver, uid in _CONNECTED:
        signal.disconnect(receiver, dispatch_uid=uid)
    _state["connected"] = False
    _beat_threads.clear()
