"""Job handlers by kind: :func:`encore.jobs.runner.run_job` calls the one of a job's kind.

The platform's handlers are declared in :mod:`encore.jobs.tasks` and registered at start-up
with :func:`~encore.jobs.tasks.register_tasks`; more (tests, plug-ins) with
:func:`register_handler` or the decorator::

    from encore.jobs import JobContext, job_handler

    @job_handler("wait_for_release")
    def wait_for_release(ctx: JobContext) -> None:
        ...                                   # one service call
        ctx.report_progress(0.5, "waiting")

A handler must be idempotent: after a worker dies mid-job the job runs again from the
start (``ctx.attempt`` says which attempt this is), so it must write its results under
keys derived from its ids, or check whether they already exist.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from encore.errors import ConfigurationError

if TYPE_CHECKING:
    from encore.jobs.runner import JobContext

class JobHandler(Protocol):
    def __call__(self, ctx: JobContext, /) -> Any: ...


_HANDLERS: dict[str, JobHandler] = {}


def job_handler(kind: str, *, replace: bool = False) -> Callable[[JobHandler], JobHandler]:
    """Register the decorated function as the handler of jobs of ``kind``.

    Raises
    ------
    ConfigurationError
        If another handler is already registered for ``kind`` and ``replace`` is false.
    """

    def decorator(func: JobHandler) -> JobHandler:
        register_handler(kind, func, replace=replace)
        return func

    return decorator


def register_handler(kind: str, func: JobHandler, *, replace: bool = False) -> None:
    """Register ``func`` for ``kind`` (the non-decorator form of :func:`job_handler`)."""
    existing = _HANDLERS.get(kind)
    if existing is not None and existing is not func and not replace:
        raise ConfigurationError(
            f"job kind {kind!r} already has handler {_qualname(existing)}; "
            f"refusing to replace it with {_qualname(func)}"
        )
    _HANDLERS[kind] = func


def unregister_handler(kind: str) -> None:
    """Forget the handler of ``kind`` (tests)."""
    _HANDLERS.pop(kind, None)


def get_handler(kind: str) -> JobHandler | None:
    """The handler registered for ``kind``, or ``None``."""
    return _HANDLERS.get(kind)


def registered_kinds() -> list[str]:
    """The job kinds with a handler, sorted."""
    return sorted(_HANDLERS)


def import_modules(names: tuple[str, ...] | list[str]) -> list[str]:
    """Import ``names`` (modules that register more handlers, e.g. a worker's ``--import``).

    Raises
    ------
    ModuleNotFoundError
        A module that does not exist: a handler that was asked for is never skipped.
    """
    for name in names:
        importlib.import_module(name)
    return list(names)


def _qualname(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
