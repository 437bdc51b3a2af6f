"""Every job kind the platform runs, declared next to the queues: ids in, one service call.

:data:`TASKS` maps a job kind to its handler; :func:`register_tasks` puts them in the
registry. It is called at start-up by every process that runs jobs — the worker
(:func:`encore.jobs.worker.run_worker`) and, in immediate mode, the process that sends them
(:meth:`encore.services.context.ServiceContext.from_settings`). A job whose kind has no
handler fails with a message naming the kind (:func:`encore.jobs.runner.run_job`).

This module imports the services it calls; the services never import it (they enqueue jobs
by kind with :func:`encore.store.enqueue_job`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from encore.config import get_settings
from encore.jobs.registry import JobHandler, register_handler
from encore.jobs.runner import JobContext
from encore.services import finetune, generation
from encore.services.context import ServiceContext

logger = logging.getLogger(__name__)

_contexts: dict[int, ServiceContext] = {}
_lock = threading.Lock()


def service_context(job: JobContext) -> ServiceContext:
    """One service context per worker process and settings (no queues: jobs don't enqueue)."""
    settings = job.settings or get_settings()
    with _lock:
        ctx = _contexts.get(id(settings))
        if ctx is None:
            ctx = ServiceContext.from_settings(settings, queues=False)
            _contexts[id(settings)] = ctx
        return ctx


def _progress(job: JobContext) -> Callable[[float, str | None], None]:
    def report(fraction: float, message: str | None = None) -> None:
        job.report_progress(min(max(fraction, 0.0), 1.0), message)

    return report


def embed_song(job: JobContext) -> None:
    """Embed the uploaded song ``payload["song_id"]`` (generate queue)."""
    _marking_failure(job, "song_id", generation.embed_song, generation.mark_song_failed)


def generate_clip(job: JobContext) -> None:
    """Generate the clip ``payload["clip_id"]`` (generate queue)."""
    _marking_failure(job, "clip_id", generation.generate_clip, generation.mark_clip_failed)


def _marking_failure(
    job: JobContext,
    key: str,
    run: Callable[[ServiceContext, int, Callable[[float, str | None], None]], object],
    mark_failed: Callable[[ServiceContext, int], object],
) -> None:
    """``run(ctx, payload[key], progress)``; if it raises, ``mark_failed(ctx, payload[key])``
    (the listener sees the failure) and raise again (the runner records the error)."""
    ctx = service_context(job)
    row_id = int(job.payload[key])
    try:
        run(ctx, row_id, _progress(job))
    except Exception:
        mark_failed(ctx, row_id)
        raise


def run_finetune(job: JobContext) -> None:
    """Run (or, after a dead worker, resume) the fine-tuning run ``payload["run_id"]`` (train queue)."""
    finetune.run_finetune(service_context(job), int(job.payload["run_id"]), _progress(job))


#: job kind -> handler
TASKS: dict[str, JobHandler] = {
    "embed_song": embed_song,
    "generate_clip": generate_clip,
    finetune.JOB_KIND: run_finetune,
}


def register_tasks() -> list[str]:
    """Register :data:`TASKS` (idempotent); the kinds registered.

    Raises
    ------
    ConfigurationError
        Another handler is already registered for one of the kinds.
    """
    for kind, handler in TASKS.items():
        register_handler(kind, handler)
    return sorted(TASKS)
