"""The operator's loop steps: rater quality, scoring clips (R, c), updating the dataset, purge.

:func:`curate` runs the rater model over every counted rating, stores each rater's
reputation, scores every rated clip, and admits the new clips that beat their nearest dataset
clip (the paper's update rule; cold start: the top N). :func:`purge` applies the purge rules.
Both are one transaction and can run on demand or periodically.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from encore import feedback
from encore.errors import Conflict
from encore.services import taste
from encore.services.context import ServiceContext
from encore.services.similarity import pairwise_similarities, representation_of, similarities_to
from encore.services.songs import private_clip_ids
from encore.store import (
    Clip,
    ClipInput,
    ClipKind,
    ClipStatus,
    DatasetEntry,
    Delivery,
    ModelVersion,
    RaterReputation,
    Rating,
    RemovalReason,
    User,
    VersionStatus,
    as_utc,
    utcnow,
)

logger = logging.getLogger(__name__)

#: S assumed for a clip that has no inputs to compare with (e.g. seeded from the corpus).
NEUTRAL_SIMILARITY = 0.5
_RULE_REASON = {
    "retired_version": RemovalReason.RETIRED_VERSION,
    "too_old": RemovalReason.TOO_OLD,
    "near_duplicate": RemovalReason.DUPLICATE,
    "over_capacity": RemovalReason.CAPACITY,
}


@dataclass(frozen=True)
class CurationResult:
    raters_assessed: int
    raters_flagged: int
    clips_scored: int
    admitted: tuple[int, ...]
    rejected: int
    pending: int
    cold_start: bool


@dataclass(frozen=True)
class PurgeSummary:
    kept: int
    removed: tuple[tuple[int, str, str], ...]  # (clip id, reason, detail)


def _qc_features(session: Session, clip_ids: set[int]) -> dict[int, np.ndarray] | None:
    """What each rated clip sounds like, for quality control's per-taste witnesses: its
    audio descriptors and embedding, each dimension standardised over these clips."""
    feats = taste.clip_features(session, clip_ids)
    if len(feats) < 2:
        return None
    ids = sorted(feats)
    x = np.stack([np.concatenate([feats[c].descriptors, feats[c].embedding]) for c in ids])
    x = np.nan_to_num(x)
    scale = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(scale > 1e-9, scale, 1.0)
    return {c: x[i] for i, c in enumerate(ids)}


def _dataset_clip(entry: DatasetEntry) -> feedback.DatasetClip:
    """A clip of the data set as the curation and purge rules see it: its clip's current R
    (the entry's own score while the clip has not been scored since it joined)."""
    clip = entry.clip
    return feedback.DatasetClip(
        clip_id=entry.clip_id,
        score=float(clip.rating_score if clip.rating_score is not None else entry.rating_score),
        confidence=float(entry.confidence),
        added_at=as_utc(entry.added_at),
        version_id=clip.model_version_id,
    )


def _assess(ctx: ServiceContext, session: Session) -> tuple[dict, dict, list[feedback.RaterAssessment]]:
    rows = session.execute(
        sa.select(
            Rating.listener_id, Rating.clip_id, Rating.half_stars, Rating.listened_fraction,
            Delivery.input_song_ids,
        )
        .join(Delivery, Delivery.id == Rating.delivery_id)
        .where(Rating.counted.is_(True))
        .order_by(Rating.id)
    ).all()
    if not rows:
        return {}, {}, []
    data = feedback.RatingSet(
        rater_ids=np.array([r.listener_id for r in rows]),
        clip_ids=np.array([r.clip_id for r in rows]),
        ratings=np.array([r.half_stars / 2 for r in rows], dtype=float),
        listened_fraction=np.array([r.listened_fraction for r in rows], dtype=float),
    )
    # Clips made from (or served for) the same inputs form a group: a rater whose taste
    # follows the kind of music asked for is not "unrelated" to quality (docs/feedback.md).
    groups = {
        r.clip_id: "+".join(str(i) for i in sorted(r.input_song_ids or [])) or "none" for r in rows
    }
    result = feedback.assess_raters(data, clip_groups=groups,
                                    clip_features=_qc_features(session, set(groups)),
                                    config=ctx.feedback_config())
    biases = {a.rater_id: float(a.bias) for a in result.assessments}
    weights = {a.rater_id: float(a.weight) for a in result.assessments}
    now = utcnow()
    for a in result.assessments:
        rep = session.get(RaterReputation, int(a.rater_id))
        if rep is None:
            rep = RaterReputation(user_id=int(a.rater_id))
            session.add(rep)
        rep.weight = float(min(max(a.weight, 0.0), 1.0))
        rep.bias = float(a.bias)
        rep.noise = float(a.sigma) if np.isfinite(a.sigma) else None
        rep.flagged = bool(a.flagged)
        rep.reasons = list(a.reasons)
        rep.rating_count = int(a.n_ratings)
        rep.updated_at = now
    return biases, weights, list(result.assessments)


def curate(ctx: ServiceContext) -> CurationResult:
    """Assess raters, score every rated clip, admit new clips that beat their baseline."""
    cfg = ctx.feedback_config()
    with ctx.session() as session:
        biases, weights, assessments = _assess(ctx, session)
        ratings_by_clip: dict[int, list[feedback.ClipRating]] = defaultdict(list)
        for r in session.execute(
            sa.select(Rating.listener_id, Rating.clip_id, Rating.half_stars, Rating.listened_fraction)
            .where(Rating.counted.is_(True))
        ):
            ratings_by_clip[r.clip_id].append(
                feedback.ClipRating(r.listener_id, r.half_stars / 2, float(r.listened_fraction))
            )
        clips = {
            c.id: c
            for c in session.scalars(sa.select(Clip).where(Clip.id.in_(list(ratings_by_clip))))
        }
        scores: dict[int, feedback.ClipScore] = {}
        for clip_id, ratings in ratings_by_clip.items():
            clip = clips[clip_id]
            s = clip.similarity if clip.similarity is not None else NEUTRAL_SIMILARITY
            score = feedback.score_clip(
                ratings, similarity=float(s), biases=biases, weights=weights, config=cfg
            )
            if score is None:
                continue
            scores[clip_id] = score
            clip.rating_score = float(score.R)
            clip.confidence = float(min(max(score.confidence, 0.0), 1.0))

        active_entries = session.scalars(
            sa.select(DatasetEntry).where(DatasetEntry.removed_at.is_(None))
        ).all()
        in_dataset = {e.clip_id for e in active_entries}
        private = private_clip_ids(session, list(scores))
        dataset_clips = [_dataset_clip(e) for e in active_entries]
        candidates = [
            feedback.Candidate(
                clip_id=cid,
                score=float(sc.R),
                confidence=float(min(max(sc.confidence, 0.0), 1.0)),
                n_ratings=int(sc.n_ratings),
            )
            for cid, sc in sorted(scores.items())
            if cid not in in_dataset
            and clips[cid].kind is ClipKind.GENERATED
            and clips[cid].representation is not None
            and cid not in private  # made from a song its listener keeps private or deleted
        ]
        sim = None
        if candidates and dataset_clips:
            dataset_reps = [representation_of(e.clip.representation) for e in active_entries]
            sim = np.stack(
                [
                    similarities_to(representation_of(clips[c.clip_id].representation), dataset_reps)
                    for c in candidates
                ]
            )
        if ctx.settings.curation_rule == "centred":
            decisions = _centred_decisions(ctx, session, ratings_by_clip, candidates, in_dataset,
                                           biases, weights)
        else:
            decisions = feedback.curate(
                candidates,
                dataset_clips,
                sim,
                min_ratings=ctx.settings.curation_min_ratings,
                cold_start_top_n=ctx.settings.cold_start_top_n,
                cold_start_max_share=ctx.settings.cold_start_max_share,
            )
        admitted = []
        for d in decisions:
            if d.action == "admit":
                score = scores[int(d.clip_id)]
                session.add(
                    DatasetEntry(
                        clip_id=int(d.clip_id),
                        rating_score=float(score.R),
                        confidence=float(min(max(score.confidence, 0.0), 1.0)),
                    )
                )
                admitted.append(int(d.clip_id))
        result = CurationResult(
            raters_assessed=len(assessments),
            raters_flagged=sum(1 for a in assessments if a.flagged),
            clips_scored=len(scores),
            admitted=tuple(admitted),
            rejected=sum(1 for d in decisions if d.action == "reject"),
            pending=sum(1 for d in decisions if d.action == "pending"),
            cold_start=not dataset_clips,
        )
    logger.info("curation: %s", result)
    _refit_taste(ctx)
    return result


def _centred_decisions(
    ctx: ServiceContext,
    session: Session,
    ratings_by_clip: dict[int, list[feedback.ClipRating]],
    candidates: list[feedback.Candidate],
    in_dataset: set[int],
    biases: dict,
    weights: dict,
) -> tuple[feedback.CurationDecision, ...]:
    """The ``centred`` rule: each candidate against its input song's usual rating, rater
    bias removed (every rated clip of the song counts towards "usual")."""
    song_of_clip: dict[int, str] = {}
    for clip_id, song_id in session.execute(
        sa.select(ClipInput.clip_id, ClipInput.song_id)
        .where(ClipInput.clip_id.in_(list(ratings_by_clip)))
        .order_by(ClipInput.clip_id, ClipInput.song_id)
    ):
        key = song_of_clip.get(clip_id)
        song_of_clip[clip_id] = f"{key}+{song_id}" if key else str(song_id)
    flat = [(r.rater_id, cid, r.rating) for cid, rs in ratings_by_clip.items() for r in rs]
    centred = feedback.centred_scores(flat, song_of_clip, biases, weights)
    wanted = [centred[c.clip_id] for c in candidates if c.clip_id in centred]
    return feedback.curate_centred(wanted, in_dataset,
                                   min_ratings=ctx.settings.curation_min_ratings)


def _refit_taste(ctx: ServiceContext) -> None:
    """A taste snapshot on the ratings curation just weighed (the raters' new weights)."""
    try:
        taste.fit_snapshot(ctx, reason="curation")
    except Conflict:
        logger.info("curation: no rating with analysed audio yet, no taste model fitted")


def purge(ctx: ServiceContext, *, now: dt.datetime | None = None) -> PurgeSummary:
    """One purge cycle: retired versions, age, near-duplicates, capacity (reasons kept)."""
    now = now or utcnow()
    s = ctx.settings
    with ctx.session() as session:
        entries = session.scalars(
            sa.select(DatasetEntry).where(DatasetEntry.removed_at.is_(None)).order_by(DatasetEntry.id)
        ).all()
        if not entries:
            return PurgeSummary(kept=0, removed=())
        retired = set(
            session.scalars(
                sa.select(ModelVersion.id).where(ModelVersion.status == VersionStatus.RETIRED)
            )
        )
        data = [_dataset_clip(e) for e in entries]
        reps = [e.clip.representation for e in entries]
        sim = (
            pairwise_similarities([representation_of(r) for r in reps])
            if all(r is not None for r in reps)
            else None
        )
        result = feedback.purge(
            data,
            sim,
            now=now,
            retired_versions=retired,
            near_duplicate_similarity=s.purge_similarity,
            max_age=dt.timedelta(days=s.dataset_max_age_days) if s.dataset_max_age_days else None,
            max_size=s.dataset_max_size,
        )
        by_clip = {e.clip_id: e for e in entries}
        removed = []
        for r in result.removed:
            entry = by_clip[r.clip_id]
            entry.removed_at = now
            entry.removal_reason = _RULE_REASON[r.rule]
            entry.removal_detail = r.reason
            if r.kept_clip_id is not None and r.kept_clip_id in by_clip:
                entry.replaced_by_id = by_clip[r.kept_clip_id].id
            removed.append((int(r.clip_id), entry.removal_reason.value, r.reason))
        return PurgeSummary(kept=len(result.kept), removed=tuple(removed))


@dataclass(frozen=True)
class DatasetRow:
    entry_id: int
    clip_id: int
    version: str | None
    rating_score: float
    confidence: float
    n_ratings: int
    added_at: dt.datetime
    removed_at: dt.datetime | None
    removal_reason: str | None
    removal_detail: str | None


def list_dataset(ctx: ServiceContext, *, include_removed: bool = True) -> list[DatasetRow]:
    """The curated dataset, best first (removed entries after, with their reasons)."""
    with ctx.reading() as session:
        q = sa.select(DatasetEntry).order_by(
            DatasetEntry.removed_at.is_not(None), DatasetEntry.rating_score.desc()
        )
        if not include_removed:
            q = q.where(DatasetEntry.removed_at.is_(None))
        counts = dict(
            session.execute(
                sa.select(Rating.clip_id, sa.func.count()).group_by(Rating.clip_id)
            ).all()
        )
        rows = []
        for e in session.scalars(q):
            rows.append(
                DatasetRow(
                    entry_id=e.id,
                    clip_id=e.clip_id,
                    version=e.clip.model_version.name if e.clip.model_version else None,
                    rating_score=float(e.rating_score),
                    confidence=float(e.confidence),
                    n_ratings=int(counts.get(e.clip_id, 0)),
                    added_at=as_utc(e.added_at),
                    removed_at=as_utc(e.removed_at) if e.removed_at else None,
                    removal_reason=e.removal_reason.value if e.removal_reason else None,
                    removal_detail=e.removal_detail,
                )
            )
        return rows


@dataclass(frozen=True)
class RaterView:
    user_id: int
    rater_id: str
    display_name: str
    weight: float
    bias: float
    noise: float | None
    flagged: bool
    reasons: tuple[str, ...]
    rating_count: int


def list_raters(ctx: ServiceContext) -> list[RaterView]:
    """Stored rater reputations (run :func:`curate` to refresh them), flagged first."""
    with ctx.reading() as session:
        rows = session.execute(
            sa.select(RaterReputation, User)
            .join(User, User.id == RaterReputation.user_id)
            .order_by(RaterReputation.flagged.desc(), RaterReputation.weight)
        ).all()
        return [
            RaterView(
                user_id=u.id,
                rater_id=u.rater_id,
                display_name=u.display_name,
                weight=float(r.weight),
                bias=float(r.bias),
                noise=r.noise,
                flagged=bool(r.flagged),
                reasons=tuple(r.reasons or ()),
                rating_count=int(r.rating_count),
            )
            for r, u in rows
        ]


def dataset_training_set(ctx: ServiceContext, *, top_n: int = 100) -> list[tuple[int, float]]:
    """``(clip id, confidence)`` of the top-N active dataset clips by R (fine-tuning input)."""
    with ctx.reading() as session:
        rows = session.execute(
            sa.select(DatasetEntry.clip_id, DatasetEntry.confidence)
            .join(Clip, Clip.id == DatasetEntry.clip_id)
            .where(DatasetEntry.removed_at.is_(None), Clip.status == ClipStatus.READY)
            .order_by(sa.func.coalesce(Clip.rating_score, DatasetEntry.rating_score).desc(), DatasetEntry.clip_id)
            .limit(top_n)
        ).all()
        return [(int(r.clip_id), float(r.confidence)) for r in rows]
