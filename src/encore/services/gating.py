"""Gating a new version before it may be activated (docs/finetune.md, "Gating").

An offline **panel** — ``Settings.gate_panel_songs`` input songs × ``gate_panel_seeds`` seeds,
chosen deterministically from the platform's analysed songs (round-robin over the taste
groups' members' songs, lowest id first, then any song) — is varied by the parent and by the
child with the same seeds and the platform's serving sampler, steps, clip length and default
strength. A version conditioned on taste groups renders the panel for each group with the
label that group's listeners are served with. Every panel clip is scored for every listener
of each taste group (a conditioned child's own groups, else the newest stored ones) by a
**gating taste model**, and the child passes when, for every group:

- the mean paired difference (child − parent) of the group's mean predicted stars over the
  panel items is above 0, and the lower end of its 95 % paired bootstrap interval (over panel
  items, seeded) is above ``−gate_rating_margin``;

and overall:

- the panel's diversity (mean pairwise distance between the clips one song gives with
  different seeds, in the gating model's standardised descriptors) is within
  ``gate_diversity_tolerance`` (10 %) of the parent's;
- where the fine-tune measured the weight-free quality metrics (``encore eval`` against the
  parent, ``metrics["eval"]`` / ``["parent_eval"]``), each task's normalised score is no
  worse than the parent's by more than the evaluation's own noise (the distance between two
  real sets of the same size, in score units: ``FD_real / (FD_untrained − FD_real)``), and
  each task's diversity is within the same 10 %. Without a corpus the quality metrics are
  reported as not measured and do not fail the gate.

**Reward-hacking guard.** The taste snapshots that rank preference pairs and serve (and that
predicted the ``predicted_stars`` the DPO pairs were ordered by) are fitted on every counted
rating. The gating model is another fit: on every other rating of each listener in time order
(half the data, each listener's likes and dislikes kept), so its errors are not the ones the
child was trained to exploit. The
similarity of the panel clips to their input song (S) and their diversity are printed for
parent and child on every verdict.

The verdict is stored in the child's ``metrics["gate"]``; a failed child stays a draft with
the reasons appended to its ``notes``, and :func:`encore.services.versions.activate_version`
refuses it unless forced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from encore import taste
from encore.audio.descriptors import descriptor_vector
from encore.errors import Conflict, InvalidInput, NotFound
from encore.services import taste as taste_service
from encore.services.context import Progress, ServiceContext, no_progress
from encore.services.similarity import representation_of, similarity_model
from encore.store import ModelVersion, Song, SongStatus

logger = logging.getLogger(__name__)

#: Seed of the bootstrap.
GATE_SPLIT_SEED = 1
#: First seed of the panel's generations.
PANEL_SEED_BASE = 7000
BOOTSTRAP = 2000


# --- the gating taste model -----------------------------------------------------------------


def gating_taste_model(ctx: ServiceContext) -> tuple[taste.TasteModel, dict[str, Any]]:
    """The taste model that gates: fitted on every other counted rating of each listener in
    time order (the 1st, 3rd, …), not the serving snapshots' fit on all of them.

    Raises
    ------
    Conflict
        No usable rating to fit on.
    """
    with ctx.reading() as session:
        data = taste_service.taste_data(session)
    r = data.ratings
    keep = np.zeros(len(r), dtype=bool)
    for u in np.unique(r.listener_ids):
        rows = np.flatnonzero(r.listener_ids == u)
        keep[rows[np.argsort(r.order[rows], kind="stable")][::2]] = True
    usable = keep & (r.weights > 0) & np.isin(r.clip_ids, list(data.clips))
    if not usable.any():
        raise Conflict("no counted rating with analysed audio: there is no taste model to gate with")
    model = taste.TasteModel.fit(r.subset(keep), data.clips, data.profiles)
    info = {"fit": "every other rating of each listener in time order (1st, 3rd, ...)",
            "n_ratings": model.n_ratings, "n_listeners": len(model.listeners),
            "of_ratings": int(np.sum((r.weights > 0) & np.isin(r.clip_ids, list(data.clips))))}
    return model, info


def _groups(ctx: ServiceContext, model: taste.TasteModel,
            child_groups: taste.TasteGroups | None) -> tuple[list[list[int]], str]:
    """Listeners of each taste group: a conditioned child's own groups, else the newest
    stored groups, else one group of every listener the gating model knows."""
    if child_groups is not None:
        members = [child_groups.members(g) for g in range(child_groups.k)]
        return [m for m in members if m], f"the child's own taste groups (k = {child_groups.k})"
    latest = taste_service.latest_groups(ctx)
    if latest is None:
        return [sorted(model.listeners)], "one group (no taste groups stored yet)"
    snapshot_id, groups = latest
    members = [groups.members(g) for g in range(groups.k)]
    return [m for m in members if m], f"taste groups of snapshot {snapshot_id} (k = {groups.k})"


def panel_songs(ctx: ServiceContext, groups: list[list[int]], n: int) -> list[int]:
    """``n`` analysed songs, round-robin over the groups' members' songs (by id), then any."""
    with ctx.reading() as session:
        rows = session.execute(
            sa.select(Song.id, Song.owner_id).where(
                Song.status == SongStatus.READY, Song.representation.is_not(None),
                Song.descriptors.is_not(None)).order_by(Song.id)
        ).all()
    by_owner: dict[int, list[int]] = {}
    for sid, owner in rows:
        by_owner.setdefault(int(owner), []).append(int(sid))
    queues = [sorted(s for u in members for s in by_owner.get(u, [])) for members in groups]
    chosen: list[int] = []
    while len(chosen) < n and any(queues):
        for q in queues:
            while q and q[0] in chosen:
                q.pop(0)
            if q and len(chosen) < n:
                chosen.append(q.pop(0))
    for sid, _ in rows:
        if len(chosen) >= n:
            break
        if int(sid) not in chosen:
            chosen.append(int(sid))
    return chosen


# --- the panel ------------------------------------------------------------------------------


def _labels(ctx: ServiceContext, engine: Any, groups: list[list[int]]) -> list[int | None]:
    """The taste-group label ``engine``'s version samples each gate group with, as it serves
    (:func:`encore.services.conditioning.serving_group`): the label most of the group's
    listeners get (ties: the smaller); None for an unconditioned version."""
    from collections import Counter

    from encore.services.conditioning import serving_group

    out: list[int | None] = []
    for members in groups:
        votes = Counter(serving_group(ctx, engine.model, u) for u in members)
        out.append(min(votes, key=lambda g: (-votes[g], -1 if g is None else g)) if votes else None)
    return out


def _render_panel(ctx: ServiceContext, engine: Any, song_ids: list[int], seeds: list[int],
                  progress: Callable[[float], None]) -> list[dict[str, Any]]:
    """Variations of each panel song by ``engine`` (one batch per song): descriptors,
    embedding and S of each clip, in (song, seed) order."""
    from encore.audio.descriptors import audio_descriptors
    from encore.services.generation import decode_song

    sim = similarity_model(ctx)
    s = ctx.settings
    out = []
    with ctx.reading() as session:
        songs = {sid: session.get(Song, sid) for sid in song_ids}
    for i, sid in enumerate(song_ids):
        song = songs[sid]
        if song is None:
            raise NotFound(f"song {sid} was deleted")
        audio_in = decode_song(ctx, song, engine.sample_rate)
        clips = engine.vary_batch(audio_in, strength=s.default_strength, seeds=seeds,
                                  steps=s.inference_steps, seconds=s.clip_seconds,
                                  sampler=s.sampler)
        query = representation_of(song.representation)
        for seed, clip in zip(seeds, clips, strict=True):
            audio = np.asarray(clip.audio, dtype=np.float32)
            rep = sim.represent_audio(audio, engine.sample_rate)
            out.append({"song": sid, "seed": seed,
                        "features": taste.ClipFeatures(
                            descriptor_vector(audio_descriptors(audio, engine.sample_rate)),
                            rep.embedding.astype(np.float64)),
                        "similarity": float(sim.similarity(rep, query))})
        progress((i + 1) / len(song_ids))
    return out


def _interval(diffs: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    idx = rng.integers(0, len(diffs), size=(BOOTSTRAP, len(diffs)))
    means = diffs[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _diversity(model: taste.TasteModel, panel: list[dict[str, Any]]) -> float:
    """Mean pairwise distance between one song's clips (different seeds), over songs, in the
    gating model's standardised descriptors."""
    by_song: dict[int, list[np.ndarray]] = {}
    for item in panel:
        by_song.setdefault(item["song"], []).append(model.scaler(item["features"].descriptors))
    dists = []
    for zs in by_song.values():
        z = np.stack(zs)
        for a in range(len(z)):
            for b in range(a + 1, len(z)):
                dists.append(float(np.linalg.norm(z[a] - z[b])))
    return float(np.mean(dists)) if dists else float("nan")


def _quality(metrics: dict[str, Any], tolerance: float) -> tuple[dict[str, Any], list[str]]:
    """The weight-free metrics of the fine-tune (child vs parent), judged against their noise."""
    child, parent = metrics.get("eval"), metrics.get("parent_eval")
    if not child or not parent:
        why = metrics.get("eval_skipped") or "no evaluation against the parent on record"
        return {"measured": False, "why": str(why)}, []
    rows_p = {r["name"]: r for r in parent.get("rows", [])}
    rows_c = {r["name"]: r for r in child.get("rows", [])}
    fd_real = float(rows_p.get("real B", {}).get("fd", 0.0))
    tasks: dict[str, Any] = {}
    reasons = []
    for task, old in parent.get("scores", {}).items():
        new = child.get("scores", {}).get(task)
        if new is None:
            continue
        fd_untrained = float(rows_p.get(f"{task} (untrained)", {}).get("fd", 0.0))
        noise = fd_real / (fd_untrained - fd_real) if fd_untrained > fd_real else 0.0
        div_p = rows_p.get(f"{task} (model)", {}).get("diversity")
        div_c = rows_c.get(f"{task} (model)", {}).get("diversity")
        ratio = float(div_c) / float(div_p) if div_p and div_c is not None else None
        tasks[task] = {"parent": old, "child": new, "delta": round(new - old, 4),
                       "noise": round(noise, 4), "diversity_ratio": None if ratio is None else round(ratio, 4)}
        if new - old > noise:
            reasons.append(f"quality: {task} score {new:.3f} vs parent {old:.3f} "
                           f"(worse by more than the evaluation's noise {noise:.3f})")
        if ratio is not None and abs(ratio - 1.0) > tolerance:
            reasons.append(f"quality: {task} diversity {ratio:.2f}× the parent's "
                           f"(allowed {1 - tolerance:.2f}–{1 + tolerance:.2f})")
    return {"measured": True, "tasks": tasks}, reasons


# --- the verdict ----------------------------------------------------------------------------


def gate_version(ctx: ServiceContext, version_id: int, progress: Progress = no_progress) -> dict[str, Any]:
    """Run the gate of a draft version against its parent; store and return the verdict
    (``metrics["gate"]``). A version that cannot be gated (no ratings, no song) gets a
    failed verdict with the reason.

    Raises
    ------
    NotFound
        The version does not exist.
    Conflict
        It has no parent (v0, imported versions) or is retired.
    """
    with ctx.reading() as session:
        child = session.get(ModelVersion, version_id)
        if child is None:
            raise NotFound(f"model version {version_id} does not exist")
        if child.parent_id is None:
            raise Conflict(f"{child.name} has no parent version to be gated against")
        if child.status.value == "retired":
            raise Conflict(f"{child.name} is retired; there is nothing to gate")
        parent = session.get(ModelVersion, child.parent_id)
        child_metrics = dict(child.metrics or {})
    assert parent is not None
    t0 = time.monotonic()
    try:
        verdict = _judge(ctx, child, parent, child_metrics, progress)
        verdict["seconds"] = round(time.monotonic() - t0, 1)
    except (Conflict, InvalidInput, NotFound) as exc:
        verdict = {"passed": False, "reasons": [f"could not be gated: {exc}"], "parent": parent.name}
    except Exception as exc:  # a broken panel must not publish an ungated version as gated
        logger.exception("gate of %s failed to run", child.name)
        verdict = {"passed": False, "parent": parent.name,
                   "reasons": [f"could not be gated: {type(exc).__name__}: {exc}"]}
    _store(ctx, version_id, verdict)
    logger.info("gate of %s against %s: %s", child.name, parent.name, summary(verdict))
    return verdict


def _judge(ctx: ServiceContext, child: ModelVersion, parent: ModelVersion,
           child_metrics: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from encore.services.conditioning import version_groups
    from encore.services.generation import diffusion_engine

    progress(0.02, "fitting the gating taste model")
    parent_engine, child_engine = diffusion_engine(ctx, parent), diffusion_engine(ctx, child)
    panel = prepare_panel(ctx, version_groups(ctx, child_engine.model))
    return judge(ctx, panel, parent_engine, child_engine, child_metrics, parent.name, progress)


@dataclass
class GatePanel:
    """What every child gated against one parent is judged with: the gating taste model, the
    taste groups, the panel's songs and seeds, and the parent's renderings (made once)."""

    model: taste.TasteModel
    model_info: dict[str, Any]
    groups: list[list[int]]
    groups_info: str
    song_ids: list[int]
    seeds: list[int]
    profiles: dict[int, taste.ListenerProfile]
    parent_renders: dict[int | None, list[dict[str, Any]]] = field(default_factory=dict)


def prepare_panel(ctx: ServiceContext, child_groups: taste.TasteGroups | None = None) -> GatePanel:
    """The gating taste model, groups (``child_groups`` for a conditioned child; else the newest
    stored ones), panel songs and seeds, from the platform's data now.

    Raises
    ------
    Conflict
        No counted rating to fit the gating model on, or no analysed song for the panel.
    """
    s = ctx.settings
    model, model_info = gating_taste_model(ctx)
    groups, groups_info = _groups(ctx, model, child_groups)
    song_ids = panel_songs(ctx, groups, s.gate_panel_songs)
    if not song_ids:
        raise Conflict("no analysed song for the panel")
    with ctx.reading() as session:
        profiles = taste_service.listener_profiles(session, [u for g in groups for u in g])
    return GatePanel(model, model_info, groups, groups_info, song_ids,
                     [PANEL_SEED_BASE + i for i in range(s.gate_panel_seeds)], profiles)


def judge(ctx: ServiceContext, panel: GatePanel, parent_engine: Any, child_engine: Any,
          child_metrics: dict[str, Any], parent_name: str, progress: Progress = no_progress) -> dict[str, Any]:
    """The verdict on a child engine against its parent's on ``panel`` (module docstring);
    ``child_metrics`` are the child's fine-tune metrics (its ``eval`` / ``parent_eval``)."""
    s = ctx.settings
    model, groups, song_ids, seeds = panel.model, panel.groups, panel.song_ids, panel.seeds
    engines = {"parent": parent_engine, "child": child_engine}
    # a conditioned version renders the panel once per label its groups are served with
    labels = {tag: _labels(ctx, engines[tag], groups) for tag in engines}
    renders = [(tag, label) for tag in engines for label in dict.fromkeys(labels[tag])
               if tag == "child" or label not in panel.parent_renders]
    rendered: dict[tuple[str, int | None], list[dict[str, Any]]] = {
        ("parent", label): items for label, items in panel.parent_renders.items()}
    for j, (tag, label) in enumerate(renders):
        rendered[tag, label] = _render_panel(
            ctx, engines[tag].for_group(label, s.guidance_scale), song_ids, seeds,
            lambda f, j=j, tag=tag: progress(0.05 + 0.9 * (j + f) / len(renders),  # type: ignore[misc]
                                             f"panel of {tag}"))
        if tag == "parent":
            panel.parent_renders[label] = rendered[tag, label]
    progress(0.95, "scoring the panel")
    profiles = panel.profiles
    rng = np.random.default_rng(GATE_SPLIT_SEED)
    reasons: list[str] = []
    group_rows = []
    for g, members in enumerate(groups):
        scores = {}
        for tag in ("parent", "child"):
            feats = [item["features"] for item in rendered[tag, labels[tag][g]]]
            preds = np.stack([model.predict(u, feats, profiles.get(u, taste.ListenerProfile(None, None)))[0]
                              for u in members])
            scores[tag] = preds.mean(axis=0)  # per panel item: the group's mean prediction
        diffs = scores["child"] - scores["parent"]
        lo, hi = _interval(diffs, rng)
        mean = float(diffs.mean())
        ok = mean > 0 and lo > -s.gate_rating_margin
        group_rows.append({"group": g, "listeners": len(members),
                           "labels": {"parent": labels["parent"][g], "child": labels["child"][g]},
                           "parent": round(float(scores["parent"].mean()), 4),
                           "child": round(float(scores["child"].mean()), 4),
                           "delta": round(mean, 4), "interval": [round(lo, 4), round(hi, 4)],
                           "passed": ok})
        if not ok:
            reasons.append(f"group {g} ({len(members)} listeners): predicted stars {mean:+.3f} "
                           f"[{lo:+.3f}, {hi:+.3f}] vs parent (needs > 0 and lower end > "
                           f"{-s.gate_rating_margin:+.2f})")
    div = {tag: float(np.mean([_diversity(model, items) for (t, _), items in rendered.items() if t == tag]))
           for tag in ("parent", "child")}
    div_ratio = div["child"] / div["parent"] if div["parent"] > 0 else float("nan")
    if np.isfinite(div_ratio) and abs(div_ratio - 1.0) > s.gate_diversity_tolerance:
        reasons.append(f"diversity {div_ratio:.2f}× the parent's (allowed "
                       f"{1 - s.gate_diversity_tolerance:.2f}–{1 + s.gate_diversity_tolerance:.2f})")
    quality, quality_reasons = _quality(child_metrics, s.gate_diversity_tolerance)
    reasons += quality_reasons
    sim = {tag: round(float(np.mean([i["similarity"] for (t, _), items in rendered.items() if t == tag
                                     for i in items])), 4)
           for tag in ("parent", "child")}
    return {
        "passed": not reasons, "reasons": reasons, "parent": parent_name,
        "panel": {"songs": song_ids, "seeds": seeds, "strength": s.default_strength,
                  "sampler": s.sampler, "steps": s.inference_steps, "seconds": s.clip_seconds},
        "taste_model": panel.model_info, "groups_from": panel.groups_info, "groups": group_rows,
        "similarity": sim,
        "diversity": {"parent": round(div["parent"], 4), "child": round(div["child"], 4),
                      "ratio": None if not np.isfinite(div_ratio) else round(div_ratio, 4)},
        "quality": quality,
    }


def _store(ctx: ServiceContext, version_id: int, verdict: dict[str, Any]) -> None:
    with ctx.session() as session:
        row = session.get(ModelVersion, version_id)
        if row is None:
            raise NotFound(f"model version {version_id} was deleted")
        row.metrics = {**(row.metrics or {}), "gate": verdict}
        notes = (row.notes or "").split("\ngate failed:")[0]
        row.notes = notes if verdict["passed"] else (
            f"{notes}\ngate failed: " + "; ".join(verdict["reasons"])).strip()


def summary(verdict: dict[str, Any] | None) -> str:
    """One line: passed / failed with the reasons, with similarity and diversity."""
    if not verdict:
        return "not gated"
    head = "gate passed" if verdict.get("passed") else "gate FAILED: " + "; ".join(verdict.get("reasons", []))
    extra = []
    if verdict.get("groups"):
        extra.append("Δ stars by group " + ", ".join(f"{g['delta']:+.3f}" for g in verdict["groups"]))
    if verdict.get("similarity"):
        extra.append(f"S to input {verdict['similarity']['parent']:.3f} → {verdict['similarity']['child']:.3f}")
    if verdict.get("diversity"):
        extra.append(f"diversity {verdict['diversity']['parent']:.3f} → {verdict['diversity']['child']:.3f}")
    return head + (f" ({'; '.join(extra)})" if extra else "")
