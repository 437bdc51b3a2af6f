"""Making music for a listener: dispatch, the delivery's progress, listening and rating.

A request for music from input songs *I* is dispatched (DESIGN.md §2.2): with probability
``baseline_probability`` and a non-empty dataset the listener gets the dataset clip nearest
to *I* that they have not rated (the baseline *d\\**); otherwise a new clip is generated
by an active model version drawn by A/B weight. The listener is never told which.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from encore import feedback
from encore.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from encore.services import versions
from encore.services.context import ServiceContext
from encore.services.media import BlobRef, blob_ref
from encore.services.similarity import representation_of, set_representation, similarities_to
from encore.store import (
    Clip,
    ClipInput,
    ClipKind,
    ClipStatus,
    DatasetEntry,
    Delivery,
    DispatchBranch,
    Job,
    JobStatus,
    ListenEvent,
    Rating,
    Song,
    SongStatus,
    User,
    enqueue_job,
    utcnow,
)

logger = logging.getLogger(__name__)

MAX_INPUT_SONGS = 8
DeliveryState = Literal["queued", "running", "ready", "failed"]


@dataclass(frozen=True)
class DeliveryView:
    """What the listener may know about a delivery (nothing about branch or version)."""

    delivery_id: int
    status: DeliveryState
    progress: float
    message: str | None
    input_song_ids: tuple[int, ...]
    input_titles: tuple[str, ...]
    clip_seconds: float | None
    min_listen_seconds: float | None
    listened_seconds: float
    listened_fraction: float
    rating_allowed: bool
    rating: float | None
    delivered_at: dt.datetime


@dataclass(frozen=True)
class ListenState:
    """The answer to a listening heartbeat."""

    listened_seconds: float
    fraction: float
    rating_allowed: bool
    min_listen_seconds: float


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return t if t is None or t.tzinfo else t.replace(tzinfo=dt.UTC)


# --- request ---------------------------------------------------------------------------


def request_music(
    ctx: ServiceContext,
    *,
    listener: User,
    song_ids: list[int],
    closeness: float | None = None,
) -> Delivery:
    """Dispatch a request for music from ``song_ids`` and return the delivery.

    ``closeness`` in [0, 1] sets how close a variation stays to its song (strength =
    1 − closeness; default from the settings).

    Raises
    ------
    InvalidInput
        No songs, too many, duplicates, or ``closeness`` out of range.
    NotFound, PermissionDenied
        A song does not exist or belongs to someone else.
    Conflict
        A song is still being processed or failed processing.
    """
    ids = [int(i) for i in song_ids]
    if not ids:
        raise InvalidInput("choose at least one song")
    if len(ids) > MAX_INPUT_SONGS:
        raise InvalidInput(f"{len(ids)} songs chosen; at most {MAX_INPUT_SONGS} can be blended")
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"song ids {ids} contain duplicates")
    if closeness is None:
        strength = ctx.settings.default_strength
    else:
        if not 0.0 <= float(closeness) <= 1.0:
            raise InvalidInput(f"closeness={closeness!r} must be between 0 and 1")
        strength = 1.0 - float(closeness)
    strength = min(max(strength, 0.05), 1.0)  # strength 0 would return the song itself
    rng = ctx.random()
    versions.ensure_base_version(ctx)
    with ctx.session() as session:
        songs = []
        for song_id in ids:
            song = session.get(Song, song_id)
            if song is None:
                raise NotFound(f"song {song_id} does not exist")
            if song.owner_id != listener.id:
                raise PermissionDenied(f"song {song_id} belongs to another listener")
            if song.status is SongStatus.FAILED:
                raise Conflict(f"song {song.title!r} could not be processed; upload it again")
            if song.status is not SongStatus.READY or song.representation is None:
                raise Conflict(f"song {song.title!r} is still being processed; try again shortly")
            songs.append(song)

        decision = _dispatch(ctx, session, listener, songs, rng)
        if decision.branch == "baseline":
            delivery = Delivery(
                clip_id=int(decision.clip_id),  # type: ignore[arg-type]
                listener_id=listener.id,
                branch=DispatchBranch.BASELINE,
                input_song_ids=ids,
            )
            session.add(delivery)
        else:
            clip = Clip(
                kind=ClipKind.GENERATED,
                status=ClipStatus.PENDING,
                model_version_id=int(decision.version_id),  # type: ignore[arg-type]
                seed=int(rng.integers(0, 2**31 - 1)),
                steps=ctx.settings.inference_steps,
                strength=strength if len(ids) == 1 else None,
                eta=0.0,
                seconds=ctx.settings.clip_seconds,
            )
            clip.inputs = [
                ClipInput(position=i, song_id=s.id, weight=1.0 / len(ids))
                for i, s in enumerate(songs)
            ]
            session.add(clip)
            session.flush()
            job = enqueue_job(session, "generate_clip", {"clip_id": clip.id})
            clip.job_id = job.id
            delivery = Delivery(
                clip_id=clip.id,
                listener_id=listener.id,
                branch=DispatchBranch.GENERATE,
                input_song_ids=ids,
            )
            session.add(delivery)
        session.flush()
        logger.info(
            "delivery %d for user %d: %s (clip %d)",
            delivery.id, listener.id, decision.branch, delivery.clip_id,
        )
        return delivery


def _dispatch(
    ctx: ServiceContext,
    session: Session,
    listener: User,
    songs: list[Song],
    rng: np.random.Generator,
) -> feedback.DispatchDecision:
    """Run :func:`encore.feedback.dispatch` on the current dataset and active versions."""
    active = versions.active_weights(session)
    if not active:
        raise Conflict("no model version is active; an operator must activate one")
    entries = session.execute(
        sa.select(DatasetEntry.clip_id, Clip.representation)
        .join(Clip, Clip.id == DatasetEntry.clip_id)
        .where(
            DatasetEntry.removed_at.is_(None),
            Clip.status == ClipStatus.READY,
            Clip.representation.is_not(None),
        )
        .order_by(DatasetEntry.clip_id)
    ).all()
    dataset_ids = [row.clip_id for row in entries]
    if dataset_ids:
        query = set_representation(ctx, [representation_of(s.representation) for s in songs])
        sims = similarities_to(query, [representation_of(row.representation) for row in entries])
    else:
        sims = np.zeros(0)
    rated = set(
        session.scalars(sa.select(Rating.clip_id).where(Rating.listener_id == listener.id))
    )
    return feedback.dispatch(
        dataset_ids=dataset_ids,
        similarity=sims,
        rated_clip_ids=rated,
        versions=active,
        rng=rng,
        baseline_probability=ctx.settings.baseline_probability,
    )


# --- the delivery ----------------------------------------------------------------------


def _own_delivery(session: Session, listener: User, delivery_id: int) -> Delivery:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    if delivery.listener_id != listener.id:
        raise PermissionDenied(f"delivery {delivery_id} belongs to another listener")
    return delivery


def _min_listen(ctx: ServiceContext, clip_seconds: float) -> float:
    return feedback.minimum_listen_seconds(
        clip_seconds,
        min_seconds=ctx.settings.min_listen_seconds,
        min_fraction=ctx.settings.min_listen_fraction,
    )


def _view(ctx: ServiceContext, session: Session, delivery: Delivery) -> DeliveryView:
    clip = delivery.clip
    status: DeliveryState
    progress, message = 0.0, None
    if clip.status is ClipStatus.READY:
        status, progress = "ready", 1.0
    elif clip.status is ClipStatus.FAILED:
        status = "failed"
        job = session.get(Job, clip.job_id) if clip.job_id else None
        message = "making this music failed; please try again" + (
            f" ({job.error.splitlines()[0][:200]})" if job is not None and job.error else ""
        )
    else:
        job = session.get(Job, clip.job_id) if clip.job_id else None
        status = "running" if job is not None and job.status is JobStatus.RUNNING else "queued"
        if job is not None:
            progress, message = float(job.progress), job.message
    seconds = clip.seconds if status == "ready" else None
    titles = {
        s.id: s.title
        for s in session.scalars(sa.select(Song).where(Song.id.in_(delivery.input_song_ids)))
    }
    fraction = min(delivery.listened_seconds / seconds, 1.0) if seconds else 0.0
    min_listen = _min_listen(ctx, seconds) if seconds else None
    return DeliveryView(
        delivery_id=delivery.id,
        status=status,
        progress=progress,
        message=message,
        input_song_ids=tuple(delivery.input_song_ids),
        input_titles=tuple(titles.get(i, "?") for i in delivery.input_song_ids),
        clip_seconds=seconds,
        min_listen_seconds=min_listen,
        listened_seconds=float(delivery.listened_seconds),
        listened_fraction=float(fraction),
        rating_allowed=bool(
            seconds and delivery.rating is None and delivery.listened_seconds >= (min_listen or 0)
        ),
        rating=delivery.rating.stars if delivery.rating is not None else None,
        delivered_at=_aware(delivery.delivered_at),  # type: ignore[arg-type]
    )


def delivery_status(ctx: ServiceContext, *, listener: User, delivery_id: int) -> DeliveryView:
    """Progress of the delivery's clip, then what the player needs."""
    with ctx.reading() as session:
        return _view(ctx, session, _own_delivery(session, listener, delivery_id))


def clip_media(
    ctx: ServiceContext,
    *,
    listener: User,
    delivery_id: int,
    kind: Literal["audio", "spectrogram"],
) -> BlobRef:
    """The delivered clip's audio (OGG) or spectrogram (PNG).

    The first audio fetch marks the delivery opened: reported listening can never exceed
    the time since.
    """
    if kind not in ("audio", "spectrogram"):
        raise InvalidInput(f"media kind {kind!r} must be 'audio' or 'spectrogram'")
    with ctx.session() as session:
        delivery = _own_delivery(session, listener, delivery_id)
        clip = delivery.clip
        if clip.status is not ClipStatus.READY:
            raise NotFound(f"the music of delivery {delivery_id} is not ready yet")
        if kind == "audio":
            if delivery.opened_at is None:
                delivery.opened_at = utcnow()
            return blob_ref(ctx.blobs, clip.audio_key, "audio/ogg", "this clip's audio")
        return blob_ref(ctx.blobs, clip.image_key, "image/png", "this clip's spectrogram")


def record_listen(
    ctx: ServiceContext,
    *,
    listener: User,
    delivery_id: int,
    ranges: list[tuple[float, float]],
    final: bool = False,
    sequence: int | None = None,
) -> ListenState:
    """Add played ranges (seconds of the clip) to the delivery's listening.

    The listened time is the union of every range reported so far, clamped to the clip
    and to the wall time since the audio was first fetched (not what the client claims).
    """
    now = utcnow()
    with ctx.session() as session:
        delivery = _own_delivery(session, listener, delivery_id)
        clip = delivery.clip
        if clip.status is not ClipStatus.READY or not clip.seconds:
            raise Conflict(f"the music of delivery {delivery_id} is not ready yet")
        previous = [r for e in delivery.listen_events for r in e.ranges]
        started = _aware(delivery.opened_at) or _aware(clip.ready_at) or _aware(delivery.delivered_at)
        wall = (now - started).total_seconds() if started else None
        cleaned = [(float(a), float(b)) for a, b in ranges]
        summary = feedback.summarize_listen(
            previous + cleaned,
            clip_seconds=float(clip.seconds),
            wall_seconds=wall,
            slack_seconds=ctx.feedback_config().wall_clock_slack_seconds,
        )
        # Never lower what was already granted (a later, shorter wall clamp is not news).
        listened = max(summary.listened_seconds, float(delivery.listened_seconds))
        delivery.listened_seconds = listened
        session.add(
            ListenEvent(
                delivery_id=delivery.id,
                sequence=sequence,
                ranges=[[a, b] for a, b in cleaned],
                listened_seconds=listened,
                final=final,
                reported_at=now,
            )
        )
        min_listen = _min_listen(ctx, float(clip.seconds))
        return ListenState(
            listened_seconds=listened,
            fraction=min(listened / float(clip.seconds), 1.0),
            rating_allowed=listened >= min_listen and delivery.rating is None,
            min_listen_seconds=min_listen,
        )


def rate(ctx: ServiceContext, *, listener: User, delivery_id: int, stars: float) -> Rating:
    """Rate the delivered clip 1–5 stars in half steps, once, after the minimum listen.

    Raises
    ------
    InvalidInput
        Bad value, or the minimum listen has not been reached (the message says how much).
    Conflict
        Already rated.
    """
    value = feedback.validate_rating(stars)
    with ctx.session() as session:
        delivery = _own_delivery(session, listener, delivery_id)
        clip = delivery.clip
        if clip.status is not ClipStatus.READY or not clip.seconds:
            raise Conflict(f"the music of delivery {delivery_id} is not ready yet")
        existing = session.scalar(
            sa.select(Rating).where(Rating.listener_id == listener.id, Rating.clip_id == clip.id)
        )
        if existing is not None:
            raise Conflict("you have already rated this clip")
        min_listen = _min_listen(ctx, float(clip.seconds))
        if delivery.listened_seconds + 1e-6 < min_listen:
            raise InvalidInput(
                f"listen to at least {min_listen:.1f} s before rating "
                f"(so far {delivery.listened_seconds:.1f} s)"
            )
        rating = Rating(
            delivery=delivery,
            half_stars=int(round(value * 2)),
            listened_fraction=min(delivery.listened_seconds / float(clip.seconds), 1.0),
            counted=True,
        )
        session.add(rating)
        session.flush()
        return rating


@dataclass(frozen=True)
class HistoryItem:
    delivery_id: int
    delivered_at: dt.datetime
    status: DeliveryState
    input_titles: tuple[str, ...]
    listened_seconds: float
    clip_seconds: float | None
    rating: float | None


def history(ctx: ServiceContext, *, listener: User, limit: int = 200) -> list[HistoryItem]:
    """The listener's deliveries, newest first."""
    with ctx.reading() as session:
        deliveries = session.scalars(
            sa.select(Delivery)
            .where(Delivery.listener_id == listener.id)
            .order_by(Delivery.id.desc())
            .limit(limit)
        ).all()
        items = []
        for d in deliveries:
            view = _view(ctx, session, d)
            items.append(
                HistoryItem(
                    delivery_id=d.id,
                    delivered_at=view.delivered_at,
                    status=view.status,
                    input_titles=view.input_titles,
                    listened_seconds=view.listened_seconds,
                    clip_seconds=view.clip_seconds,
                    rating=view.rating,
                )
            )
        return items
