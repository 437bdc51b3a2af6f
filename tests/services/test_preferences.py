"""Preference data from real database rows (encore.services.preferences) and preference
fine-tunes end to end: `encore finetune --method dpo`, the kto job, the run's settings."""

from __future__ import annotations

import io

import numpy as np
import pytest

from encore import cli
from encore.errors import InvalidInput
from encore.services import finetune, preferences, versions
from encore.services.context import ServiceContext
from encore.store import (
    Clip,
    ClipInput,
    ClipKind,
    ClipStatus,
    Delivery,
    DispatchBranch,
    RaterReputation,
    Rating,
    Song,
    SongStatus,
    TrainingRun,
    utcnow,
)


def _mel(ctx: ServiceContext, seed: int) -> str:
    image = np.random.default_rng(seed).integers(0, 256, size=(16, 44)).astype(np.uint8)
    buf = io.BytesIO()
    np.save(buf, image)
    key = ctx.blobs.new_key("clips", ".npy")
    ctx.blobs.put(key, buf.getvalue())
    return key


class Platform:
    """Rows as the platform writes them: songs, clips with inputs and mel images, deliveries,
    ratings, rater reputations, best-of-n candidates with taste predictions."""

    def __init__(self, ctx: ServiceContext, owner_id: int) -> None:
        self.ctx, self.owner_id = ctx, owner_id
        self.v0 = versions.ensure_base_version(ctx)
        self.n = 0

    def song(self, title: str) -> int:
        with self.ctx.session() as s:
            song = Song(owner_id=self.owner_id, title=title, blob_key=f"songs/{title}", duration_seconds=3.0,
                        sample_rate=22050, checksum_sha256=title.encode().hex().ljust(64, "0"),
                        status=SongStatus.READY)
            s.add(song)
            s.flush()
            return song.id

    def clip(self, song_id: int, *, request_id: str | None = None, served: bool = True,
             predicted: float | None = None, strength: float | None = 0.7) -> int:
        self.n += 1
        with self.ctx.session() as s:
            clip = Clip(kind=ClipKind.GENERATED, status=ClipStatus.READY, model_version_id=self.v0.id,
                        seed=self.n, steps=3, strength=strength, eta=0.0, seconds=1.0,
                        mel_key=_mel(self.ctx, self.n), request_id=request_id, served=served,
                        predicted_stars=predicted, ready_at=utcnow())
            clip.inputs = [ClipInput(position=0, song_id=song_id, weight=1.0)]
            s.add(clip)
            s.flush()
            return clip.id

    def rate(self, listener_id: int, clip_id: int, stars: float, *, request_id: str | None = None) -> None:
        with self.ctx.session() as s:
            song_ids = [i.song_id for i in s.get(Clip, clip_id).inputs]
            d = Delivery(clip_id=clip_id, listener_id=listener_id, branch=DispatchBranch.GENERATE,
                         input_song_ids=song_ids, **({"request_id": request_id} if request_id else {}))
            s.add(d)
            s.flush()
            s.add(Rating(delivery=d, half_stars=int(stars * 2), listened_fraction=1.0, counted=True))

    def reputation(self, listener_id: int, *, weight: float, flagged: bool = False) -> None:
        with self.ctx.session() as s:
            s.add(RaterReputation(user_id=listener_id, weight=weight, flagged=flagged))


@pytest.fixture
def platform(ctx, make_listener):
    """Three listeners (L1 weight 0.8; L2 rates half a star higher than L1; L3 flagged) on songs A
    and B, and one best-of-4 request of L1 with three unrated candidates."""
    l1, l2, l3 = (make_listener(n) for n in ("one", "two", "three"))
    p = Platform(ctx, l1.id)
    song_a, song_b = p.song("A"), p.song("B")
    a1, a2, a3, b1 = p.clip(song_a), p.clip(song_a), p.clip(song_a), p.clip(song_b)
    served = p.clip(song_a, request_id="req-1", served=True, predicted=3.5)
    c_up = p.clip(song_a, request_id="req-1", served=False, predicted=4.2)
    c_down = p.clip(song_a, request_id="req-1", served=False, predicted=2.0)
    c_close = p.clip(song_a, request_id="req-1", served=False, predicted=3.6)  # within the margin
    for clip, stars in ((a1, 4.5), (a2, 2.0), (a3, 4.5), (b1, 1.0)):
        p.rate(l1.id, clip, stars)
    p.rate(l1.id, served, 4.0, request_id="req-1")
    for clip, stars in ((a1, 5.0), (a2, 2.5), (b1, 4.0)):
        p.rate(l2.id, clip, stars)
    for clip, stars in ((a1, 1.0), (a2, 5.0)):
        p.rate(l3.id, clip, stars)
    p.reputation(l1.id, weight=0.8)
    p.reputation(l3.id, weight=0.9, flagged=True)
    return {"l1": l1.id, "l2": l2.id, "l3": l3.id, "A": song_a, "B": song_b, "a1": a1, "a2": a2, "a3": a3,
            "b1": b1, "served": served, "c_up": c_up, "c_down": c_down, "c_close": c_close}


def test_pairs_from_database_rows(ctx, platform) -> None:
    p = platform
    examples, counts = preferences.build_examples(ctx, "dpo", taste_share=0.3)
    rated = [e for e in examples if e["source"] == "rating"]
    taste = [e for e in examples if e["source"] == "taste"]
    # same listener, same song: L1's four song-A clips give 5 pairs (a1 and a3 tie), L2's one
    assert sorted((e["listener_id"], e["winner"], e["loser"]) for e in rated) == sorted([
        (p["l1"], p["a1"], p["a2"]), (p["l1"], p["a3"], p["a2"]), (p["l1"], p["a1"], p["served"]),
        (p["l1"], p["served"], p["a2"]), (p["l1"], p["a3"], p["served"]), (p["l2"], p["a1"], p["a2"])])
    assert {e["song_key"] for e in examples} == {str(p["A"])}  # b1 (song B) is in no pair
    # L2 rates half a star higher than L1: the bias cancels, the same pair and margin result
    a1_a2 = {e["listener_id"]: e for e in rated if (e["winner"], e["loser"]) == (p["a1"], p["a2"])}
    assert set(a1_a2) == {p["l1"], p["l2"]} and a1_a2[p["l1"]]["margin"] == a1_a2[p["l2"]]["margin"] == 2.5
    assert a1_a2[p["l1"]]["weight"] == 0.8 and a1_a2[p["l2"]]["weight"] == 1.0  # rater weights
    assert all(e["listener_id"] != p["l3"] for e in examples)  # the flagged rater's pair is out
    # taste-ranked: the unrated candidates against the rated served one, by predicted stars
    assert sorted((e["winner"], e["loser"]) for e in taste) == sorted([(p["c_up"], p["served"]),
                                                                      (p["served"], p["c_down"])])
    assert counts["taste_pairs"] == 2 and counts["taste_share"] <= 0.3
    # a lower cap keeps the most confident taste pair only: 1 of 7 pairs
    capped, counts = preferences.build_examples(ctx, "dpo", taste_share=0.2)
    assert [(e["winner"], e["loser"]) for e in capped if e["source"] == "taste"] == [(p["served"], p["c_down"])]
    assert counts["taste_share"] <= 0.2
    none, _ = preferences.build_examples(ctx, "dpo", taste_share=0.0)
    assert all(e["source"] == "rating" for e in none)


def test_labels_relative_to_each_listeners_mean(ctx, platform) -> None:
    p = platform
    examples, counts = preferences.build_examples(ctx, "kto", taste_share=0.3)
    got = {(e["listener_id"], e["clip_id"]): e["desirable"] for e in examples}
    # L1: mean 3.2 over five ratings (b1's 1 star is low for L1); L2: mean 3.83, so its 4 stars
    # for b1 are high for L2; L3 is flagged
    assert got == {(p["l1"], p["a1"]): True, (p["l1"], p["a3"]): True, (p["l1"], p["served"]): True,
                   (p["l1"], p["a2"]): False, (p["l1"], p["b1"]): False,
                   (p["l2"], p["a1"]): True, (p["l2"], p["a2"]): False, (p["l2"], p["b1"]): True}
    assert counts["desirable"] == 5 and counts["undesirable"] == 3


def test_no_pairs_is_refused_with_the_reason(ctx, make_listener) -> None:
    versions.ensure_base_version(ctx)
    with pytest.raises(InvalidInput, match="no preference pairs"):
        preferences.build_examples(ctx, "dpo", taste_share=0.3)


def test_a_kto_job_publishes_a_version_with_the_method_recorded(ctx, platform) -> None:
    v0 = versions.ensure_base_version(ctx)
    run = finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False,
                                  settings={"method": "kto", "steps": 3, "batch_size": 4, "eval_every": 3,
                                            "eval_crops": 4, "parent_replay_clips": 2, "eval_steps": 2})
    assert run.settings["method"] == "kto" and run.settings["preference_data"]["labels"] == 8
    assert run.settings["full_range_share"] == 0.0  # every clip is a variation (strength 0.7)
    assert run.settings["lr"] == ctx.settings.finetune_preference_lr  # the preference methods' default
    finetune.run_finetune(ctx, run.id)
    view = finetune.training_status(ctx, run.id)
    assert view.status == "done" and view.version == "v1"
    v1 = versions.version_by_name(ctx, "v1")
    assert v1.metrics["method"] == "kto" and v1.metrics["finetune"]["method"] == "kto"
    assert v1.metrics["finetune"]["train_kto_loss"]["parent"] == pytest.approx(0.5, abs=1e-6)
    assert "(kto)" in v1.notes and "labelled clips" in v1.notes
    with pytest.raises(InvalidInput, match="method"):
        finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False, settings={"method": "ppo"})


FAST = {"steps": 3, "batch_size": 4, "eval_every": 3, "eval_crops": 4, "parent_replay_clips": 2, "eval_steps": 2}


def test_the_default_method_falls_back_to_paper_when_pairs_are_few(ctx, platform, monkeypatch) -> None:
    from .finetune_helpers import add_dataset_clips

    v0 = versions.ensure_base_version(ctx)
    n_pairs = len(preferences.build_examples(ctx, "dpo", taste_share=0.3)[0])
    assert ctx.settings.finetune_method == "dpo" and 0 < n_pairs < ctx.settings.finetune_min_preference_examples
    # too few pairs and nothing curated: refused, and the message says both
    with pytest.raises(InvalidInput, match=rf"curated dataset is empty.*only {n_pairs} preference pairs"):
        finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False, settings=FAST)
    # asked for by name, dpo runs on the pairs there are
    asked = finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False, settings={**FAST, "method": "dpo"})
    assert asked.settings["method"] == "dpo" and "fallback" not in asked.settings
    assert len(asked.training_set) == n_pairs
    finetune.abandon_run(ctx, asked.id, "test")
    # with curated clips, the default run is the paper method's, and says why
    add_dataset_clips(ctx, [0.9, 0.8], [0.9, 0.8])
    run = finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False, settings=FAST)
    assert run.settings["method"] == "paper" and run.settings["method_requested"] == "dpo"
    assert run.settings["fallback"] == (f"dpo: only {n_pairs} preference pairs "
                                        f"(fewer than {ctx.settings.finetune_min_preference_examples})")
    assert run.settings["lr"] == ctx.settings.finetune_lr  # the paper method's own default
    assert {"clip_id", "confidence"} <= set(run.training_set[0])
    finetune.run_finetune(ctx, run.id)
    v1 = versions.version_by_name(ctx, "v1")
    assert v1.metrics["method"] == "paper" and v1.metrics["fallback"] == run.settings["fallback"]
    assert "instead of dpo: only" in v1.notes
    # enough pairs: the default method is dpo itself
    monkeypatch.setattr(ctx.settings, "finetune_min_preference_examples", n_pairs)
    again = finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False, settings=FAST)
    assert again.settings["method"] == "dpo" and "fallback" not in again.settings


def test_encore_finetune_method_dpo_end_to_end(installation, capsys) -> None:
    from encore.services import accounts

    ctx = installation
    listeners = [accounts.create_user(ctx, email=f"l{i}@example.org", password="listener-pass").id
                 for i in range(2)]
    p = Platform(ctx, listeners[0])
    song = p.song("A")
    clips = [p.clip(song) for _ in range(3)]
    for listener, stars in zip(listeners, ([4.5, 2.0, 3.0], [5.0, 1.5, 1.5]), strict=True):
        for clip, s in zip(clips, stars, strict=True):
            p.rate(listener, clip, s)
    assert cli.main(["finetune", "--wait", "--method", "dpo", "--beta", "500", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning run 1 (dpo): v0 on 5 preference pairs" in out
    assert "run 1: done (100%) — v0 → v1" in out
    assert "train_dpo_loss" in out and "train_margin" in out
    with ctx.reading() as s:
        run = s.get(TrainingRun, 1)
        assert run.settings["method"] == "dpo" and run.settings["dpo_beta"] == 500.0
        assert run.settings["preference_data"]["rated_pairs"] == 5
    v1 = versions.version_by_name(ctx, "v1")
    assert v1.metrics["finetune"]["method"] == "dpo" and v1.metrics["finetune"]["beta"] == 500.0
    assert v1.status.value == "draft"
