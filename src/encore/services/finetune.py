"""Fine-tuning a model version on the curated dataset (docs/finetune.md), as a job.

:func:`start_finetune` records a :class:`TrainingRun` (parent, settings, the training set:
the top-N dataset clips with their confidences) and enqueues a ``finetune`` job on the
training queue. :func:`run_finetune` is the job's work: load the parent and the clips' mel
images, choose the replay data, train (:func:`encore.diffusion.finetune.finetune`), evaluate
the new model with the weight-free metrics when a corpus is installed, and publish it
atomically — the model folder is complete before the one transaction that adds the
version row (a draft), links it to the run and marks the run done — then, with
``Settings.gate_new_versions``, gate it against its parent (:mod:`encore.services.gating`:
the verdict is on the draft before anyone can activate it). On failure the run is
``failed`` with the error and nothing else changes: the parent keeps serving.

Work files live under ``data_dir/finetune/run-<id>/`` (checkpoint, loss log: a retried job
resumes from the checkpoint), model folders under ``data_dir/models/run-<id>/``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from encore.audio.mel import MelConfig
from encore.corpus.dataset import SpectrogramDataset
from encore.corpus.manifest import load_manifest
from encore.errors import Conflict, InvalidInput, JobSuperseded, NotFound
from encore.services import conditioning, curation, preferences, versions
from encore.services.context import Progress, ServiceContext, no_progress
from encore.store import (
    Clip,
    Job,
    JobStatus,
    ModelVersion,
    QueueName,
    TrainingRun,
    TrainingStatus,
    enqueue_job,
    utcnow,
)

logger = logging.getLogger(__name__)

JOB_KIND = "finetune"
#: Share of the job's progress bar spent training (the rest: replay set, evaluation, saving).
TRAIN_SHARE = 0.8


# --- settings --------------------------------------------------------------------------------


def default_settings(ctx: ServiceContext) -> dict[str, Any]:
    """The fine-tuning configuration from :class:`~encore.config.Settings` (a plain dict)."""
    from encore.diffusion.finetune import FinetuneConfig  # deferred: torch (web start-up)

    s = ctx.settings
    cfg = FinetuneConfig(
        steps=s.finetune_steps, max_minutes=s.finetune_max_minutes,
        batch_size=s.finetune_batch_size, lr=s.finetune_lr,
        replay_fraction=s.finetune_replay_fraction,
        threads=s.torch_threads,
    )
    return {**cfg.to_dict(), "parent_replay_clips": s.finetune_parent_replay_clips,
            "eval_clips": s.finetune_eval_clips, "eval_steps": s.finetune_eval_steps,
            # the method, and the preference methods' own settings (encore.diffusion.preference)
            "method": s.finetune_method, "dpo_beta": s.finetune_dpo_beta, "kto_beta": s.finetune_kto_beta,
            "replay_weight": s.finetune_preference_replay_weight, "timestep_strength": s.default_strength,
            "full_range_share": s.finetune_full_range_share, "taste_pair_share": s.finetune_taste_pair_share,
            # a taste-conditioned child (encore.services.preferences.conditioning)
            "conditioned": s.finetune_conditioned, "group_dropout": s.finetune_group_dropout,
            "group_lr_scale": s.finetune_group_lr_scale}


def resolve_settings(ctx: ServiceContext, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults with ``overrides`` applied and validated.

    Raises
    ------
    InvalidInput
        An unknown key (the message lists the known ones) or a bad value.
    """
    from encore.diffusion.finetune import FinetuneConfig  # deferred: torch (web start-up)

    settings = default_settings(ctx)
    unknown = sorted(set(overrides or {}) - set(settings))
    if unknown:
        raise InvalidInput(f"unknown fine-tuning settings {unknown}; known: {sorted(settings)}")
    settings.update(overrides or {})
    if settings["method"] != "paper" and "lr" not in (overrides or {}):
        settings["lr"] = ctx.settings.finetune_preference_lr  # dpo / kto: their own (measured) default
    FinetuneConfig.from_dict(settings)  # validates
    if settings["method"] not in ("paper", "dpo", "kto"):
        raise InvalidInput(f"method={settings['method']!r} must be paper, dpo or kto")
    if settings["method"] != "paper":
        from encore.diffusion.preference import PreferenceConfig  # deferred: torch (web start-up)

        PreferenceConfig.from_dict({**settings, "full_range_share": settings["full_range_share"] or 0.0})
    if not isinstance(settings["conditioned"], bool):
        raise InvalidInput(f"conditioned={settings['conditioned']!r} must be true or false")
    if settings["conditioned"]:
        if settings["method"] == "paper":
            raise InvalidInput("a taste-conditioned fine-tune needs method dpo or kto (their examples "
                               "come from one listener, whose taste group labels them)")
        from encore.diffusion.preference import Conditioning  # deferred: torch (web start-up)

        Conditioning(1, [], dropout=settings["group_dropout"], embedding_lr_scale=settings["group_lr_scale"])
    for key in ("parent_replay_clips", "eval_clips", "eval_steps"):
        if not isinstance(settings[key], int) or settings[key] < (1 if key == "eval_steps" else 0):
            raise InvalidInput(f"{key}={settings[key]!r} must be a whole number >= 0 (eval_steps >= 1)")
    return settings


# --- starting a run ---------------------------------------------------------------------------


def start_finetune(
    ctx: ServiceContext,
    *,
    parent_version_id: int,
    settings: dict[str, Any] | None = None,
    top_n: int | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Record a fine-tuning run of ``parent_version_id`` on the top-N dataset clips.

    Parameters
    ----------
    settings : dict, optional
        Overrides of the defaults (keys of :class:`~encore.diffusion.finetune.FinetuneConfig`
        plus ``parent_replay_clips``, ``eval_clips``, ``eval_steps``).
    top_n : int, optional
        Clips taken from the dataset by R (``Settings.finetune_top_n`` when None).
    enqueue : bool
        Enqueue the ``finetune`` job on the training queue (sent after commit). False
        leaves the run for the caller to execute with :func:`run_finetune` (``--wait``).

    Raises
    ------
    NotFound
        The parent version does not exist.
    Conflict
        The parent is retired, or a run of it is already queued or running.
    InvalidInput
        The curated dataset is empty (or every confidence is 0), or bad settings.
    """
    resolved, examples = prepare_examples(ctx, settings, top_n=top_n)
    method = resolved["method"]
    with ctx.session() as session:
        parent = versions.parent_in(session, parent_version_id, to="fine-tune")
        open_runs = session.scalars(
            sa.select(TrainingRun).where(
                TrainingRun.parent_version_id == parent.id,
                TrainingRun.status.in_([TrainingStatus.QUEUED, TrainingStatus.RUNNING]),
            )
        ).all()
        for other in open_runs:
            reason = _abandoned(session, other)
            if reason is None:
                raise Conflict(f"fine-tuning run {other.id} of {parent.name} is already queued or running")
            logger.warning("training run %d was abandoned: %s", other.id, reason)
            other.status, other.error, other.finished_at = TrainingStatus.FAILED, reason, utcnow()
        run = TrainingRun(
            parent_version_id=parent.id,
            status=TrainingStatus.QUEUED,
            settings={**resolved, **({} if enqueue else {"process": _this_process()})},
            training_set=examples,
        )
        session.add(run)
        session.flush()
        if enqueue:
            job = enqueue_job(session, JOB_KIND, {"run_id": run.id}, queue=QueueName.TRAIN)
            run.job_id = job.id
        logger.info("fine-tuning run %d (%s) of %s on %d %s%s", run.id, method, parent.name, len(examples),
                    EXAMPLE_UNITS[method],
                    " queued" if enqueue else "")
        return run


def prepare_examples(ctx: ServiceContext, settings: dict[str, Any] | None, *,
                     top_n: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's resolved settings (``top_n`` included) and its examples, read from the platform
    now: the top-N dataset clips (``paper``), or the pairs / labels of every counted rating
    (``dpo`` / ``kto``; a method taken from the default setting falls back to ``paper`` with
    too few, :func:`_preference_examples`).

    Raises
    ------
    InvalidInput
        Bad settings, or nothing to train on (the reason).
    """
    top_n = ctx.settings.finetune_top_n if top_n is None else int(top_n)
    if top_n < 1:
        raise InvalidInput(f"top_n={top_n!r} must be at least 1")
    resolved = resolve_settings(ctx, settings)
    method = resolved["method"]
    examples: list[dict[str, Any]] = []
    if method != "paper":  # pairs (dpo) or labels (kto) from every counted rating; top_n does not apply
        asked = "method" in (settings or {}) or bool((settings or {}).get("conditioned"))
        examples, fallback = _preference_examples(ctx, resolved, asked=asked)
        if fallback is not None:  # (a conditioned run from the setting falls back unconditioned)
            resolved = {**resolve_settings(ctx, {**(settings or {}), "method": "paper", "conditioned": False}),
                        "method_requested": method, "fallback": fallback}
            logger.info("fine-tuning falls back to the paper method: %s", fallback)
            method = "paper"
    if method == "paper":
        training_set = curation.dataset_training_set(ctx, top_n=top_n)
        if not training_set:
            raise InvalidInput(
                "the curated dataset is empty: nothing to fine-tune on. Listeners must rate "
                "clips, then `encore dataset curate` admits the best ones"
                + (f" (the default method fell back to the dataset: {resolved['fallback']})"
                   if "fallback" in resolved else ""))
        if not any(c > 0 for _, c in training_set):
            raise InvalidInput(f"all {len(training_set)} dataset clips have confidence 0; nothing to learn")
        examples = [{"clip_id": cid, "confidence": round(c, 6)} for cid, c in training_set]
    return {**resolved, "top_n": top_n}, examples


def _preference_examples(ctx: ServiceContext, resolved: dict[str, Any], *,
                         asked: bool) -> tuple[list[dict[str, Any]], str | None]:
    """A dpo / kto run's examples (``resolved`` gains their counts), or why the run falls
    back to the paper method: a method taken from the default setting, not ``asked`` for by
    name, falls back when there are fewer examples than ``finetune_min_preference_examples``.
    A method asked for by name runs on whatever there is (InvalidInput when nothing)."""
    method = resolved["method"]
    minimum = ctx.settings.finetune_min_preference_examples
    what = "preference pairs" if method == "dpo" else "labelled clips"
    try:
        examples, counts = preferences.build_examples(ctx, method, taste_share=resolved["taste_pair_share"])
    except InvalidInput as exc:
        if asked:
            raise
        return [], f"{method}: {exc}"
    if not asked and len(examples) < minimum:
        return [], f"{method}: only {len(examples)} {what} (fewer than {minimum})"
    resolved["preference_data"] = counts
    if resolved["conditioned"]:  # the taste groups are fixed when the run starts
        groups, resolved["taste_groups_record"] = conditioning.run_groups(ctx, examples)
        resolved["taste_groups"] = groups.to_dict()
    if resolved["full_range_share"] is None:
        resolved["full_range_share"] = preferences.full_range_share(
            ctx, preferences.example_clip_ids(method, examples))
    return examples, None


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(session: Any, run: TrainingRun) -> str | None:
    """Why an open run will never finish (its job ended, its process is gone), or None."""
    if run.job_id is not None:
        job = session.get(Job, run.job_id)
        if job is None:
            return "its job was deleted"
        if job.status in (JobStatus.FAILED, JobStatus.DONE):
            return f"its job ended ({job.status}) without finishing the run" + (
                f": {job.error.splitlines()[0]}" if job.error else "")
        return None
    owner = str((run.settings or {}).get("process", ""))
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return f"the process that ran it ({owner}) is gone"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandon_run(ctx: ServiceContext, run_id: int, reason: str) -> None:
    """Mark an unfinished run failed (e.g. ``encore finetune --wait`` interrupted)."""
    with ctx.session() as session:
        run = session.get(TrainingRun, run_id)
        if run is not None and run.status in (TrainingStatus.QUEUED, TrainingStatus.RUNNING):
            run.status, run.error, run.finished_at = TrainingStatus.FAILED, reason, utcnow()


# --- running it -----------------------------------------------------------------------------


def work_dir(ctx: ServiceContext, run_id: int) -> Path:
    """The run's work folder (checkpoint, loss log)."""
    return (ctx.settings.data_dir / "finetune" / f"run-{run_id}").resolve()


def model_dir(ctx: ServiceContext, run_id: int) -> Path:
    """Where the run's model folder is published."""
    return (ctx.settings.data_dir / "models" / f"run-{run_id}").resolve()


def _set_run(ctx: ServiceContext, run_id: int, **values: Any) -> None:
    with ctx.session() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise NotFound(f"training run {run_id} does not exist")
        for key, value in values.items():
            setattr(run, key, value)


def load_clip_images(ctx: ServiceContext, training_set: list[dict[str, Any]]) -> tuple[list, list, list]:
    """``(clip ids, mel images (H, W) uint8, confidences)`` of the run's training set.

    Clips deleted since the run started are skipped (logged).

    Raises
    ------
    InvalidInput
        If a clip has no mel image or its blob cannot be read as one.
    """
    ids, images, weights = [], [], []
    with ctx.reading() as session:
        clips = {c.id: c for c in session.scalars(
            sa.select(Clip).where(Clip.id.in_([int(e["clip_id"]) for e in training_set])))}
    for entry in training_set:
        clip = clips.get(int(entry["clip_id"]))
        if clip is None:
            logger.warning("clip %s was deleted since the run started; skipped", entry["clip_id"])
            continue
        if not clip.mel_key:
            raise InvalidInput(f"clip {clip.id} has no mel image (mel_key is empty)")
        try:
            image = np.load(io.BytesIO(ctx.blobs.get(clip.mel_key)), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"clip {clip.id}: cannot read its mel image {clip.mel_key!r}: {exc}") from exc
        if image.ndim != 2:
            raise InvalidInput(f"clip {clip.id}: mel image has shape {image.shape}, expected (H, W)")
        ids.append(clip.id)
        images.append(image)
        weights.append(float(entry["confidence"]))
    if not ids:
        raise InvalidInput("none of the training set's clips exists any more")
    return ids, images, weights


@dataclass(frozen=True)
class CorpusData:
    """The corpus's training and held-out crops at a model's width (replay and evaluation)."""

    directory: Path
    train: Any
    heldout: Any | None


def corpus_data(ctx: ServiceContext, mel_config: Any, seed: int,
                width: int | None = None) -> tuple[CorpusData | None, str]:
    """The installed corpus as datasets of crops for a model, or ``(None, why not)``.

    The corpus must have the model's spectrogram settings (mel bins, sample rate, FFT, hop,
    dynamic range); crops are ``width`` frames (the model's ``x_res`` by default).
    """
    directory = ctx.settings.corpus_dir
    if directory is None:
        return None, "no corpus configured (set ENCORE_CORPUS_DIR to a folder made by `encore corpus build`)"
    directory = Path(directory)
    if not (directory / "manifest.jsonl").is_file():
        return None, f"the corpus folder {directory} has no manifest.jsonl (run `encore corpus build`)"
    width = int(width or mel_config.x_res)
    corpus_mel = MelConfig.load(directory)
    if corpus_mel.replace(x_res=mel_config.x_res, n_iter=mel_config.n_iter) != mel_config:
        return None, (f"the corpus {directory} has other spectrogram settings ({corpus_mel}) "
                      f"than the model ({mel_config})")

    splits = {r.split for r in load_manifest(directory)}
    train = SpectrogramDataset(directory, split="train", width=width, seed=seed)
    if len(train) == 0:
        return None, f"the corpus {directory} has no training pieces"
    held_split = next((s for s in ("heldout", "val", "valid", "validation", "test") if s in splits), None)
    heldout = SpectrogramDataset(directory, split=held_split, width=width, seed=seed + 1) if held_split else None
    return CorpusData(directory, train, heldout), ""


def run_finetune(ctx: ServiceContext, run_id: int, progress: Progress = no_progress) -> TrainingRun:
    """Train, evaluate and publish run ``run_id`` (the ``finetune`` job's work).

    Idempotent: a run that is done returns at once; a run interrupted by a dead worker
    resumes from its checkpoint. Any error marks the run ``failed`` with the message and is
    re-raised (the job fails too); the parent version is not touched.

    Under ``torchrun`` (``encore finetune --wait``, data-parallel) every process calls this;
    rank 0 alone writes the run's row, evaluates and publishes, the others only train.
    """
    from encore.diffusion.training import distributed  # deferred: torch (web start-up)

    with ctx.reading() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise NotFound(f"training run {run_id} does not exist")
        if run.status is TrainingStatus.DONE and run.version_id is not None:
            logger.info("training run %d is already done (version %d)", run_id, run.version_id)
            return run
        parent = session.get(ModelVersion, run.parent_version_id)
        training_set = list(run.training_set)
        settings = dict(run.settings)
    if not distributed.is_main():
        _train_and_publish(ctx, run_id, parent, training_set, settings, progress)
        return run
    _set_run(ctx, run_id, status=TrainingStatus.RUNNING, started_at=utcnow(), error=None,
             finished_at=None, progress=0.0)
    try:
        _train_and_publish(ctx, run_id, parent, training_set, settings, _RunProgress(ctx, run_id, progress))
    except JobSuperseded:
        raise  # another attempt owns the job now; it records the outcome
    except Exception as exc:
        message = str(exc) if str(exc) else type(exc).__name__
        if not isinstance(exc, InvalidInput | NotFound | Conflict):
            message = f"{type(exc).__name__}: {message}"
        logger.exception("training run %d failed", run_id)
        _set_run(ctx, run_id, status=TrainingStatus.FAILED, error=message[:10_000],
                 finished_at=utcnow())
        raise
    with ctx.reading() as session:
        return session.get(TrainingRun, run_id)  # type: ignore[return-value]


class _RunProgress:
    """Forwards progress to the caller and writes it on the run row (at most every 5 s)."""

    def __init__(self, ctx: ServiceContext, run_id: int, forward: Progress) -> None:
        self.ctx, self.run_id, self.forward = ctx, run_id, forward
        self.last = 0.0

    def __call__(self, fraction: float, message: str | None = None) -> None:
        self.forward(fraction, message)
        now = time.monotonic()
        if now - self.last >= 5.0:
            self.last = now
            _set_run(self.ctx, self.run_id, progress=min(max(float(fraction), 0.0), 1.0))


def _train_and_publish(
    ctx: ServiceContext,
    run_id: int,
    parent: ModelVersion,
    training_set: list[dict[str, Any]],
    settings: dict[str, Any],
    progress: Progress,
) -> ModelVersion | None:
    """Train run ``run_id``, evaluate and publish it; None on a process other than rank 0
    of a ``torchrun`` launch (it trains, rank 0 does the rest)."""
    from encore.diffusion.training import distributed  # deferred: torch (web start-up)

    t0 = time.monotonic()
    out = model_dir(ctx, run_id)
    with ctx.reading() as session:
        predicted_name = versions.next_version_name(session)

    def on_replay(replay_source: str) -> None:
        if distributed.is_main():
            _set_run(ctx, run_id, settings={**settings, "replay_source": replay_source})

    def on_trained(result: Any) -> None:
        _set_run(ctx, run_id, loss_curve=[_jsonable_row(r) for r in result.loss_curve],
                 training_set=list(result.training_set), progress=TRAIN_SHARE)

    trained = train_and_evaluate(
        ctx, parent, training_set, settings, work=work_dir(ctx, run_id), out=out, name=predicted_name,
        record={"run_id": run_id}, progress=progress, on_replay=on_replay, on_trained=on_trained)
    if trained is None:
        return None
    result, metrics = trained.result, trained.metrics
    method = metrics["method"]
    if ctx.settings.gate_new_versions:  # refused activation until the verdict replaces it
        metrics["gate"] = dict(versions.GATE_PENDING)
    progress(0.99, "publishing")
    stored = versions.store_folder(ctx, out)  # the blob store holds the files before the row
    with ctx.session() as session:
        version = versions.register_version(
            session, folder=stored, parent_id=parent.id, metrics=metrics,
            taste_selection=ctx.settings.taste_selection_new_versions,
            notes=f"fine-tuned{'' if method == 'paper' else f' ({method})'} from {parent.name} on "
                  f"{sum(e['role'] == 'train' for e in result.training_set)} {EXAMPLE_UNITS[method]} "
                  f"(run {run_id}, {result.steps} steps, {result.stop_reason})"
                  + (f"; instead of {settings['fallback']}" if settings.get("fallback") else ""),
        )
        parent_row = session.get(ModelVersion, parent.id)
        if parent_row is not None and "parent_eval" in metrics and "eval" not in (parent_row.metrics or {}):
            parent_row.metrics = {**(parent_row.metrics or {}), "eval": metrics["parent_eval"]}
        run = session.get(TrainingRun, run_id)
        run.version_id = version.id  # type: ignore[union-attr]
        run.status = TrainingStatus.DONE  # type: ignore[union-attr]
        run.progress = 1.0  # type: ignore[union-attr]
        run.finished_at = utcnow()  # type: ignore[union-attr]
        logger.info("training run %d published %s (draft) from %s in %.1f min", run_id,
                    version.name, parent.name, (time.monotonic() - t0) / 60)
    if ctx.settings.gate_new_versions:
        from encore.services import gating

        progress(0.995, f"gating {version.name} against {parent.name}")
        verdict = gating.gate_version(ctx, version.id)
        logger.info("training run %d: %s %s", run_id, version.name, gating.summary(verdict))
    progress(1.0, f"published {version.name}")
    return version


#: What a method's examples are called.
EXAMPLE_UNITS = {"paper": "clips", "dpo": "pairs", "kto": "labelled clips"}


@dataclass(frozen=True)
class Trained:
    """A trained and evaluated model folder, not yet published: :func:`train_and_evaluate`."""

    folder: Path
    result: Any  # FinetuneResult | PreferenceResult
    metrics: dict[str, Any]  # what a version's metrics hold: method, finetune, replay, eval, wall time


def train_and_evaluate(
    ctx: ServiceContext,
    parent: ModelVersion,
    training_set: list[dict[str, Any]],
    settings: dict[str, Any],
    *,
    work: Path,
    out: Path,
    name: str,
    record: dict[str, Any] | None = None,
    progress: Progress = no_progress,
    on_replay: Callable[[str], None] | None = None,
    on_trained: Callable[[Any], None] | None = None,
    parent_eval: dict[str, Any] | None = None,
) -> Trained | None:
    """Fine-tune ``parent`` on ``training_set`` with resolved ``settings`` (a run's) into the
    model folder ``out`` (checkpoints in ``work``; an interrupted call resumes), then evaluate
    it against the parent with the weight-free metrics when a corpus is installed. Publishes
    nothing. None on a process other than rank 0 of a ``torchrun`` launch.

    ``on_replay(source)`` hears where the replay crops come from, ``on_trained(result)`` the
    training's result before the evaluation; ``parent_eval`` is an evaluation of the parent
    with the same settings already made (else the one on its row or in its folder is used).
    """
    import torch  # deferred, with the diffusion imports below: only the training worker needs them

    from encore.diffusion.finetune import FinetuneConfig, evaluate_against_parent, finetune
    from encore.diffusion.folder import load_model_folder, update_model_meta
    from encore.diffusion.training import distributed

    cfg = FinetuneConfig.from_dict(settings)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    t0 = time.monotonic()
    progress(0.01, "loading the model and the clips")
    parent_model = load_model_folder(versions.local_folder(ctx, parent), device=ctx.settings.device)
    method = str(settings.get("method", "paper"))
    if method == "paper":
        clip_ids, images, weights = load_clip_images(ctx, training_set)
    width = int(cfg.width or parent_model.mel_config.x_res)
    corpus, no_corpus_reason = corpus_data(ctx, parent_model.mel_config, cfg.seed, width)

    replay_heldout = corpus.heldout if corpus is not None else None  # forgetting, always measured
    replay, replay_source = _replay(ctx, name, parent, parent_model, settings, cfg, corpus,
                                    no_corpus_reason, width, progress)
    if on_replay is not None:
        on_replay(replay_source)

    def on_train(fraction: float, message: str | None = None) -> None:
        progress(0.05 + (TRAIN_SHARE - 0.05) * fraction, message)

    record = {**(record or {}), "replay_source": replay_source}
    if method == "paper":
        result = finetune(
            parent_model, list(zip(images, weights, strict=True)), cfg=cfg, out_dir=work,
            replay=replay, replay_heldout=replay_heldout, clip_ids=clip_ids, model_dir=out,
            name=name, parent_name=parent.name, record=record, resume=True, progress=on_train,
        )
    else:  # Diffusion-DPO / Diffusion-KTO on the run's pairs or labels
        result = preferences.train(
            ctx, parent_model, training_set, settings, replay=replay, replay_heldout=replay_heldout,
            out_dir=work, model_dir=out, name=name, parent_name=parent.name,
            record=record, progress=on_train,
        )
    if not distributed.is_main():
        return None
    if on_trained is not None:
        on_trained(result)

    metrics: dict[str, Any] = {"method": method, "finetune": result.summary(), "replay_source": replay_source}
    if settings.get("fallback"):
        metrics["fallback"] = settings["fallback"]  # the default method had too little data
    eval_clips = int(settings.get("eval_clips", 0))
    if eval_clips <= 0:
        metrics["eval_skipped"] = "eval_clips=0"
    elif corpus is None or corpus.heldout is None:
        metrics["eval_skipped"] = no_corpus_reason or f"the corpus {corpus.directory} has no held-out split"  # type: ignore[union-attr]
    else:
        progress(TRAIN_SHARE, "evaluating the new version")
        metrics.update(evaluate_against_parent(
            load_model_folder(out, device="cpu"), parent_model, heldout=corpus.heldout,
            train=corpus.train, n=eval_clips, steps=int(settings.get("eval_steps", 25)),
            seed=cfg.seed, precision=cfg.precision,
            parent_report=parent_eval or _stored_eval(parent, parent_model),
        ))
    metrics["wall_seconds"] = round(time.monotonic() - t0, 1)
    update_model_meta(out, metrics=metrics)  # the folder is complete before its row exists
    return Trained(out, result, metrics)


def _replay(ctx: ServiceContext, name: str, parent: ModelVersion, parent_model: Any,
            settings: dict[str, Any], cfg: Any, corpus: Any, no_corpus_reason: str | None,
            width: int, progress: Progress) -> tuple[Any, str]:
    """The run's replay crops and where they come from: the corpus, else the parent's own
    generations (``parent_replay_clips``), else none."""
    from encore.diffusion.finetune_data import parent_replay_set

    if cfg.replay_fraction <= 0:
        return None, "none"
    if corpus is not None:
        return corpus.train, f"corpus {corpus.directory}"
    n = int(settings.get("parent_replay_clips", 0))
    if n <= 0:
        logger.warning("fine-tune of %s: %s and parent_replay_clips=0: no replay", name, no_corpus_reason)
        return None, "none"
    logger.warning("fine-tune of %s: %s; replaying %d generations of %s instead",
                   name, no_corpus_reason, n, parent.name)
    replay = parent_replay_set(
        parent_model, n=n, steps=int(settings.get("eval_steps", 25)), seed=cfg.seed,
        precision=cfg.precision, width=width,
        progress=lambda f: progress(0.01 + 0.04 * f, "generating replay clips"),
    )
    return replay, f"{n} generations of {parent.name}"


def _stored_eval(parent: ModelVersion, parent_model: Any) -> dict[str, Any] | None:
    """An evaluation of the parent already on record (its row, or ``encore eval --save``)."""
    stored = (parent.metrics or {}).get("eval")
    if stored:
        return stored
    folder_metrics = dict(parent_model.meta.get("metrics") or {})
    return folder_metrics if "scores" in folder_metrics else None


def _jsonable_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRunView:
    """What the operator sees of a run."""

    run_id: int
    status: str
    progress: float
    message: str | None
    parent: str
    version: str | None
    n_clips: int
    error: str | None
    settings: dict[str, Any]
    loss_curve: list[dict[str, Any]]
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            d[key] = d[key].isoformat() if d[key] else None
        return d


def training_status(ctx: ServiceContext, run_id: int) -> TrainingRunView:
    """The state of run ``run_id`` (progress and message come from its job while it runs)."""
    with ctx.reading() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise NotFound(f"training run {run_id} does not exist")
        return _view(session, run)


def list_runs(ctx: ServiceContext) -> list[TrainingRunView]:
    """Every fine-tuning run, newest first."""
    with ctx.reading() as session:
        runs = session.scalars(sa.select(TrainingRun).order_by(TrainingRun.id.desc())).all()
        return [_view(session, r) for r in runs]


def _view(session: Any, run: TrainingRun) -> TrainingRunView:
    job = session.get(Job, run.job_id) if run.job_id else None
    progress, message = float(run.progress), None
    if job is not None and run.status is TrainingStatus.RUNNING:
        progress, message = max(progress, float(job.progress)), job.message
    parent = session.get(ModelVersion, run.parent_version_id)
    version = session.get(ModelVersion, run.version_id) if run.version_id else None
    return TrainingRunView(
        run_id=run.id, status=str(run.status), progress=progress, message=message,
        parent=parent.name if parent else "?", version=version.name if version else None,
        n_clips=len(run.training_set or []), error=run.error, settings=dict(run.settings or {}),
        loss_curve=list(run.loss_curve or []), created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at,
    )
