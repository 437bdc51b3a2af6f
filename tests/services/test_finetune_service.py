"""Fine-tuning as a job through the services, on a real SQLite database with immediate jobs
and tiny seeded models: the run, its published child version, atomic publishing, failures
that leave the parent serving, A/B weights and a worker that picks up a new version."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from encore.errors import Conflict, InvalidInput, NotFound
from encore.jobs import JobContext
from encore.services import finetune as ft
from encore.services import music, songs, versions
from encore.services.context import ServiceContext
from encore.store import (
    ClipStatus,
    Delivery,
    Job,
    JobStatus,
    ModelVersion,
    QueueName,
    TrainingRun,
    TrainingStatus,
    VersionStatus,
)

from .finetune_helpers import add_dataset_clips

FAST = {"steps": 6, "batch_size": 4, "eval_every": 3, "eval_crops": 4, "precision": "fp32",
        "warmup_steps": 0, "lr": 3e-3, "parent_replay_clips": 2, "eval_steps": 2}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def version_count(ctx: ServiceContext) -> int:
    with ctx.reading() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ModelVersion))


def test_start_refuses_an_empty_dataset_and_unknown_settings(ctx) -> None:
    v0 = versions.ensure_base_version(ctx)
    with pytest.raises(InvalidInput, match="curated dataset is empty"):
        ft.start_finetune(ctx, parent_version_id=v0.id)
    add_dataset_clips(ctx, [0.7], [0.0])
    with pytest.raises(InvalidInput, match="confidence 0"):
        ft.start_finetune(ctx, parent_version_id=v0.id)
    add_dataset_clips(ctx, [0.8], [0.9])
    with pytest.raises(InvalidInput, match=r"unknown fine-tuning settings \['stepz'\]"):
        ft.start_finetune(ctx, parent_version_id=v0.id, settings={"stepz": 3})
    with pytest.raises(InvalidInput, match="replay_fraction=2"):
        ft.start_finetune(ctx, parent_version_id=v0.id, settings={"replay_fraction": 2})
    with ctx.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(TrainingRun)) == 0


def test_a_missing_or_retired_parent_is_refused(ctx) -> None:
    from encore.services import comparison

    add_dataset_clips(ctx, [0.8], [0.9])
    v0 = versions.version_by_name(ctx, "v0")
    with pytest.raises(NotFound, match="model version 99 does not exist"):
        ft.start_finetune(ctx, parent_version_id=99)
    with pytest.raises(NotFound, match="model version 99 does not exist"):
        comparison.compare_methods(ctx, parent_version_id=99, methods="paper")
    with ctx.session() as session:
        session.get(ModelVersion, v0.id).status = VersionStatus.RETIRED
    with pytest.raises(Conflict, match="v0 is retired; fine-tune an active or draft version"):
        ft.start_finetune(ctx, parent_version_id=v0.id)
    with pytest.raises(Conflict, match="v0 is retired; compare methods on an active or draft"):
        comparison.compare_methods(ctx, parent_version_id=v0.id, methods="paper")
    assert version_count(ctx) == 1


def test_the_job_trains_and_publishes_a_draft_child_of_the_parent(ctx) -> None:
    scores = [0.9, 0.5, 0.8, 0.3, 0.7]
    ids = add_dataset_clips(ctx, scores, [0.9, 0.8, 0.7, 0.6, 0.5])
    v0 = versions.version_by_name(ctx, "v0")
    run = ft.start_finetune(ctx, parent_version_id=v0.id, settings=FAST, top_n=3)
    # immediate mode: the job ran on commit, on the training queue
    view = ft.training_status(ctx, run.id)
    assert view.status == "done" and view.progress == 1.0 and view.error is None
    assert view.parent == "v0" and view.version == "v1"
    with ctx.reading() as session:
        job = session.get(Job, run.job_id)
        assert job.status is JobStatus.DONE and job.queue == QueueName.TRAIN
        row = session.get(TrainingRun, run.id)
        child = session.get(ModelVersion, row.version_id)
    # the top 3 clips by R, with their confidences (too few clips to hold any out)
    assert [e["clip_id"] for e in row.training_set] == [ids[0], ids[2], ids[4]]
    assert [e["confidence"] for e in row.training_set] == [0.9, 0.7, 0.5]
    assert {e["role"] for e in row.training_set} == {"train"}
    assert row.settings["steps"] == 6 and row.settings["top_n"] == 3
    assert row.settings["replay_source"] == "2 generations of v0"  # no corpus installed
    assert [p["step"] for p in row.loss_curve if "train_clip_loss" in p] == [0, 3, 6]
    assert child.parent_id == v0.id and child.status is VersionStatus.DRAFT and child.ab_weight == 0
    losses = child.metrics["finetune"]["train_clip_loss"]
    assert losses["finetuned"] < losses["parent"]
    assert "ENCORE_CORPUS_DIR" in child.metrics["eval_skipped"]
    # published to the blob store; this host's copy sits in its model cache
    assert child.folder.startswith("blob:models/") and ft.model_dir(ctx, run.id).is_dir()
    folder = versions.local_folder(ctx, child)
    assert folder.parent == ctx.settings.resolved_model_cache_dir
    from encore.diffusion.folder import load_model_folder

    loaded = load_model_folder(folder, device="cpu")
    assert loaded.meta["parent"] == "v0" and loaded.meta["name"] == "v1"
    assert loaded.meta["metrics"]["finetune"] == child.metrics["finetune"]
    assert [e["clip_id"] for e in loaded.meta["training"]["training_set"]] == [ids[0], ids[2], ids[4]]
    # the child is a draft: v0 alone is still served
    with ctx.reading() as session:
        assert versions.active_weights(session) == {v0.id: 1.0}
    # a second run of the same parent may start now that the first is done
    again = ft.start_finetune(ctx, parent_version_id=v0.id, settings=FAST, top_n=3, enqueue=False)
    with pytest.raises(Conflict, match=f"run {again.id} of v0 is already queued"):
        ft.start_finetune(ctx, parent_version_id=v0.id, settings=FAST)


def test_publishing_is_atomic_when_the_save_crashes(ctx, monkeypatch) -> None:
    """The weights' write fails half way (the UNet written, the head not): no version row,
    no model folder, no temporary leftovers; the run says why."""
    import safetensors.torch

    add_dataset_clips(ctx, [0.9, 0.8], [1.0, 1.0])
    v0 = versions.ensure_base_version(ctx)
    real_save = safetensors.torch.save_file
    calls = []

    def save_file(tensors, filename, metadata=None):
        calls.append(str(filename))
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    run = ft.start_finetune(ctx, parent_version_id=v0.id, settings=FAST)
    assert len(calls) == 2  # the crash happened mid-save
    view = ft.training_status(ctx, run.id)
    assert view.status == "failed" and "No space left on device" in view.error
    assert view.version is None
    assert version_count(ctx) == 1
    models = ctx.settings.data_dir / "models"
    assert not ft.model_dir(ctx, run.id).exists()
    leftovers = sorted(p.name for p in models.iterdir()) if models.exists() else []
    assert leftovers == []
    with ctx.reading() as session:
        assert session.get(Job, run.job_id).status is JobStatus.FAILED


def test_a_failed_finetune_leaves_the_parent_serving(ctx, settings, make_listener, song_bytes,
                                                     monkeypatch) -> None:
    import encore.diffusion.finetune as diffusion_finetune

    add_dataset_clips(ctx, [0.9, 0.8], [1.0, 1.0])
    v0 = versions.ensure_base_version(ctx)

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(diffusion_finetune, "finetune", out_of_memory)
    run = ft.start_finetune(ctx, parent_version_id=v0.id, settings=FAST)
    view = ft.training_status(ctx, run.id)
    assert view.status == "failed"
    assert view.error == "RuntimeError: simulated out of memory"
    assert view.finished_at is not None and version_count(ctx) == 1
    with ctx.reading() as session:
        assert versions.active_weights(session) == {v0.id: 1.0}
    # requests are still dispatched to the parent (dispatch only: no queues, no generation)
    dispatch_only = ServiceContext.from_settings(settings, queues=False, seed=5)
    listener = make_listener()
    song = songs.upload_song(ctx, owner=listener, filename="a.wav", data=song_bytes(3))
    delivery = music.request_music(dispatch_only, listener=listener, song_ids=[song.id])
    with ctx.reading() as session:
        assert session.get(Delivery, delivery.id).clip.model_version_id == v0.id
    # the failure is not sticky: a new run may start
    monkeypatch.undo()
    again = ft.start_finetune(ctx, parent_version_id=v0.id, settings=FAST)
    assert ft.training_status(ctx, again.id).status == "done"


def _second_version(ctx: ServiceContext, tmp_path: Path) -> ModelVersion:
    """A draft v1: another seeded tiny model (so its clips differ from v0's)."""
    from encore.diffusion.folder import build_random_model, load_model_folder, save_model_folder

    base = load_model_folder(ctx.settings.base_model_dir, device="cpu")
    other = build_random_model(base.denoiser.config, base.mel_config, seed=99)
    folder = save_model_folder(tmp_path / "other", other.denoiser, base.mel_config, name="other")
    versions.ensure_base_version(ctx)
    return versions.publish_version(ctx, folder=folder, parent_id=None, notes="test")


def test_ab_weights_set_the_version_mix_within_a_binomial_bound(settings, tmp_path, make_listener,
                                                                  song_bytes, ctx) -> None:
    v1 = _second_version(ctx, tmp_path)
    v0 = versions.version_by_name(ctx, "v0")
    listener = make_listener()
    song = songs.upload_song(ctx, owner=listener, filename="a.wav", data=song_bytes(4))
    # No paired deliveries (a pair's second half goes to the other version whatever the
    # weights) and no pending cap (nothing renders here): the A/B draw alone.
    settings.pair_share = 0.0
    settings.max_pending_generations = 10_000
    settings.limit_music_account = "10000/3600"
    dispatch_only = ServiceContext.from_settings(settings, queues=False, seed=11)
    n = 160
    for w0, w1 in ((1.0, 3.0), (1.0, 1.0)):
        versions.activate_version(ctx, version_id=v1.id, ab_weight=w1)
        versions.set_ab_weight(ctx, version_id=v0.id, ab_weight=w0)
        served = []
        for _ in range(n):
            d = music.request_music(dispatch_only, listener=listener, song_ids=[song.id])
            with ctx.reading() as session:
                served.append(session.get(Delivery, d.id).clip.model_version_id)
        p = w1 / (w0 + w1)
        count = sum(v == v1.id for v in served)
        sd = np.sqrt(n * p * (1 - p))
        assert abs(count - n * p) <= 4 * sd, (w0, w1, count)
        assert set(served) == {v0.id, v1.id}


def test_a_running_worker_serves_a_newly_activated_version(ctx, tmp_path, make_listener,
                                                           song_bytes) -> None:
    """Same process, same worker context: after activation the next request is generated by
    the new version (its engine is loaded on demand, keyed by version id), no restart."""
    from encore.jobs import tasks as job_handlers

    listener = make_listener()
    song = songs.upload_song(ctx, owner=listener, filename="a.wav", data=song_bytes(5))
    first = music.request_music(ctx, listener=listener, song_ids=[song.id])
    v1 = _second_version(ctx, tmp_path)
    v0 = versions.version_by_name(ctx, "v0")
    versions.activate_version(ctx, version_id=v1.id, ab_weight=1.0)
    versions.set_ab_weight(ctx, version_id=v0.id, ab_weight=0.0)
    second = music.request_music(ctx, listener=listener, song_ids=[song.id])
    with ctx.reading() as session:
        clip1 = session.get(Delivery, first.id).clip
        clip2 = session.get(Delivery, second.id).clip
        assert clip1.model_version_id == v0.id and clip1.status is ClipStatus.READY
        assert clip2.model_version_id == v1.id and clip2.status is ClipStatus.READY
    # the worker's own (long-lived) service context loaded both engines, keyed by version id
    worker = job_handlers.service_context(
        JobContext(job_id=0, kind="probe", payload={}, attempt=1, worker_id="test", bind=ctx.engine,
                   settings=ctx.settings))
    assert worker is not ctx
    engines = {key[1]: worker.cached(key, lambda: None) for key in list(worker._models)
               if isinstance(key, tuple) and key[0] == "engine"}
    assert set(engines) == {v0.id, v1.id}
    assert Path(engines[v1.id].model.path).resolve() == versions.local_folder(ctx, v1).resolve()


def test_with_a_corpus_the_new_version_is_evaluated_against_its_parent(ctx, monkeypatch) -> None:
    """Replay and evaluation come from the corpus (here: a small stand-in of its crops); the
    parent's evaluation on record (same n, steps, seed, width) is reused, not recomputed."""
    from encore.diffusion.finetune_data import ImageSet

    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(12, 1, 4, 16, generator=g), size=(16, 64))
    corpus = ft.CorpusData(Path("/corpus"), ImageSet(smooth[:8] * 2 - 1, 32), ImageSet(smooth[8:] * 2 - 1, 32))
    monkeypatch.setattr(ft, "corpus_data", lambda ctx, mel, seed, width=None: (corpus, ""))
    add_dataset_clips(ctx, [0.9, 0.8, 0.7], [1.0, 0.9, 0.8])
    v0 = versions.ensure_base_version(ctx)
    on_record = {"n": 4, "steps": 2, "seed": 0, "width": 32,
                 "scores": {"generate": 0.5, "vary": 0.25, "merge": 0.75}, "rows": []}
    with ctx.session() as session:
        session.get(ModelVersion, v0.id).metrics = {"eval": on_record}
    run = ft.start_finetune(ctx, parent_version_id=v0.id, settings={**FAST, "eval_clips": 4})
    view = ft.training_status(ctx, run.id)
    assert view.status == "done", view.error
    assert view.settings["replay_source"] == "corpus /corpus"
    metrics = versions.version_by_name(ctx, view.version).metrics
    assert metrics["parent_eval"] == on_record
    new = metrics["eval"]
    assert (new["n"], new["steps"], new["width"]) == (4, 2, 32)
    assert [r["name"] for r in new["rows"]][:2] == ["real A (reference)", "real B"]
    assert set(metrics["eval_delta"]) <= set(on_record["scores"])
    for task, delta in metrics["eval_delta"].items():
        assert delta == pytest.approx(new["scores"][task] - on_record["scores"][task], abs=1e-3)
    assert metrics["finetune"]["replay_loss"]["parent"] is not None


def test_abandoned_runs_do_not_block_new_ones(ctx, settings) -> None:
    add_dataset_clips(ctx, [0.9], [1.0])
    v0 = versions.ensure_base_version(ctx)
    no_queue = ServiceContext.from_settings(settings, queues=False)
    queued = ft.start_finetune(no_queue, parent_version_id=v0.id, settings=FAST)  # job not sent
    with pytest.raises(Conflict, match=f"run {queued.id} of v0 is already queued"):
        ft.start_finetune(no_queue, parent_version_id=v0.id, settings=FAST)
    with ctx.session() as session:  # its worker gave up on the job
        job = session.get(Job, queued.job_id)
        job.status, job.error = JobStatus.FAILED, "started 3 times without finishing; giving up"
    in_process = ft.start_finetune(no_queue, parent_version_id=v0.id, settings=FAST, enqueue=False)
    assert ft.training_status(ctx, queued.id).error == (
        "its job ended (failed) without finishing the run: started 3 times without finishing; giving up")
    with ctx.session() as session:  # an `encore finetune --wait` killed with -9
        run = session.get(TrainingRun, in_process.id)
        assert run.settings["process"].endswith(f":{os.getpid()}")
        run.status = TrainingStatus.RUNNING
        run.settings = {**run.settings, "process": f"{socket.gethostname()}:999999999"}
    ft.start_finetune(no_queue, parent_version_id=v0.id, settings=FAST, enqueue=False)
    assert "is gone" in ft.training_status(ctx, in_process.id).error
