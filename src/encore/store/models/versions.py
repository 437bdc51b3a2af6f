"""Model versions (v0, v1, …) and the fine-tuning runs that produce them."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from encore.store.base import Base, enum_type, utcnow
from encore.store.enums import TrainingStatus, VersionStatus

if TYPE_CHECKING:
    from encore.store.models.jobs import Job


class ModelVersion(Base):
    """A model folder (diffusers layout) plus its record.

    ``folder`` is where the version's files live (a local path or a blob-key prefix); the
    row is written only once the files are complete. Only ``active`` versions are served,
    drawn by ``ab_weight``. ``training_run`` is the run that produced it (none for v0 and
    imported models); ``metrics`` holds the weight-free evaluation figures.
    """

    __tablename__ = "model_versions"
    __table_args__ = (sa.CheckConstraint("ab_weight >= 0", name="ab_weight_nonnegative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    folder: Mapped[str] = mapped_column(sa.String(1024))
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="RESTRICT")
    )
    status: Mapped[VersionStatus] = mapped_column(
        enum_type(VersionStatus), default=VersionStatus.DRAFT, index=True
    )
    ab_weight: Mapped[float] = mapped_column(default=1.0)
    # Serve the best of n candidates by the listeners' taste model (else a uniform pick).
    taste_selection: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notes: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[dt.datetime | None]
    retired_at: Mapped[dt.datetime | None]

    parent: Mapped[ModelVersion | None] = relationship(remote_side=[id])
    training_run: Mapped[TrainingRun | None] = relationship(
        back_populates="version", foreign_keys="TrainingRun.version_id", uselist=False
    )

    def __repr__(self) -> str:
        return f"<ModelVersion {self.name} {self.status}>"


class TrainingRun(Base):
    """One fine-tuning run from a parent version.

    ``training_set`` is a JSON list of ``{"clip_id": int, "confidence": float}``;
    ``settings`` the training configuration; ``loss_curve`` a JSON list of
    ``{"step": int, "loss": float, ...}`` points. ``version`` is the version it produced,
    set when that version is published.
    """

    __tablename__ = "training_runs"
    __table_args__ = (sa.CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="SET NULL"), unique=True
    )
    status: Mapped[TrainingStatus] = mapped_column(
        enum_type(TrainingStatus), default=TrainingStatus.QUEUED, index=True
    )
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    training_set: Mapped[list[Any]] = mapped_column(default=list)
    loss_curve: Mapped[list[Any]] = mapped_column(default=list)
    progress: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    parent_version: Mapped[ModelVersion] = relationship(foreign_keys=[parent_version_id])
    version: Mapped[ModelVersion | None] = relationship(
        back_populates="training_run", foreign_keys=[version_id]
    )
    job: Mapped[Job | None] = relationship()


class TasteModel(Base):
    """A fitted snapshot of the listeners' taste model (:mod:`encore.taste`).

    The parameters live in a blob (``blob_key``, an ``.npz``); ``metrics`` holds the
    held-out figures of the fit (pairwise accuracy, Spearman, baselines) when it was
    evaluated. ``reason``: what triggered the fit (``curation``, ``online``, ``manual``).
    """

    __tablename__ = "taste_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(32))
    blob_key: Mapped[str] = mapped_column(sa.String(255))
    n_ratings: Mapped[int]
    n_listeners: Mapped[int]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
