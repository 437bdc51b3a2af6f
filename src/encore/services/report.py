"""The report (the paper's Table 1 and more) and the CSV export of every rating.

Rows: for each request's input songs (a song, or a blend labelled ``a+b``) and each model
version, the mean rating and count; the overall row; each version's change against the
previous one with a bootstrap 95 % interval (resampling raters); the same split by dispatch
branch (``new`` = ``generate`` + ``review``, each of those, and ``baseline``). A rating counts
for the version that generated the rated clip whatever branch delivered it: a review (a new
clip of version v served to another listener) is a rating of v. Only counted ratings of
unflagged raters enter the numbers; the CSV has every rating with its flags.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from encore import feedback
from encore.services.context import ServiceContext
from encore.store import Clip, Delivery, ModelVersion, RaterReputation, Rating, Song, User

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "rating_id", "created_at", "rater", "stars", "listened_fraction", "counted", "rater_flagged",
    "rater_weight", "clip_id", "clip_kind", "version", "branch", "input_songs", "input_titles",
    "delivery_id", "listened_seconds", "clip_seconds", "rating_score", "confidence", "similarity",
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


def rating_rows(ctx: ServiceContext) -> list[RatingRow]:
    """Every rating with its listen, clip, version and (pseudonymous) rater."""
    with ctx.reading() as session:
        titles = dict(session.execute(sa.select(Song.id, Song.title)).all())
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
        for rating, delivery, clip, version, user, rep in session.execute(q):
            inputs = [int(i) for i in delivery.input_song_ids]
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
                )
            )
        return rows


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


def build_report(
    ctx: ServiceContext, *, seed: int = 0, n_resamples: int = 2000, include_flagged: bool = False
) -> feedback.Report | None:
    """The report's numbers, or ``None`` when no rating counts yet."""
    rows = [
        r for r in rating_rows(ctx) if r.counted and (include_flagged or not r.rater_flagged)
    ]
    if not rows:
        return None
    present = {r.version for r in rows}
    versions = [v for v in _version_order(ctx) if v in present]
    records = feedback.RatingRecords(
        ratings=np.array([r.stars for r in rows], dtype=float),
        song_ids=np.array([r.input_titles for r in rows], dtype=object),
        version_ids=np.array([r.version for r in rows], dtype=object),
        # the bootstrap resamples raters in sorted key order: user ids are stable across
        # installations given the same sign-ups, the pseudonyms are random per account
        rater_ids=np.array([r.rater_user_id for r in rows], dtype=np.int64),
        branches=np.array([r.branch for r in rows], dtype=object),
    )
    return feedback.build_report(
        records, rng=np.random.default_rng(seed), versions=versions, n_resamples=n_resamples
    )


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


def report_plots(ctx: ServiceContext, out_dir: Path, *, report: feedback.Report | None = None) -> list[Path]:
    """PNG plots: mean rating per version with 95 % intervals; rating distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = report or build_report(ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    if report is None:
        return []
    rows = [r for r in rating_rows(ctx) if r.counted and not r.rater_flagged]
    versions = list(report.table.versions)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 3.5))
    overall = {c.version_id: c for c in report.table.overall}
    means = [overall[v].mean if v in overall else np.nan for v in versions]
    errs_low, errs_high = [], []
    for v in versions:
        vals = np.array([r.stars for r in rows if r.version == v])
        if len(vals) > 1:
            rng = np.random.default_rng(0)
            boots = rng.choice(vals, size=(1000, len(vals))).mean(axis=1)
            lo, hi = np.percentile(boots, [2.5, 97.5])
            errs_low.append(vals.mean() - lo)
            errs_high.append(hi - vals.mean())
        else:
            errs_low.append(0.0)
            errs_high.append(0.0)
    ax.errorbar(versions, means, yerr=[errs_low, errs_high], fmt="o-", capsize=4)
    ax.set_ylim(1, 5)
    ax.set_xlabel("model version")
    ax.set_ylabel("mean rating (stars)")
    ax.set_title("Mean rating per version (95 % bootstrap interval)")
    fig.tight_layout()
    path = out_dir / "ratings_per_version.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.arange(0.75, 5.5, 0.5)
    for v in versions:
        vals = [r.stars for r in rows if r.version == v]
        ax.hist(vals, bins=bins, alpha=0.5, label=f"{v} (n={len(vals)})", density=True)
    ax.set_xlabel("stars")
    ax.set_ylabel("share of ratings")
    ax.legend()
    ax.set_title("Rating distributions")
    fig.tight_layout()
    path = out_dir / "rating_distributions.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths
