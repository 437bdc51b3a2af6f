"""The taste model as the services use it: data from the database in, snapshots in the blob
store, predictions for a listener's candidates out (:mod:`encore.taste` is the pure part).

A snapshot is fitted on every counted rating (rater weights from the last quality control;
flagged raters left out) after each curation, and again by the generation worker once
``Settings.taste_refit_ratings`` new ratings have arrived since the latest snapshot — the
fit takes well under a second at the pilot's size, so the worker does it inline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from encore import taste
from encore.audio.descriptors import descriptor_vector
from encore.errors import Conflict, InvalidInput
from encore.services.context import ServiceContext
from encore.services.similarity import representation_of
from encore.store import (
    Clip,
    Delivery,
    RaterReputation,
    Rating,
    Song,
    SongStatus,
    TasteModel,
    User,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TasteData:
    """Everything a fit or an evaluation needs, read in one transaction."""

    ratings: taste.TasteRatings
    clips: dict[int, taste.ClipFeatures]
    profiles: dict[int, taste.ListenerProfile]


def clip_features(session: Session, clip_ids: Iterable[int]) -> dict[int, taste.ClipFeatures]:
    """Features of the clips that have descriptors and a representation."""
    ids = sorted({int(c) for c in clip_ids})
    out: dict[int, taste.ClipFeatures] = {}
    for chunk in range(0, len(ids), 500):
        rows = session.execute(
            sa.select(Clip.id, Clip.descriptors, Clip.representation).where(
                Clip.id.in_(ids[chunk : chunk + 500]),
                Clip.descriptors.is_not(None),
                Clip.representation.is_not(None),
            )
        )
        for cid, desc, rep in rows:
            out[int(cid)] = taste.ClipFeatures(
                descriptor_vector(desc), representation_of(rep).embedding.astype(np.float64)
            )
    return out


def listener_profiles(session: Session, listener_ids: Iterable[int]) -> dict[int, taste.ListenerProfile]:
    """Mean descriptors and mean embedding of each listener's analysed songs."""
    ids = sorted({int(u) for u in listener_ids})
    rows = session.execute(
        sa.select(Song.owner_id, Song.descriptors, Song.representation).where(
            Song.owner_id.in_(ids), Song.status == SongStatus.READY,
            Song.representation.is_not(None),
        )
    ).all()
    by_owner: dict[int, list[tuple[object, object]]] = {}
    for owner, desc, rep in rows:
        by_owner.setdefault(int(owner), []).append((desc, rep))
    out: dict[int, taste.ListenerProfile] = {}
    for u in ids:
        items = by_owner.get(u, [])
        descs = [descriptor_vector(d) for d, _ in items if d is not None]  # type: ignore[arg-type]
        embs = [representation_of(r).embedding for _, r in items]
        out[u] = taste.ListenerProfile(
            np.mean(descs, axis=0) if descs else None,
            np.mean(embs, axis=0).astype(np.float64) if embs else None,
        )
    return out


def taste_data(session: Session) -> TasteData:
    """Every counted rating with its rater's weight (flagged raters weigh 0), in time order."""
    rows = session.execute(
        sa.select(
            Rating.listener_id, Rating.clip_id, Rating.half_stars, Rating.listened_fraction,
            Rating.created_at, Delivery.input_song_ids, RaterReputation.weight,
            RaterReputation.flagged,
        )
        .join(Delivery, Delivery.id == Rating.delivery_id)
        .outerjoin(RaterReputation, RaterReputation.user_id == Rating.listener_id)
        .where(Rating.counted.is_(True))
        .order_by(Rating.created_at, Rating.id)
    ).all()
    weights = np.array(
        [0.0 if flagged else (1.0 if w is None else float(w)) for *_, w, flagged in rows]
    )
    ratings = taste.TasteRatings(
        listener_ids=np.array([r[0] for r in rows], dtype=np.int64),
        clip_ids=np.array([r[1] for r in rows], dtype=np.int64),
        stars=np.array([r[2] / 2 for r in rows], dtype=np.float64),
        listened=np.array([r[3] for r in rows], dtype=np.float64),
        weights=weights,
        order=np.arange(len(rows), dtype=np.float64),
        song_keys=np.array(["+".join(str(s) for s in sorted(r[5] or [])) for r in rows],
                           dtype=object),
    )
    return TasteData(
        ratings,
        clip_features(session, ratings.clip_ids.tolist()),
        listener_profiles(session, ratings.listener_ids.tolist()),
    )


def fit_snapshot(ctx: ServiceContext, *, reason: str = "manual", evaluate: bool = True) -> TasteModel:
    """Fit the taste model on every counted rating, store it, and return its row.

    With ``evaluate`` (and enough ratings) the row's ``metrics`` hold a time-ordered
    held-out evaluation of the same configuration against the baselines.

    Raises
    ------
    Conflict
        No usable rating yet.
    """
    with ctx.reading() as session:
        data = taste_data(session)
    usable = int(np.sum((data.ratings.weights > 0)
                        & np.isin(data.ratings.clip_ids, list(data.clips))))
    if usable == 0:
        raise Conflict("no rating with analysed audio yet: the taste model has nothing to learn")
    model = taste.TasteModel.fit(data.ratings, data.clips, data.profiles)
    metrics: dict[str, object] = {}
    if evaluate and usable >= 20:
        try:
            metrics = taste.evaluate(data.ratings, data.clips, data.profiles).as_dict()
        except InvalidInput as exc:
            metrics = {"skipped": str(exc)}
    key = ctx.blobs.new_key("taste", ".npz")
    ctx.blobs.put(key, model.to_bytes(), content_type="application/octet-stream")
    metrics["groups"] = _store_groups(ctx, model, data.profiles)
    with ctx.session() as session:
        row = TasteModel(reason=reason, blob_key=key, n_ratings=model.n_ratings,
                         n_listeners=len(model.listeners), metrics=metrics)
        session.add(row)
        session.flush()
        session.expunge(row)
    logger.info("taste model %d fitted on %d ratings (%s)", row.id, model.n_ratings, reason)
    return row


def _store_groups(
    ctx: ServiceContext, model: taste.TasteModel, profiles: dict[int, taste.ListenerProfile]
) -> dict[str, object]:
    """Fit the taste groups of a new snapshot, store them as a JSON blob and return the
    summary kept in the snapshot row's ``metrics["groups"]`` (``skipped`` with the reason
    when there are too few listeners with ratings)."""
    try:
        groups = taste.fit_taste_groups(
            model, profiles, min_ratings=ctx.settings.taste_group_min_ratings, seed=0)
    except InvalidInput as exc:
        return {"skipped": str(exc)}
    key = ctx.blobs.new_key("taste-groups", ".json")
    ctx.blobs.put(key, groups.to_json().encode(), content_type="application/json")
    return {"blob_key": key, "k": groups.k, "structured": groups.structured,
            "sizes": groups.sizes}


def load_groups(ctx: ServiceContext, row: TasteModel) -> taste.TasteGroups | None:
    """The taste groups stored with a snapshot row (cached per process), or None when the
    snapshot has none (too few listeners with ratings, or fitted before groups existed)."""
    info = (row.metrics or {}).get("groups") or {}
    key = info.get("blob_key") if isinstance(info, dict) else None
    if not key:
        return None
    return ctx.cached(("taste-groups", row.id),
                      lambda: taste.TasteGroups.from_json(ctx.blobs.get(str(key))))


def latest_groups(ctx: ServiceContext) -> tuple[int, taste.TasteGroups] | None:
    """The groups of the newest snapshot that has groups: ``(snapshot id, groups)``."""
    with ctx.reading() as session:
        rows = session.scalars(sa.select(TasteModel).order_by(TasteModel.id.desc())).all()
        for row in rows:
            session.expunge(row)
    for row in rows:
        groups = load_groups(ctx, row)
        if groups is not None:
            return row.id, groups
    return None


def group_of_listener(ctx: ServiceContext, groups: taste.TasteGroups, listener_id: int) -> int | None:
    """The taste group to serve a listener with: its fitted group, else the one its analysed
    songs predict, else None (serve unconditioned)."""
    known = groups.group_of(listener_id)
    if known is not None:
        return known
    with ctx.reading() as session:
        profile = listener_profiles(session, [listener_id])[int(listener_id)]
    return groups.assign_from_songs(profile)


def load_snapshot(ctx: ServiceContext, row_id: int, blob_key: str) -> taste.TasteModel:
    """A stored snapshot (cached per process by id)."""
    return ctx.cached(("taste", row_id),
                      lambda: taste.TasteModel.from_bytes(ctx.blobs.get(blob_key)))


def latest_snapshot(
    ctx: ServiceContext, *, refit_after: int | None = None
) -> tuple[int, taste.TasteModel] | None:
    """The newest snapshot, refitted first when ``refit_after`` (default
    ``Settings.taste_refit_ratings``; 0 = never) counted ratings arrived since it was made.
    None when there is no snapshot and nothing to fit yet."""
    n = ctx.settings.taste_refit_ratings if refit_after is None else refit_after
    with ctx.reading() as session:
        row = session.scalars(sa.select(TasteModel).order_by(TasteModel.id.desc()).limit(1)).first()
        counted = int(session.scalar(
            sa.select(sa.func.count()).select_from(Rating).where(Rating.counted.is_(True))
        ) or 0)
        row_info = (row.id, row.blob_key, row.n_ratings, row.created_at) if row else None
        new = 0
        if row is not None:
            new = int(session.scalar(
                sa.select(sa.func.count()).select_from(Rating).where(
                    Rating.counted.is_(True), Rating.created_at > row.created_at)
            ) or 0)
    if n > 0 and counted > 0 and (row_info is None or new >= n):
        try:
            fresh = fit_snapshot(ctx, reason="online", evaluate=False)
        except Conflict:
            fresh = None
        if fresh is not None:
            return fresh.id, load_snapshot(ctx, fresh.id, fresh.blob_key)
    if row_info is None:
        return None
    return row_info[0], load_snapshot(ctx, row_info[0], row_info[1])


def predict_for(
    ctx: ServiceContext, model: taste.TasteModel, listener_id: int,
    features: list[taste.ClipFeatures],
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (stars, listened fraction) of candidate clips for a listener."""
    with ctx.reading() as session:
        profile = listener_profiles(session, [listener_id])[int(listener_id)]
    return model.predict(int(listener_id), features, profile)


@dataclass(frozen=True)
class ListenerFit:
    """Predicted against given ratings of one listener (the operator's page)."""

    listener_id: int
    rater_id: str
    n_ratings: int
    mean_given: float
    mean_predicted: float
    pairwise_accuracy: float
    flagged: bool


def listener_fits(ctx: ServiceContext) -> tuple[TasteModel | None, list[ListenerFit]]:
    """The latest snapshot's row and, per listener, its in-sample predicted-vs-given figures
    (the held-out figures are in the row's ``metrics``)."""
    with ctx.reading() as session:
        row = session.scalars(sa.select(TasteModel).order_by(TasteModel.id.desc()).limit(1)).first()
        if row is None:
            return None, []
        session.expunge(row)
        data = taste_data(session)
        raters = {u.id: u.rater_id for u in session.scalars(sa.select(User))}
        flagged = dict(session.execute(
            sa.select(RaterReputation.user_id, RaterReputation.flagged)).all())
    model = load_snapshot(ctx, row.id, row.blob_key)
    out = []
    for u in np.unique(data.ratings.listener_ids):
        rows = np.flatnonzero((data.ratings.listener_ids == u)
                              & np.isin(data.ratings.clip_ids, list(data.clips)))
        if len(rows) == 0:
            continue
        feats = [data.clips[int(c)] for c in data.ratings.clip_ids[rows]]
        pred, _ = model.predict(int(u), feats, data.profiles[int(u)])
        given = data.ratings.stars[rows]
        acc, _ = taste.pairwise_accuracy(np.zeros(len(rows)), given, pred)
        out.append(ListenerFit(int(u), raters.get(int(u), "?"), len(rows), float(given.mean()),
                               float(pred.mean()), float(acc), bool(flagged.get(int(u), False))))
    return row, out
