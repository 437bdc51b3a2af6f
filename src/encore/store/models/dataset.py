"""The curated data set *D* (docs/feedback.md)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from encore.store.base import Base, enum_type, utcnow
from encore.store.enums import RemovalReason

if TYPE_CHECKING:
    from encore.store.models.clips import Clip


class DatasetEntry(Base):
    """A clip's membership of the data set, with its *R* and confidence when it joined.

    An entry is active while ``removed_at`` is null; a clip has at most one active entry.
    Removal keeps the row with ``removal_reason``, a human-readable ``removal_detail`` and,
    for near-duplicates, ``replaced_by_id`` (the entry that stays).
    """

    __tablename__ = "dataset_entries"
    __table_args__ = (
        sa.Index(
            "uq_dataset_entries_active_clip_id",
            "clip_id",
            unique=True,
            sqlite_where=sa.text("removed_at IS NULL"),
            postgresql_where=sa.text("removed_at IS NULL"),
        ),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(sa.ForeignKey("clips.id", ondelete="CASCADE"))
    rating_score: Mapped[float]
    confidence: Mapped[float]
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    removal_reason: Mapped[RemovalReason | None] = mapped_column(enum_type(RemovalReason))
    removal_detail: Mapped[str | None] = mapped_column(sa.Text)
    replaced_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("dataset_entries.id", ondelete="SET NULL")
    )

    clip: Mapped[Clip] = relationship()
    replaced_by: Mapped[DatasetEntry | None] = relationship(remote_side=[id])

    @property
    def active(self) -> bool:
        return self.removed_at is None
