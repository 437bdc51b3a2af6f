"""Background jobs. The row, not the queue, is the source of truth for a job's state."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from encore.store.base import Base, enum_type, utcnow
from encore.store.enums import JobStatus, QueueName


class Job(Base):
    """A unit of background work: generate a clip, embed a song, fine-tune a model…

    ``kind`` selects the handler (``encore.jobs.registry``); ``payload`` holds ids only
    (JSON). ``enqueued_at`` is null until the job has been handed to the queue (after the
    creating transaction committed). A worker claims a queued job (``attempts`` + 1,
    ``worker_id``, ``heartbeat_at``) and keeps ``heartbeat_at`` fresh; a running job whose
    heartbeat is stale is re-queued until ``max_attempts`` is reached, then failed.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_status_queue", "status", "queue"),
        sa.Index("ix_jobs_status_heartbeat_at", "status", "heartbeat_at"),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        sa.CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64), index=True)
    queue: Mapped[QueueName] = mapped_column(enum_type(QueueName), default=QueueName.GENERATE)
    status: Mapped[JobStatus] = mapped_column(enum_type(JobStatus), default=JobStatus.QUEUED)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(default=0.0)
    message: Mapped[str | None] = mapped_column(sa.String(500))
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    worker_id: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status} attempt {self.attempts}>"
