"""Preference data from the platform for Diffusion-DPO / Diffusion-KTO fine-tunes.

Reads the counted ratings (with each clip's input songs, the delivery's request and the
rater's weight and flag) and the unserved best-of-n candidates with their taste predictions,
and hands them to the pure rules of :mod:`encore.feedback.preferences`. The examples are fixed
when a run starts (stored on the :class:`~encore.store.TrainingRun` as its ``training_set``);
:func:`train` is the ``dpo`` / ``kto`` branch of the ``finetune`` job.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from encore.errors import InvalidInput
from encore.feedback import preferences as rules
from encore.services import conditioning
from encore.services.context import ServiceContext
from encore.store import Clip, ClipInput, ClipKind, ClipStatus, Delivery, RaterReputation, Rating
from encore.taste.groups import TasteGroups

logger = logging.getLogger(__name__)


def _song_keys(session: Session, clip_ids: Iterable[int]) -> dict[int, list[int]]:
    ids = sorted(set(clip_ids))
    songs: dict[int, list[int]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        for cid, sid in session.execute(
            sa.select(ClipInput.clip_id, ClipInput.song_id).where(ClipInput.clip_id.in_(ids[start:start + 500]))
        ):
            songs[int(cid)].append(int(sid))
    return songs


def _key(songs: list[int]) -> str:
    return "+".join(str(s) for s in sorted(songs))


def _usable(kind: Any, status: Any, mel_key: str | None) -> bool:
    return kind is ClipKind.GENERATED and status is ClipStatus.READY and bool(mel_key)


def preference_rows(session: Session) -> tuple[list[rules.RatedClip], list[rules.UnratedCandidate]]:
    """Every counted rating, and every unrated, unserved best-of-n candidate with a prediction."""
    rows = session.execute(
        sa.select(Rating.listener_id, Rating.clip_id, Rating.half_stars, Delivery.request_id,
                  Clip.request_id, Clip.predicted_stars, Clip.kind, Clip.status, Clip.mel_key,
                  RaterReputation.weight, RaterReputation.flagged)
        .join(Delivery, Delivery.id == Rating.delivery_id)
        .join(Clip, Clip.id == Rating.clip_id)
        .outerjoin(RaterReputation, RaterReputation.user_id == Rating.listener_id)
        .where(Rating.counted.is_(True))
        .order_by(Rating.id)
    ).all()
    candidates = session.execute(
        sa.select(Clip.id, Clip.request_id, Clip.predicted_stars)
        .where(Clip.served.is_(False), Clip.request_id.is_not(None), Clip.predicted_stars.is_not(None),
               Clip.kind == ClipKind.GENERATED, Clip.status == ClipStatus.READY, Clip.mel_key.is_not(None),
               ~sa.exists().where(Rating.clip_id == Clip.id))
        .order_by(Clip.id)
    ).all()
    songs = _song_keys(session, [r[1] for r in rows] + [c[0] for c in candidates])
    rated = [
        rules.RatedClip(
            listener_id=int(listener), clip_id=int(cid), stars=half / 2, song_key=_key(songs.get(int(cid), [])),
            weight=1.0 if weight is None else float(weight), flagged=bool(flagged),
            usable=_usable(kind, status, mel_key),
            # the requesting listener's rating of the served candidate (the taste prediction was for them)
            request_id=clip_request if clip_request is not None and clip_request == delivery_request else None,
            predicted_stars=None if predicted is None else float(predicted),
        )
        for listener, cid, half, delivery_request, clip_request, predicted, kind, status, mel_key, weight, flagged
        in rows
    ]
    unrated = [rules.UnratedCandidate(int(cid), str(req), float(pred), _key(songs.get(int(cid), [])))
               for cid, req, pred in candidates]
    return rated, unrated


def build_examples(ctx: ServiceContext, method: str, *, taste_share: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The examples of a ``dpo`` run (pairs) or a ``kto`` run (labels), as stored on the run,
    and the counts.

    Raises
    ------
    InvalidInput
        There is nothing to learn from (no pair / no label).
    """
    with ctx.reading() as session:
        rated, unrated = preference_rows(session)
    rule_set = rules.PreferenceRules(taste_share=float(taste_share))
    pairs = rules.preference_pairs(rated, unrated, rule_set) if method == "dpo" else []
    labels = rules.preference_labels(rated, rule_set) if method == "kto" else []
    stats: dict[str, Any] = rules.summarize(pairs, labels)
    if method == "dpo" and not pairs:
        raise InvalidInput(
            "no preference pairs: a pair needs one listener's different ratings of two clips made "
            f"from the same songs ({len(rated)} counted ratings so far)")
    if method == "kto" and not labels:
        raise InvalidInput(
            "no liked or disliked clips: a label needs a listener's rating above or below its own "
            f"mean ({len(rated)} counted ratings so far)")
    examples = [p.to_dict() for p in pairs] if method == "dpo" else [lab.to_dict() for lab in labels]
    logger.info("%s examples: %s", method, stats)
    return examples, stats


def example_clip_ids(method: str, examples: list[dict[str, Any]]) -> list[int]:
    if method == "dpo":
        return sorted({int(e[k]) for e in examples for k in ("winner", "loser")})
    return sorted({int(e["clip_id"]) for e in examples})


def full_range_share(ctx: ServiceContext, clip_ids: list[int]) -> float:
    """Share of the clips made from noise or merged (their sampling visits every timestep)."""
    if not clip_ids:
        return 0.0
    with ctx.reading() as session:
        strengths = dict(session.execute(sa.select(Clip.id, Clip.strength).where(Clip.id.in_(clip_ids))).all())
        songs = _song_keys(session, clip_ids)
    full = sum(1 for cid in clip_ids if len(songs.get(cid, [])) != 1 or strengths.get(cid) is None
               or float(strengths[cid]) >= 0.999)
    return round(full / len(clip_ids), 4)


def load_mel_images(ctx: ServiceContext, clip_ids: list[int]) -> dict[int, np.ndarray]:
    """Clip id → mel image ``(H, W)`` uint8; clips deleted since the run started are left out."""
    with ctx.reading() as session:
        keys = dict(session.execute(sa.select(Clip.id, Clip.mel_key).where(Clip.id.in_(clip_ids))).all())
    images = {}
    for cid in clip_ids:
        key = keys.get(cid)
        if not key:
            logger.warning("clip %s was deleted (or has no mel image) since the run started; its examples are skipped", cid)
            continue
        try:
            image = np.load(io.BytesIO(ctx.blobs.get(key)), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"clip {cid}: cannot read its mel image {key!r}: {exc}") from exc
        if image.ndim != 2:
            raise InvalidInput(f"clip {cid}: mel image has shape {image.shape}, expected (H, W)")
        images[cid] = image
    return images


def train(ctx: ServiceContext, parent_model: Any, training_set: list[dict[str, Any]], settings: dict[str, Any], *,
          replay: Any, replay_heldout: Any, out_dir: Path, model_dir: Path, name: str, parent_name: str,
          record: dict[str, Any], progress: Callable[[float, str | None], None]) -> Any:
    """The ``dpo`` / ``kto`` training of a run: :func:`encore.diffusion.preference.preference_finetune`."""
    from encore.diffusion.finetune import FinetuneConfig  # deferred: torch (web start-up)
    from encore.diffusion.preference import PreferenceConfig, preference_finetune

    method = str(settings["method"])
    cfg = FinetuneConfig.from_dict(settings)
    pref = PreferenceConfig.from_dict({**settings, "full_range_share": float(settings.get("full_range_share") or 0.0)})
    images = load_mel_images(ctx, example_clip_ids(method, training_set))
    if method == "dpo":
        kept = [e for e in training_set if int(e["winner"]) in images and int(e["loser"]) in images]
        kwargs: dict[str, Any] = {"pairs": [(int(e["winner"]), int(e["loser"]), float(e["weight"])) for e in kept]}
    else:
        kept = [e for e in training_set if int(e["clip_id"]) in images]
        kwargs = {"labels": [(int(e["clip_id"]), bool(e["desirable"]), float(e["weight"])) for e in kept]}
    cond = conditioning.training_conditioning(settings, kept)  # None unless --conditioned
    result = preference_finetune(parent_model, images, cfg=cfg, pref=pref, out_dir=out_dir, replay=replay,
                                 replay_heldout=replay_heldout, model_dir=model_dir, name=name,
                                 parent_name=parent_name, record=record, resume=True, progress=progress,
                                 conditioning=cond, **kwargs)
    if cond is not None:  # the groups the version's numbers refer to, in its folder (serving reads them)
        (Path(model_dir) / conditioning.GROUPS_FILE).write_text(
            TasteGroups.from_dict(settings["taste_groups"]).to_json())
    return result
