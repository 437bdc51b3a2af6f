"""Background jobs on Huey: thin tasks that take a job id, call a service, record the state.

See ``docs/store.md`` ("Jobs") for the life cycle and recovery semantics.
"""

from __future__ import annotations

from encore.jobs.dispatch import SweepReport, dispatch_pending, install_dispatch_hook, sweep_jobs
from encore.jobs.queue import Queues, make_huey, make_queues
from encore.jobs.recovery import RecoveryReport, recover_stale_jobs, requeue_lost_messages
from encore.jobs.registry import get_handler, job_handler, register_handler, registered_kinds
from encore.jobs.runner import JobContext, release_job, run_job
from encore.store.enqueue import enqueue_job

__all__ = [
    "JobContext",
    "Queues",
    "RecoveryReport",
    "SweepReport",
    "dispatch_pending",
    "enqueue_job",
    "get_handler",
    "install_dispatch_hook",
    "job_handler",
    "make_huey",
    "make_queues",
    "recover_stale_jobs",
    "register_handler",
    "registered_kinds",
    "release_job",
    "requeue_lost_messages",
    "run_job",
    "sweep_jobs",
]
