"""Uploaded songs (the paper's inputs *I*)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from encore.store.base import Base, enum_type, utcnow
from encore.store.enums import SongStatus

if TYPE_CHECKING:
    from encore.store.models.jobs import Job
    from encore.store.models.users import User


class Song(Base):
    """A song a listener uploaded.

    The audio lives in blob storage under ``blob_key`` (a generated key, never the upload's
    file name); ``mel_key`` holds its mel slices (``.npy``) once sliced. ``representation``
    is its similarity representation (a JSON list of floats, docs/similarity.md) once embedded.
    A listener cannot upload the same bytes twice (``checksum_sha256`` is unique per owner).
    """

    __tablename__ = "songs"
    __table_args__ = (
        sa.UniqueConstraint("owner_id", "checksum_sha256"),
        sa.Index("ix_songs_owner_id_created_at", "owner_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(sa.String(200))
    blob_key: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(100), default="application/octet-stream")
    duration_seconds: Mapped[float]
    # The whole song's spectrogram (PNG), made once when its page is first shown.
    spectrogram_key: Mapped[str | None] = mapped_column(sa.String(255))
    sample_rate: Mapped[int]
    checksum_sha256: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[SongStatus] = mapped_column(enum_type(SongStatus), default=SongStatus.PENDING)
    mel_key: Mapped[str | None] = mapped_column(sa.String(255))
    representation: Mapped[list[Any] | None]
    descriptors: Mapped[dict[str, Any] | None]
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # False: music made from this song is never played to other listeners nor joins the
    # data set (the listener's opt-out).
    shared: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # A deleted song keeps this row (title and blobs gone) while clips made from it exist.
    deleted_at: Mapped[dt.datetime | None]
    # The upload's size in bytes (the storage quota); None for songs stored before.
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)

    owner: Mapped[User] = relationship(back_populates="songs")
    job: Mapped[Job | None] = relationship()

    def __repr__(self) -> str:
        return f"<Song {self.id} owner={self.owner_id} {self.title!r}>"
