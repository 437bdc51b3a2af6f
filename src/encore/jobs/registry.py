"""Job handlers by kind: services register them, :func:`encore.jobs.runner.run_job` calls them.

Example::

    from encore.jobs import JobContext, job_handler

    @job_handler("generate")
    def generate_clip_job(ctx: JobContext) -> None:
        clip_id = int(ctx.payload["clip_id"])
        ...                                   # one service call
        ctx.report_progress(0.5, "denoising")

A handler must be idempotent: after a worker dies mid-job the job runs again from the
start (``ctx.attempt`` says which attempt this is), so it must write its results under
keys derived from its ids, or check whether they already exist.

Workers import :data:`HANDLER_MODULES` (skipping those not written yet) so that every
service's handlers are registered before the first job runs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from encore.errors import ConfigurationError

if TYPE_CHECKING:
    from encore.jobs.runner import JobContext

logger = logging.getLogger(__name__)

#: Modules that register job handlers when imported (the services' job entry points).
HANDLER_MODULES: tuple[str, ...] = ("encore.services.jobs", "encore.services.finetune_jobs")


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


def import_handler_modules(extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Import :data:`HANDLER_MODULES` and ``extra``; return the modules imported.

    Modules of :data:`HANDLER_MODULES` that do not exist yet are skipped; an ``extra``
    module that cannot be imported is an error.
    """
    imported = []
    for name in HANDLER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                logger.debug("handler module %s not present", name)
                continue
            raise
        imported.append(name)
    for name in extra:
        importlib.import_module(name)
        imported.append(name)
    return imported


def _qualname(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
