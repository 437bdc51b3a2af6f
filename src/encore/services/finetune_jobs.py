"""The ``finetune`` job (training queue): a run id in, :func:`run_finetune` inside."""

from __future__ import annotations

import logging

from encore.jobs import JobContext, job_handler
from encore.services import finetune
from encore.services.jobs import service_context

logger = logging.getLogger(__name__)


@job_handler(finetune.JOB_KIND)
def finetune_job(job: JobContext) -> None:
    """Run (or, after a dead worker, resume) the fine-tuning run ``payload["run_id"]``."""
    ctx = service_context(job)

    def report(fraction: float, message: str | None = None) -> None:
        job.report_progress(min(max(fraction, 0.0), 1.0), message)

    finetune.run_finetune(ctx, int(job.payload["run_id"]), report)
