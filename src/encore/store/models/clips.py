"""Clips and what listeners did with them: deliveries, listen events, ratings."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from encore.store.base import Base, enum_type, utcnow
from encore.store.enums import ClipKind, ClipStatus, DispatchBranch

if TYPE_CHECKING:
    from encore.store.models.jobs import Job
    from encore.store.models.songs import Song
    from encore.store.models.users import User
    from encore.store.models.versions import ModelVersion


class Clip(Base):
    """A piece of audio a listener can be served.

    Everything needed to regenerate a generated clip exactly is stored with it: the model
    version, the ordered, weighted input songs (:class:`ClipInput`), ``seed``, ``steps``,
    ``start_step`` (or ``strength``) and ``eta``. Blobs: ``audio_key`` (OGG), ``image_key``
    (spectrogram PNG), ``mel_key`` (mel tensor ``.npy``). ``representation`` is its
    similarity representation and ``similarity`` its *S(g, I)* in [0, 1]; ``rating_score``
    (*R*) and ``confidence`` (*c*) are the latest aggregates, written by curation.
    """

    __tablename__ = "clips"
    __table_args__ = (
        sa.Index("ix_clips_kind_status", "kind", "status"),
        sa.CheckConstraint(
            "similarity IS NULL OR (similarity >= 0 AND similarity <= 1)", name="similarity_range"
        ),
        sa.CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", name="confidence_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ClipKind] = mapped_column(enum_type(ClipKind), default=ClipKind.GENERATED)
    status: Mapped[ClipStatus] = mapped_column(enum_type(ClipStatus), default=ClipStatus.PENDING)
    model_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    seed: Mapped[int | None] = mapped_column(sa.BigInteger)
    steps: Mapped[int | None]
    # the solver ("ddim", "dpmpp", "unipc"); merges invert and decode with DDIM
    sampler: Mapped[str | None] = mapped_column(sa.String(16))
    start_step: Mapped[int | None]
    strength: Mapped[float | None]
    eta: Mapped[float | None]
    seconds: Mapped[float | None]
    # a piece whose end continues into its beginning (encore.diffusion.continuation)
    loop: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    audio_key: Mapped[str | None] = mapped_column(sa.String(255))
    image_key: Mapped[str | None] = mapped_column(sa.String(255))
    mel_key: Mapped[str | None] = mapped_column(sa.String(255))
    representation: Mapped[list[Any] | None]
    descriptors: Mapped[dict[str, Any] | None]
    similarity: Mapped[float | None]
    # Best-of-n: the candidates generated for one request share ``request_id``; only the one
    # chosen is ``served`` (the others stay, unrated, for preference training).
    request_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    candidate_index: Mapped[int | None]
    served: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    predicted_stars: Mapped[float | None]
    rating_score: Mapped[float | None]
    confidence: Mapped[float | None]
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    ready_at: Mapped[dt.datetime | None]

    model_version: Mapped[ModelVersion | None] = relationship()
    inputs: Mapped[list[ClipInput]] = relationship(
        back_populates="clip",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ClipInput.position",
    )
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="clip", cascade="all, delete-orphan", passive_deletes=True
    )
    ratings: Mapped[list[Rating]] = relationship(viewonly=True)
    job: Mapped[Job | None] = relationship()

    @property
    def input_song_ids(self) -> list[int]:
        """The input songs' ids in order."""
        return [i.song_id for i in self.inputs]

    def __repr__(self) -> str:
        return f"<Clip {self.id} {self.kind} {self.status}>"


class ClipInput(Base):
    """One input song of a clip, with its place in the order and its merge weight."""

    __tablename__ = "clip_inputs"

    clip_id: Mapped[int] = mapped_column(
        sa.ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    song_id: Mapped[int] = mapped_column(sa.ForeignKey("songs.id", ondelete="RESTRICT"), index=True)
    weight: Mapped[float] = mapped_column(default=1.0)
    # Where in the song the clip starts, seconds: asked for before rendering (None: the
    # automatic choice), where it really started after.
    offset_seconds: Mapped[float | None]

    clip: Mapped[Clip] = relationship(back_populates="inputs")
    song: Mapped[Song] = relationship()


def new_request_id() -> str:
    return uuid.uuid4().hex


class Delivery(Base):
    """A clip served to a listener for one request, by one dispatch branch.

    ``input_song_ids`` are the request's inputs (for a baseline delivery they differ from
    the clip's own inputs). ``opened_at`` is when the listener's player first fetched the
    audio: listening time cannot exceed the time elapsed since. ``played_ranges`` is the union
    of the valid ranges reported so far (merged, within the clip) and ``listened_seconds`` its
    length after the wall-clock clamp: a heartbeat reads and writes this one row.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        # Target of the ratings' composite foreign key: a rating's clip and listener are
        # those of its delivery.
        sa.UniqueConstraint("id", "clip_id", "listener_id"),
        sa.Index("ix_deliveries_listener_id_delivered_at", "listener_id", "delivered_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(sa.ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    listener_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(sa.String(64), default=new_request_id, index=True)
    branch: Mapped[DispatchBranch] = mapped_column(enum_type(DispatchBranch))
    input_song_ids: Mapped[list[Any]] = mapped_column(default=list)
    delivered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    opened_at: Mapped[dt.datetime | None]
    listened_seconds: Mapped[float] = mapped_column(default=0.0)
    played_ranges: Mapped[list[Any]] = mapped_column(default=list, server_default=sa.text("'[]'"))
    # The end of the furthest range of the clip's audio served to the listener (bytes).
    audio_bytes_served: Mapped[int] = mapped_column(
        sa.BigInteger, default=0, server_default=sa.text("0")
    )
    audio_bytes_total: Mapped[int] = mapped_column(
        sa.BigInteger, default=0, server_default=sa.text("0")
    )
    # How the served candidate was chosen: "taste" (the listener's taste model picked it),
    # "explore" (uniformly at random) or "single" (one candidate); ``propensity`` is the
    # probability that this candidate was served given the candidates and the policy.
    selection: Mapped[str | None] = mapped_column(sa.String(16))
    propensity: Mapped[float | None]
    taste_model_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("taste_models.id", ondelete="SET NULL")
    )
    predicted_stars: Mapped[float | None]
    # Paired deliveries share ``pair_id``: the first is ``pair_open`` until the listener gets
    # the same songs, seeds and strength from ``pair_version_id``.
    pair_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    pair_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    pair_open: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # What the listener asked for: the piece's length (None: from before pieces, the
    # canvas length), where in the song it starts (None: the automatic choice), a loop.
    piece_seconds: Mapped[float | None]
    start_seconds: Mapped[float | None]
    loop: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    clip: Mapped[Clip] = relationship(back_populates="deliveries")
    listener: Mapped[User] = relationship()
    listen_events: Mapped[list[ListenEvent]] = relationship(
        back_populates="delivery",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ListenEvent.id",
    )
    rating: Mapped[Rating | None] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", passive_deletes=True
    )


class ListenEvent(Base):
    """One report of played ranges from the player.

    ``ranges`` is a JSON list of ``[start, end]`` pairs in seconds of the clip;
    ``listened_seconds`` is the union of all ranges reported for the delivery so far.
    ``sequence`` (per delivery, from the client) makes re-sent reports idempotent.
    """

    __tablename__ = "listen_events"
    __table_args__ = (sa.UniqueConstraint("delivery_id", "sequence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    sequence: Mapped[int | None]
    ranges: Mapped[list[Any]] = mapped_column(default=list)
    listened_seconds: Mapped[float] = mapped_column(default=0.0)
    final: Mapped[bool] = mapped_column(default=False)
    reported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    delivery: Mapped[Delivery] = relationship(back_populates="listen_events")


class Rating(Base):
    """A listener's rating of a clip: 1 to 5 stars in half steps, at most one per clip.

    Stored as ``half_stars`` (2..10); :attr:`stars` is the value in stars. The delivery,
    clip and listener are tied by a composite foreign key, so a rating always belongs to
    a delivery of that clip to that listener. ``listened_fraction`` is the fraction of the
    clip heard when the rating was given; ``counted`` is false for ratings given after too
    short a listen (they are kept, not used).
    """

    __tablename__ = "ratings"
    __table_args__ = (
        sa.UniqueConstraint("listener_id", "clip_id"),
        sa.ForeignKeyConstraint(
            ["delivery_id", "clip_id", "listener_id"],
            ["deliveries.id", "deliveries.clip_id", "deliveries.listener_id"],
            ondelete="CASCADE",
            name="fk_ratings_delivery",
        ),
        sa.CheckConstraint("half_stars >= 2 AND half_stars <= 10", name="half_stars_range"),
        sa.CheckConstraint(
            "listened_fraction >= 0 AND listened_fraction <= 1", name="listened_fraction_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(unique=True)
    clip_id: Mapped[int] = mapped_column(sa.ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    listener_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    half_stars: Mapped[int] = mapped_column(sa.SmallInteger)
    listened_fraction: Mapped[float]
    counted: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime | None]

    # Assigning ``delivery`` sets delivery_id, clip_id and listener_id together.
    delivery: Mapped[Delivery] = relationship(back_populates="rating")
    clip: Mapped[Clip] = relationship(viewonly=True)
    listener: Mapped[User] = relationship(viewonly=True)

    @hybrid_property
    def stars(self) -> float:
        """The rating in stars, 1.0 to 5.0 in steps of 0.5."""
        return self.half_stars / 2

    @stars.inplace.expression
    @classmethod
    def _stars_expression(cls) -> sa.ColumnElement[float | Decimal]:
        return sa.cast(cls.half_stars, sa.Float) / 2.0

    @stars.inplace.setter
    def _stars_setter(self, value: float) -> None:
        half = value * 2
        if half != int(half) or not 2 <= half <= 10:
            raise ValueError(f"stars must be 1 to 5 in steps of 0.5, got {value!r}")
        self.half_stars = int(half)
