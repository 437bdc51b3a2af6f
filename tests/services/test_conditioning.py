"""Taste-conditioned versions through the services: the group a request is served with, the
settings of a conditioned fine-tune, and its training with the examples' groups (real database
rows, tiny seeded models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encore.diffusion.engine import Engine
from encore.diffusion.folder import load_model_folder, save_model_folder
from encore.diffusion.model import conditioned_denoiser
from encore.errors import InvalidInput
from encore.services import conditioning, finetune, music, preferences, songs, versions
from encore.store import Delivery
from encore.taste.features import N_DESCRIPTORS
from encore.taste.groups import TasteGroups
from tests.services.test_preferences import Platform


def _groups(assignments: dict[int, int]) -> TasteGroups:
    """Two groups; listeners not assigned are put in group 0 by their songs."""
    return TasteGroups(k=2, structured=True, assignments=dict(assignments),
                       sources={u: "ratings" for u in assignments}, bic={1: 0.0, 2: -1.0}, silhouette={2: 0.5},
                       song_mean=np.zeros(N_DESCRIPTORS), song_scale=np.ones(N_DESCRIPTORS),
                       song_coef=np.zeros((2, N_DESCRIPTORS)), song_intercept=np.array([1.0, 0.0]),
                       min_ratings=8, seed=0)


def _conditioned_version(ctx, tmp_path: Path, groups: TasteGroups | None) -> Path:
    base = load_model_folder(ctx.settings.base_model_dir, device="cpu")
    child = conditioned_denoiser(base.denoiser, 2)
    with torch.no_grad():  # as if trained: every group predicts something else
        child.unet.class_embedding.weight.normal_(generator=torch.Generator().manual_seed(0))
    folder = save_model_folder(tmp_path / "cond", child, base.mel_config, scheduler=base.scheduler, name="cond")
    if groups is not None:
        (folder / conditioning.GROUPS_FILE).write_text(groups.to_json())
    return folder


def test_the_requesting_listeners_group_from_ratings_songs_or_none(ctx, make_listener, song_bytes, tmp_path) -> None:
    rated, with_song, new = make_listener("rated"), make_listener("songs"), make_listener("new")
    songs.upload_song(ctx, owner=with_song, filename="one.wav", data=song_bytes(3))
    model = load_model_folder(_conditioned_version(ctx, tmp_path, _groups({rated.id: 1})), device="cpu")
    assert conditioning.serving_group(ctx, model, rated.id) == 1  # its fitted group
    assert conditioning.serving_group(ctx, model, with_song.id) == 0  # predicted from its songs
    assert conditioning.serving_group(ctx, model, new.id) is None  # nothing to go on
    assert conditioning.serving_group(ctx, model, None) is None
    v0 = load_model_folder(ctx.settings.base_model_dir, device="cpu")
    assert conditioning.serving_group(ctx, v0, rated.id) is None  # an unconditioned version
    bare = load_model_folder(_conditioned_version(ctx, tmp_path / "bare", None), device="cpu")
    assert conditioning.serving_group(ctx, bare, rated.id) is None  # no groups file: unconditioned


def test_generation_samples_a_conditioned_version_for_the_listeners_group(
    ctx, make_listener, song_bytes, tmp_path, monkeypatch
) -> None:
    ctx.settings.baseline_probability = 0.0
    ctx.settings.dispatch_review_share = 0.0
    ctx.settings.best_of_n = 1
    ctx.settings.guidance_scale = 2.0
    rated, new = make_listener("rated"), make_listener("new")
    folder = _conditioned_version(ctx, tmp_path, _groups({rated.id: 1}))
    v0 = versions.ensure_base_version(ctx)
    with ctx.session() as session:
        v1 = versions.register_version(session, folder=versions.store_folder(ctx, folder), parent_id=v0.id)
        v1_id = v1.id
    versions.activate_version(ctx, version_id=v1_id)
    versions.retire_version(ctx, version_id=v0.id)
    calls: list[tuple[int | None, float, int]] = []
    original = Engine.for_group

    def spy(self, group, scale=1.0):  # records what serving asked for; the real method runs
        out = original(self, group, scale)
        calls.append((group, scale, out.model.denoiser.num_groups))
        return out

    monkeypatch.setattr(Engine, "for_group", spy)
    for listener in (rated, new):
        song = songs.upload_song(ctx, owner=listener, filename="one.wav", data=song_bytes(5))
        delivery = music.request_music(ctx, listener=listener, song_ids=[song.id])
        with ctx.reading() as session:
            assert session.get(Delivery, delivery.id).clip.model_version_id == v1_id
    # the rated listener's fitted group; the new one's from its song (the classifier says 0)
    assert calls == [(1, 2.0, 2), (0, 2.0, 2)]


def test_conditioned_settings_are_checked(ctx, platform_rows) -> None:
    v0 = versions.ensure_base_version(ctx)
    with pytest.raises(InvalidInput, match="dpo or kto"):
        finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False,
                                settings={"method": "paper", "conditioned": True})
    with pytest.raises(InvalidInput, match="true or false"):
        finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False,
                                settings={"method": "dpo", "conditioned": "yes"})
    with pytest.raises(InvalidInput, match="dropout"):
        finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False,
                                settings={"method": "dpo", "conditioned": True, "group_dropout": 2.0})
    # no taste-model snapshot with groups yet
    with pytest.raises(InvalidInput, match="no taste-model snapshot"):
        finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False,
                                settings={"method": "dpo", "conditioned": True})


@pytest.fixture
def platform_rows(ctx, make_listener):
    """Two listeners who rate three clips of one song in opposite orders (pairs for both)."""
    l1, l2 = make_listener("one"), make_listener("two")
    p = Platform(ctx, l1.id)
    song = p.song("A")
    clips = [p.clip(song) for _ in range(3)]
    for listener, stars in ((l1, (4.5, 2.0, 3.0)), (l2, (1.0, 4.0, 5.0))):
        for clip, s in zip(clips, stars, strict=True):
            p.rate(listener.id, clip, s)
    return {"l1": l1.id, "l2": l2.id}


def test_a_conditioned_dpo_training_labels_each_pair_with_its_listeners_group(ctx, platform_rows, tmp_path) -> None:
    examples, _ = preferences.build_examples(ctx, "dpo", taste_share=0.0)
    groups = _groups({platform_rows["l1"]: 0, platform_rows["l2"]: 1})
    for e in examples:  # as conditioning.run_groups labels them when the run starts
        e["group"] = groups.group_of(e["listener_id"])
    settings = {**finetune.resolve_settings(ctx, {"method": "dpo", "steps": 2, "batch_size": 4, "eval_every": 2,
                                                  "eval_crops": 4, "conditioned": True}),
                "taste_groups": groups.to_dict(), "taste_groups_record": {"taste_model_id": 9}}
    parent = load_model_folder(ctx.settings.base_model_dir, device="cpu")
    result = preferences.train(ctx, parent, examples, settings, replay=None, replay_heldout=None,
                               out_dir=tmp_path / "work", model_dir=tmp_path / "model", name="v1",
                               parent_name="v0", record={}, progress=lambda f, m=None: None)
    child = load_model_folder(tmp_path / "model", device="cpu")
    assert child.denoiser.num_groups == 2
    assert child.meta["taste_groups"]["taste_model_id"] == 9
    assert child.meta["taste_groups"]["dropout"] == ctx.settings.finetune_group_dropout
    by_listener = {e["listener_id"]: e["group"] for e in examples}
    assert sorted(set(by_listener.values())) == [0, 1]
    assert [e["group"] for e in child.meta["training"]["training_set"]] == [e["group"] for e in examples]
    assert result.summary()["conditioning"]["examples_per_group"][:2] == [
        sum(e["group"] == g for e in examples) for g in (0, 1)]
    # serving reads the groups the version was trained on from its folder
    assert conditioning.version_groups(ctx, child).assignments == groups.assignments


def test_a_conditioned_dpo_job_end_to_end(ctx, make_listener, song_bytes) -> None:
    """Six listeners rate two clips of their song each; the snapshot's taste groups label their
    pairs; the job publishes a conditioned child that serves each rater its group."""
    from encore.services import taste
    from tests.services.test_taste_groups import six_raters

    ctx.settings.best_of_n = 1
    raters = six_raters(ctx, make_listener, song_bytes)
    row = taste.fit_snapshot(ctx, reason="manual", evaluate=False)
    groups = taste.load_groups(ctx, row)
    v0 = versions.ensure_base_version(ctx)
    run = finetune.start_finetune(ctx, parent_version_id=v0.id, enqueue=False,
                                  settings={"method": "dpo", "conditioned": True, "steps": 2, "batch_size": 4,
                                            "eval_every": 2, "eval_crops": 4, "parent_replay_clips": 2,
                                            "eval_steps": 2, "eval_clips": 0, "taste_pair_share": 0.0})
    assert run.settings["taste_groups_record"]["taste_model_id"] == row.id
    assert [e["group"] for e in run.training_set] == [groups.group_of(e["listener_id"]) for e in run.training_set]
    finetune.run_finetune(ctx, run.id)
    v1 = versions.version_by_name(ctx, "v1")
    cond = v1.metrics["finetune"]["conditioning"]
    assert cond["num_groups"] == groups.k and cond["taste_model_id"] == row.id
    model = load_model_folder(versions.local_folder(ctx, v1), device="cpu")
    assert model.denoiser.num_groups == groups.k
    for listener in raters:  # served its own group by the child, as the snapshot clustered it
        assert conditioning.serving_group(ctx, model, listener.id) == groups.group_of(listener.id)
