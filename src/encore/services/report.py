"""The report (the fair comparison of versions, the paper's Table 1 and more) and the CSV
export of every rating.

Headline (issue 15): each version against its parent and against v0 — the mean **paired**
difference (the same listener, songs, seeds and strength served by both versions, blind)
with a listener-clustered bootstrap 95 % interval, the win rate and the per-listener gains,
where there are enough counted pairs; else the difference over **fresh** clips (generated
for the rated request: no review or baseline rating) within the **same rounds** (periods with
the same set of active versions), with a two-way bootstrap over raters and clips. Then the
gain's decomposition (selection alone, weights alone, both), each version's mean over fresh
clips (the plot's points and error bars), and the baseline ratings of dataset clips apart
(never counted for the version that made the clip). See ``docs/feedback.md``.

Guards (issue 15, :mod:`encore.feedback.guards`): per version, the clips it served (generated
by it and delivered to any listener, in any branch but ``baseline``; each clip once) — their
diversity, measured as ``encore eval`` measures it (:func:`encore.diffusion.evaluate.
mean_pairwise_distance` of feature vectors standardised with :class:`~encore.diffusion.evaluate.
Standardiser`): here the clips' stored audio descriptors (the 12 of
:mod:`encore.audio.descriptors`), standardised with the mean and std of every version's served
clips together, so every version is measured on one scale; and their median similarity to the
input (S, stored with each clip). Each version against the reference (v0): diversity within
10 %, median S at most +0.05 above; and, where the two versions share ≥ 10 paired deliveries,
the same two figures on those pairs' halves only (like for like: the same listener, songs and
seeds). Computed from the platform's own rows only.

Table 1 (pooled): for each request's input songs (a song, or a blend labelled ``a + b``;
grouped by song ids — a title shared by different songs gets its ids) and each model
version, the mean rating and count; the overall row; each version's change against the
previous one with a bootstrap 95 % interval (resampling raters); the same split by dispatch
branch (``new`` = ``generate`` + ``review``, each of those, and ``baseline``). In Table 1 a
rating counts for the version that generated the rated clip whatever branch delivered it: it
mixes rounds and branches, so it is not a fair comparison of versions. Only counted ratings
of unflagged raters enter the numbers; the CSV has every rating with its flags.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from encore import feedback
from encore.audio.descriptors import DESCRIPTOR_NAMES, descriptor_vector
from encore.diffusion.evaluate import Standardiser, mean_pairwise_distance
from encore.errors import InvalidInput
from encore.services.context import ServiceContext
from encore.store import (
    Clip,
    ClipKind,
    ClipStatus,
    Delivery,
    ModelVersion,
    RaterReputation,
    Rating,
    Song,
    User,
)
from encore.store.enums import DispatchBranch

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "rating_id", "created_at", "rater", "stars", "listened_fraction", "counted", "rater_flagged",
    "rater_weight", "clip_id", "clip_kind", "version", "branch", "input_songs", "input_titles",
    "delivery_id", "listened_seconds", "clip_seconds", "rating_score", "confidence", "similarity",
    "selection", "propensity", "predicted_stars", "taste_model_id", "pair_id", "request_id",
    "candidate_index", "n_candidates", "taste_pick", "fresh", "round",
)


@dataclass(frozen=True)
class RatingRow:
    rating_id: int
    created_at: str
    rater: str
    rater_user_id: int
    stars: float
    listened_fraction: float
    counted: bool
    rater_flagged: bool
    rater_weight: float
    clip_id: int
    clip_kind: str
    version: str
    version_id: int
    branch: str
    input_songs: str
    input_titles: str
    delivery_id: int
    listened_seconds: float
    clip_seconds: float | None
    rating_score: float | None
    confidence: float | None
    similarity: float | None
    # issue 15: how the served clip was chosen, pairs, rounds
    selection: str | None = None  # "taste" | "explore" | "single"; None: baseline, review, old
    propensity: float | None = None  # as stored on the delivery
    predicted_stars: float | None = None  # the taste model's prediction for the served clip
    taste_model_id: int | None = None
    pair_id: str | None = None
    request_id: str | None = None  # the clip's request: its candidates share it
    candidate_index: int | None = None
    n_candidates: int | None = None  # clips generated for that request (served or not)
    taste_pick: bool | None = None  # served clip = the request's highest predicted candidate
    fresh: bool = False  # the clip was generated for this delivery's request (branch generate)
    round: int = 0  # period between version activations/retirements when it was delivered
    song_key: str = ""  # Table 1's row: the titles, with the ids where a title is ambiguous


def _naive_utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def round_boundaries(session: sa.orm.Session) -> list[dt.datetime]:
    """The times a version was activated or retired (sorted, distinct, naive UTC): round k is
    the period from the k-th to the (k+1)-th, when the same set of versions was active."""
    times = set()
    for act, ret in session.execute(sa.select(ModelVersion.activated_at, ModelVersion.retired_at)):
        times.update(_naive_utc(t) for t in (act, ret) if t is not None)
    return sorted(times)


def round_of(boundaries: list[dt.datetime], when: dt.datetime) -> int:
    """The round of a delivery made at ``when`` (0 before the first boundary too)."""
    return max(bisect.bisect_right(boundaries, _naive_utc(when)) - 1, 0)


def _candidates(session: sa.orm.Session, request_ids: set[str]) -> dict[str, tuple[int, int | None]]:
    """Per request: (number of candidates, the clip id the taste model ranks first — None
    unless every candidate has a prediction; ties go to the lower candidate index)."""
    rows: dict[str, list[tuple[float | None, int, int]]] = {}
    ids = sorted(request_ids)
    for start in range(0, len(ids), 500):
        q = sa.select(Clip.request_id, Clip.predicted_stars, Clip.candidate_index, Clip.id).where(
            Clip.request_id.in_(ids[start:start + 500]))
        for rid, pred, index, cid in session.execute(q):
            rows.setdefault(rid, []).append((pred, index if index is not None else cid, cid))
    out = {}
    for rid, cands in rows.items():
        pick = None
        if all(p is not None for p, _, _ in cands):
            pick = min(cands, key=lambda c: (-c[0], c[1], c[2]))[2]  # type: ignore[operator]
        out[rid] = (len(cands), pick)
    return out


def rating_rows(ctx: ServiceContext) -> list[RatingRow]:
    """Every rating with its listen, clip, version, (pseudonymous) rater, how the clip was
    chosen, its pair and its round."""
    with ctx.reading() as session:
        titles = dict(session.execute(sa.select(Song.id, Song.title)).all())
        boundaries = round_boundaries(session)
        q = (
            sa.select(Rating, Delivery, Clip, ModelVersion, User, RaterReputation)
            .join(Delivery, Delivery.id == Rating.delivery_id)
            .join(Clip, Clip.id == Rating.clip_id)
            .join(ModelVersion, ModelVersion.id == Clip.model_version_id)
            .join(User, User.id == Rating.listener_id)
            .outerjoin(RaterReputation, RaterReputation.user_id == Rating.listener_id)
            .order_by(Rating.id)
        )
        rows = []
        fetched = list(session.execute(q))
        candidates = _candidates(session, {c.request_id for _, _, c, _, _, _ in fetched
                                           if c.request_id is not None})
        for rating, delivery, clip, version, user, rep in fetched:
            inputs = [int(i) for i in delivery.input_song_ids]
            fresh = delivery.branch is DispatchBranch.GENERATE
            n_cand, pick = candidates.get(clip.request_id, (None, None)) if fresh else (None, None)
            rows.append(
                RatingRow(
                    rating_id=rating.id,
                    created_at=rating.created_at.isoformat(),
                    rater=user.rater_id,
                    rater_user_id=user.id,
                    stars=rating.half_stars / 2,
                    listened_fraction=float(rating.listened_fraction),
                    counted=bool(rating.counted),
                    rater_flagged=bool(rep.flagged) if rep else False,
                    rater_weight=float(rep.weight) if rep else 1.0,
                    clip_id=clip.id,
                    clip_kind=clip.kind.value,
                    version=version.name,
                    version_id=version.id,
                    branch=delivery.branch.value,
                    input_songs="+".join(str(i) for i in inputs),
                    input_titles=" + ".join(titles.get(i, "?") for i in inputs),
                    delivery_id=delivery.id,
                    listened_seconds=float(delivery.listened_seconds),
                    clip_seconds=clip.seconds,
                    rating_score=clip.rating_score,
                    confidence=clip.confidence,
                    similarity=clip.similarity,
                    selection=delivery.selection,
                    propensity=delivery.propensity,
                    predicted_stars=delivery.predicted_stars,
                    taste_model_id=delivery.taste_model_id,
                    pair_id=delivery.pair_id,
                    request_id=clip.request_id,
                    candidate_index=clip.candidate_index,
                    n_candidates=n_cand,
                    taste_pick=None if pick is None else pick == clip.id,
                    fresh=fresh,
                    round=round_of(boundaries, delivery.delivered_at),
                )
            )
        return _with_song_keys(rows)


def _with_song_keys(rows: list[RatingRow]) -> list[RatingRow]:
    """Set each row's Table 1 key: its titles, plus its song ids where different songs (or
    blends) share the titles — rows are grouped by song ids, never by title text alone."""
    ids_of: dict[str, set[str]] = {}
    for r in rows:
        ids_of.setdefault(r.input_titles, set()).add(r.input_songs)
    return [dataclasses.replace(r, song_key=r.input_titles if len(ids_of[r.input_titles]) == 1
                                else f"{r.input_titles} (#{r.input_songs})") for r in rows]


def ratings_csv(ctx: ServiceContext) -> str:
    """CSV of :func:`rating_rows` (header ``CSV_COLUMNS``)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in rating_rows(ctx):
        writer.writerow([getattr(r, c) for c in CSV_COLUMNS])
    return buf.getvalue()


def _version_order(ctx: ServiceContext) -> list[str]:
    with ctx.reading() as session:
        return list(session.scalars(sa.select(ModelVersion.name).order_by(ModelVersion.id)))


def _version_parents(ctx: ServiceContext) -> dict[str, str | None]:
    """Each version's parent version (by name; None for v0 and imported versions)."""
    with ctx.reading() as session:
        names = dict(session.execute(sa.select(ModelVersion.id, ModelVersion.name)).all())
        return {names[i]: names.get(p) if p is not None else None
                for i, p in session.execute(sa.select(ModelVersion.id, ModelVersion.parent_id))}


def rating_records(rows: list[RatingRow]) -> feedback.RatingRecords:
    """The rows as :class:`encore.feedback.RatingRecords` (every field the report uses)."""

    def propensity(r: RatingRow) -> float:
        # explore deliveries: the uniform draw among the request's candidates
        if r.selection == "explore" and r.n_candidates:
            return 1.0 / r.n_candidates
        if r.selection == "explore" and r.propensity is not None:
            return float(r.propensity)
        return float("nan")

    return feedback.RatingRecords(
        ratings=np.array([r.stars for r in rows], dtype=float),
        song_ids=np.array([r.song_key or r.input_titles for r in rows], dtype=object),
        version_ids=np.array([r.version for r in rows], dtype=object),
        # the bootstrap resamples raters in sorted key order: user ids are stable across
        # installations given the same sign-ups, the pseudonyms are random per account
        rater_ids=np.array([r.rater_user_id for r in rows], dtype=np.int64),
        branches=np.array([r.branch for r in rows], dtype=object),
        clip_ids=np.array([r.clip_id for r in rows], dtype=np.int64),
        selections=np.array([r.selection if r.fresh else None for r in rows], dtype=object),
        propensities=np.array([propensity(r) for r in rows], dtype=float),
        taste_picks=np.array([np.nan if r.taste_pick is None else float(r.taste_pick)
                              for r in rows], dtype=float),
        fresh=np.array([r.fresh for r in rows], dtype=bool),
        rounds=np.array([r.round for r in rows], dtype=np.int64),
        pair_ids=np.array([r.pair_id for r in rows], dtype=object),
    )


def build_report(
    ctx: ServiceContext, *, seed: int = 0, n_resamples: int = 2000, include_flagged: bool = False,
    guard_space: str = "descriptors",
) -> feedback.Report | None:
    """The report's numbers, or ``None`` when no rating counts yet: the fair comparison of
    each version with its parent and with v0 (``headline``, ``paired``, ``same_round``,
    ``decomposition``, ``fresh_means``, ``baseline``) and Table 1 pooled and by branch."""
    rows = [
        r for r in rating_rows(ctx) if r.counted and (include_flagged or not r.rater_flagged)
    ]
    if not rows:
        return None
    present = {r.version for r in rows}
    order = _version_order(ctx)
    versions = [v for v in order if v in present]
    built = feedback.build_report(
        rating_records(rows), rng=np.random.default_rng(seed), versions=versions,
        n_resamples=n_resamples, parents=_version_parents(ctx), reference=order[0],
    )
    sets, guards = feedback.served_guards(
        served_clips(ctx, space=guard_space), diversity=mean_pairwise_distance, versions=order,
        reference=order[0], rng=np.random.default_rng([seed, GUARD_SEED]),
        n_resamples=GUARD_RESAMPLES, tolerance=GUARD_DIVERSITY_TOLERANCE,
        margin=GUARD_SIMILARITY_MARGIN, space=guard_space)
    return dataclasses.replace(built, served=sets, guards=guards)


#: The guards' targets (issue 15) and their bootstrap (resamples of clips, as ``encore eval
#: --compare`` does; 200 keep the report quick: 1.3 s for 3 × 600 clips at load 11).
GUARD_DIVERSITY_TOLERANCE = 0.10
GUARD_SIMILARITY_MARGIN = 0.05
GUARD_RESAMPLES = 200
GUARD_SEED = 0x6A4D


@dataclass(frozen=True)
class ServedRow:
    """One generated clip a version served (what the guards read; ``served.csv``)."""

    clip_id: int
    version: str
    selection: str | None  # how the first delivery that chose it chose; None: reviews only
    pair_id: str | None
    similarity: float | None
    descriptors: dict[str, Any] | None
    audio_key: str | None = None


SERVED_CSV_COLUMNS = ("clip_id", "version", "selection", "pair_id", "similarity",
                      *DESCRIPTOR_NAMES)


def served_rows(ctx: ServiceContext) -> list[ServedRow]:
    """The generated clips each version served — delivered to a listener in any branch but
    ``baseline``, ready, each clip once (by clip id) — with how the first delivery that
    chose them chose (``taste``/``explore``/``single``) and the pair they were served in."""
    q = (
        sa.select(Clip.id, ModelVersion.name, Clip.descriptors, Clip.similarity,
                  Delivery.branch, Delivery.selection, Delivery.pair_id, Clip.audio_key)
        .join(Delivery, Delivery.clip_id == Clip.id)
        .join(ModelVersion, ModelVersion.id == Clip.model_version_id)
        .where(Clip.kind == ClipKind.GENERATED, Clip.status == ClipStatus.READY,
               Delivery.branch != DispatchBranch.BASELINE)
        .order_by(Clip.id, Delivery.id)
    )
    rows: dict[int, ServedRow] = {}
    with ctx.reading() as session:
        for cid, version, descriptors, similarity, branch, selection, pair, audio in session.execute(q):
            chosen = selection if branch is DispatchBranch.GENERATE else None
            known = rows.get(cid)
            if known is None:
                rows[cid] = ServedRow(cid, version, chosen, pair, similarity, descriptors, audio)
            else:
                rows[cid] = dataclasses.replace(known, selection=known.selection or chosen,
                                                pair_id=known.pair_id or pair)
    return list(rows.values())


def served_csv(ctx: ServiceContext) -> str:
    """CSV of :func:`served_rows` (header ``SERVED_CSV_COLUMNS``: the descriptors one column
    each), enough to recompute every guard."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SERVED_CSV_COLUMNS)
    for r in served_rows(ctx):
        writer.writerow([r.clip_id, r.version, r.selection, r.pair_id, r.similarity,
                         *descriptor_vector(r.descriptors)])
    return buf.getvalue()


#: What the guards' diversity is measured over: the stored descriptors (the report's
#: default), or ``encore eval``'s own features computed from each served clip's audio
#: (``encore report --eval-features``: decodes every served clip, ~0.2 s per 5.9-s clip).
GUARD_SPACES = {"descriptors": "the clips' stored audio descriptors",
                "eval": "encore eval's features of the served audio"}


def eval_features(ctx: ServiceContext, rows: Sequence[ServedRow]) -> np.ndarray:
    """``encore eval``'s feature vectors (:func:`encore.diffusion.features.features_for_clips`)
    of each row's stored audio, at its own sample rate; a NaN row where the audio is gone."""
    from encore.audio.decode import load_audio, probe_audio  # soundfile/librosa: deferred
    from encore.diffusion.features import feature_names, features_for_clips

    out = np.full((len(rows), len(feature_names())), np.nan)
    for i, r in enumerate(rows):
        if not r.audio_key or not ctx.blobs.exists(r.audio_key):
            continue
        data = ctx.blobs.get(r.audio_key)
        sr = probe_audio(data).sample_rate
        out[i] = features_for_clips([load_audio(data, sr=sr, max_seconds=None,
                                                silence_db=-np.inf)], sr)[0]
    return out


def served_clips(ctx: ServiceContext, *, space: str = "descriptors"
                 ) -> dict[str, feedback.ServedClips]:
    """:func:`served_rows` per version (by name), as the guards read them: feature vectors
    (``space``, a key of :data:`GUARD_SPACES`) standardised over all versions' served clips
    together, S (NaN where unknown), selections and pair ids."""
    if space not in GUARD_SPACES:
        raise InvalidInput(f"guard features {space!r} must be one of {sorted(GUARD_SPACES)}")
    rows = served_rows(ctx)
    if not rows:
        return {}
    features = (eval_features(ctx, rows) if space == "eval"
                else np.stack([descriptor_vector(r.descriptors) for r in rows]))
    finite = np.all(np.isfinite(features), axis=1)
    if finite.sum() >= 2:
        features = Standardiser.fit(features[finite])(features)
    names = np.array([r.version for r in rows], dtype=object)
    similarity = np.array([np.nan if r.similarity is None else r.similarity for r in rows], float)
    selections = np.array([r.selection for r in rows], dtype=object)
    pairs = np.array([r.pair_id for r in rows], dtype=object)
    return {v: feedback.ServedClips(features[m], similarity[m], selections[m], pairs[m])
            for v in dict.fromkeys(names.tolist()) if (m := names == v).any()}


def format_table(report: feedback.Report) -> str:
    """Table 1 as text: one row per input song, columns per version (mean (n))."""
    table = report.table
    lines = []
    width = max([len(str(s)) for s in table.songs] + [12])
    header = "input".ljust(width) + "".join(f"{str(v):>16}" for v in table.versions)
    lines.append(header)
    for song in table.songs:
        cells = []
        for v in table.versions:
            c = table.cell(song, v)
            cells.append(f"{c.mean:8.2f} ({c.count:3d})  " if c and c.count else f"{'–':>14}  ")
        lines.append(str(song).ljust(width)[:width] + "".join(f"{x:>16}" for x in cells))
    overall = {c.version_id: c for c in table.overall}
    lines.append(
        "overall".ljust(width)
        + "".join(
            f"{overall[v].mean:8.2f} ({overall[v].count:3d})  ".rjust(16) if v in overall else " " * 16
            for v in table.versions
        )
    )
    lines.append("")
    for ch in table.changes:
        lines.append(
            f"{ch.version_id} vs {ch.previous_version_id}: {ch.difference:+.2f} stars, "
            f"{int(ch.level * 100)} % CI [{ch.ci_low:+.2f}, {ch.ci_high:+.2f}] "
            f"(n = {ch.n_ratings} vs {ch.n_ratings_previous}; {ch.n_raters} raters)"
        )
    for branch, sub in report.by_branch.items():
        parts = ", ".join(f"{c.version_id} {c.mean:.2f} (n={c.count})" for c in sub.overall)
        lines.append(f"branch {branch}: {parts}")
    return "\n".join(lines)


def _ci(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "[interval: too few raters]"
    return f"[{lo:+.2f}, {hi:+.2f}]"


def _rounds(rounds: tuple) -> str:
    return ("round " if len(rounds) == 1 else "rounds ") + ", ".join(str(r) for r in rounds)


def describe_comparison(c: feedback.Comparison) -> str:
    """One line: the difference, its interval and how it was measured."""
    head = f"{c.difference:+.2f} stars {_ci(c.ci_low, c.ci_high)}"
    if c.method == "paired" and c.paired is not None:
        p = c.paired
        return (f"{head} paired: {p.n_pairs} pairs, {p.n_listeners} listeners; "
                f"{c.version_id} won {100 * p.win_rate:.0f} % (ties half); "
                f"{100 * p.share_improved:.0f} % of listeners gained")
    if c.method == "off-policy" and c.policy is not None:
        pv = c.policy
        return (f"{head} off-policy on {c.reference_id}'s explore deliveries: taste pick "
                f"{pv.snips:.2f} vs uniform {pv.logged_mean:.2f} ({pv.n_matched} of {pv.n} "
                f"served the taste pick; IPS {pv.ips:.2f})")
    return (f"{head} {c.method} ({_rounds(c.rounds)}): n = {c.n} vs {c.n_reference}; "
            f"{c.n_raters} raters, {c.n_clips} clips")


def format_fair(report: feedback.Report) -> str:
    """The fair comparison as text: the headline, the paired deliveries, the same-round fresh
    comparisons, the decomposition, each version's fresh mean and the baselines apart."""
    lines = ["Versions compared fairly (headline): paired where there are enough pairs, else "
             "fresh clips in the same rounds; 95 % intervals"]
    if not report.headline:
        lines.append("  (one version only, or none shares a round or a pair with another)")
    lines += _comparison_lines(report.headline)
    _section(lines, "Paired deliveries (same listener, songs, seeds and strength; blind):",
             [_paired_line(p) for p in report.paired])
    _section(lines, "Fresh clips, same rounds (two-way intervals: raters and clips):",
             _comparison_lines(report.same_round))
    _section(lines, "Decomposition of the gain over the reference's uniform pick:",
             [line for d in report.decomposition for line in _decomposition_lines(d)])
    if report.fresh_means:
        lines.append("")
        lines.append("Fresh clips by version, all rounds (two-way 95 % intervals; the plot): "
                     + ", ".join(f"{m.label} {m.mean:.2f} [{m.ci_low:.2f}, {m.ci_high:.2f}] "
                                 f"(n={m.n})" for m in report.fresh_means))
    if report.baseline is not None:
        b = report.baseline
        lines.append(f"Dataset clips served as baselines (counted for no version): "
                     f"{b.mean:.2f} [{b.ci_low:.2f}, {b.ci_high:.2f}] (n={b.n})")
    space = GUARD_SPACES.get(report.served[0].space, "?") if report.served else ""
    _section(lines, "Guards (served clips: generated by the version and delivered, baselines "
             f"excluded; diversity = encore eval's mean pairwise distance, over {space} "
             "standardised; S = similarity to the input; 95 % intervals over clips):",
             guard_lines(report))
    return "\n".join(lines)


def _num(x: float, fmt: str) -> str:
    return format(x, fmt) if np.isfinite(x) else "–"


def _range(lo: float, hi: float, fmt: str) -> str:
    return f"[{_num(lo, fmt)}, {_num(hi, fmt)}]"


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("passed" if ok else "FAILED")


def guard_lines(report: feedback.Report) -> list[str]:
    """Each version's served clips (all, then taste and explore picks), then each version's
    guards against the reference: the lines the report and the pilot's summary print."""
    lines = []
    for st in report.served:
        lines.append(f"  {'  ' if st.selection else ''}{st.label}: n={st.n_clips}, diversity "
                     f"{_num(st.diversity, '.3f')} "
                     f"{_range(st.diversity_ci_low, st.diversity_ci_high, '.3f')}, median S "
                     f"{_num(st.median_similarity, '.3f')} "
                     f"{_range(st.similarity_ci_low, st.similarity_ci_high, '.3f')}")
    for g in report.guards:
        lines.append(
            f"  guard {g.version_id} vs {g.reference_id}: diversity "
            f"{_num(g.diversity_ratio, '.2f')}× {_range(g.ratio_ci_low, g.ratio_ci_high, '.2f')} "
            f"{_verdict(g.diversity_ok)} (allowed {1 - g.tolerance:.2f}–{1 + g.tolerance:.2f}); "
            f"median S {_num(g.similarity_difference, '+.3f')} "
            f"{_range(g.difference_ci_low, g.difference_ci_high, '+.3f')} "
            f"{_verdict(g.similarity_ok)} (allowed ≤ {g.margin:+.2f})")
        if np.isfinite(g.paired_ratio):
            lines.append(
                f"    like for like, {g.n_pairs} paired deliveries (same listener, songs, seeds): "
                f"diversity {_num(g.paired_ratio, '.2f')}× "
                f"{_range(g.paired_ratio_ci_low, g.paired_ratio_ci_high, '.2f')}, median S "
                f"{_num(g.paired_difference, '+.3f')} "
                f"{_range(g.paired_difference_ci_low, g.paired_difference_ci_high, '+.3f')}")
    return lines


def _section(lines: list[str], title: str, rows: list[str]) -> None:
    """A blank line, ``title`` and ``rows``, if there are rows."""
    if rows:
        lines += ["", title, *rows]


def _comparison_lines(comparisons: Sequence[feedback.Comparison]) -> list[str]:
    return [f"{c.version_id} vs {c.reference_id}: {describe_comparison(c)}" for c in comparisons]


def _paired_line(p: feedback.PairedComparison) -> str:
    q = ", ".join(f"{x:+.2f}" for x in p.gain_quantiles)
    return (f"{p.version_id} vs {p.reference_id}: {p.n_pairs} pairs, {p.n_listeners} "
            f"listeners, mean {p.mean_difference:+.2f} {_ci(p.ci_low, p.ci_high)}; win rate "
            f"{p.win_rate:.2f} [{p.win_rate_ci_low:.2f}, {p.win_rate_ci_high:.2f}]; "
            f"per-listener gain min/25 %/median/75 %/max {q}; improved "
            f"{100 * p.share_improved:.0f} %, worse {100 * p.share_worse:.0f} %")


def _decomposition_lines(d: feedback.GainDecomposition) -> list[str]:
    lines = [f"{d.version_id} vs {d.reference_id}:"]
    for name, part in (("selection alone", d.selection), ("weights alone", d.weights),
                       ("both", d.both)):
        lines.append(f"  {name}: {describe_comparison(part) if part is not None else 'no data'}")
    if np.isfinite(d.remainder):
        lines.append(f"  remainder (both − selection − weights): {d.remainder:+.2f}")
    return lines


def format_report(report: feedback.Report) -> str:
    """What ``encore report`` prints: :func:`format_fair`, then Table 1 pooled
    (:func:`format_table`)."""
    return "\n".join([format_fair(report), "",
                      "Table 1, pooled (every branch and round; not a fair comparison):",
                      format_table(report)])


def report_plots(ctx: ServiceContext, out_dir: Path, *, report: feedback.Report | None = None) -> list[Path]:
    """PNG plots: each version's mean over fresh clips and the headline differences, both with
    the report's own two-way / paired 95 % intervals; rating distributions of fresh clips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = report or build_report(ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    if report is None:
        return []
    rows = [r for r in rating_rows(ctx) if r.counted and not r.rater_flagged]
    paths = []

    def save(fig: object, name: str) -> None:
        fig.tight_layout()  # type: ignore[attr-defined]
        path = out_dir / name
        fig.savefig(path, dpi=100)  # type: ignore[attr-defined]
        plt.close(fig)  # type: ignore[arg-type]
        paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    means = list(report.fresh_means)
    if means:
        x = [str(m.label) for m in means]
        y = np.array([m.mean for m in means])
        lo = np.array([m.ci_low for m in means])
        hi = np.array([m.ci_high for m in means])
        err = np.nan_to_num(np.stack([y - lo, hi - y]), nan=0.0)
        ax.errorbar(x, y, yerr=err, fmt="o-", capsize=4, label="fresh clips")
        if report.baseline is not None:
            ax.axhline(report.baseline.mean, color="grey", ls="--",
                       label=f"dataset baselines ({report.baseline.mean:.2f})")
        ax.legend(fontsize=8)
    ax.set_ylim(1, 5)
    ax.set_xlabel("model version")
    ax.set_ylabel("mean rating (stars)")
    ax.set_title("Fresh clips per version (95 % two-way interval)", fontsize=10)
    save(fig, "ratings_per_version.png")

    if report.headline:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = [f"{c.version_id} vs {c.reference_id}\n({c.method})" for c in report.headline]
        d = np.array([c.difference for c in report.headline])
        err = np.nan_to_num(np.stack([d - np.array([c.ci_low for c in report.headline]),
                                      np.array([c.ci_high for c in report.headline]) - d]),
                            nan=0.0)
        ax.errorbar(labels, d, yerr=err, fmt="o", capsize=4)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("difference (stars)")
        ax.set_title("Versions compared fairly (95 % interval, as in the table)", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        save(fig, "version_gains.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_rating_distributions(
        ax,
        {f"{v} fresh": [r.stars for r in rows if r.version == v and r.fresh]
         for v in report.table.versions},
        [r.stars for r in rows if r.branch == "baseline"],
    )
    save(fig, "rating_distributions.png")
    return paths


#: Half-star bins of the rating distributions, centred on 1, 1.5, …, 5 stars.
RATING_BINS = np.arange(0.75, 5.5, 0.5)


def plot_rating_distributions(ax: Any, fresh: dict[str, list[float]], baseline: list[float]) -> None:
    """Bars of each version's fresh ratings and an outline of the baselines' on ``ax``: the
    *share* of that series' ratings at each half star (each series' bars sum to 1, as the
    axis says; a density would read 2 for a single half-star bin)."""
    for label, vals in fresh.items():
        if vals:
            ax.hist(vals, bins=RATING_BINS, alpha=0.5, label=f"{label} (n={len(vals)})",
                    weights=np.full(len(vals), 1.0 / len(vals)))
    if baseline:
        ax.hist(baseline, bins=RATING_BINS, histtype="step", color="black",
                weights=np.full(len(baseline), 1.0 / len(baseline)),
                label=f"dataset baselines (n={len(baseline)})")
    ax.set_xlabel("stars")
    ax.set_ylabel("share of ratings")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("Rating distributions")
