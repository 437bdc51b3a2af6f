"""Job handlers: ids in, one service call inside (registered on import by the workers)."""

from __future__ import annotations

import logging
import threading

from encore.config import get_settings
from encore.jobs import JobContext, job_handler
from encore.services import generation
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


def _progress(job: JobContext):  # noqa: ANN202
    def report(fraction: float, message: str | None = None) -> None:
        job.report_progress(min(max(fraction, 0.0), 1.0), message)

    return report


@job_handler("embed_song")
def embed_song_job(job: JobContext) -> None:
    ctx = service_context(job)
    song_id = int(job.payload["song_id"])
    try:
        generation.embed_song(ctx, song_id, _progress(job))
    except Exception:
        generation.mark_song_failed(ctx, song_id)
        raise


@job_handler("generate_clip")
def generate_clip_job(job: JobContext) -> None:
    ctx = service_context(job)
    clip_id = int(job.payload["clip_id"])
    try:
        generation.generate_clip(ctx, clip_id, _progress(job))
    except Exception:
        generation.mark_clip_failed(ctx, clip_id)
        raise
