"""Preference fine-tuning of a model version: Diffusion-DPO on pairs, Diffusion-KTO on labels.

The two methods beside the paper's confidence-weighted fine-tune
(:mod:`encore.diffusion.finetune`), on the same loop (:mod:`encore.diffusion.training`) with the
same optimiser, schedule, EMA, checkpoints, exact resume, early stopping and model-folder
export. What differs is the batch source and the objective
(:mod:`encore.diffusion.training.preference`) and that the loop gets the frozen parent as its
``reference``:

- ``dpo``: pairs ``(winner, loser, weight)`` of clips one listener rated for the same songs
  (:mod:`encore.feedback.preferences`), ``L = −log σ(β (r_w − r_l))`` with the implicit reward
  ``r = −(‖ε − ε_θ‖² − ‖ε − ε_ref‖²)``;
- ``kto``: clips labelled desirable / undesirable against their listener's mean,
  ``L = 1 − σ(±β (r − z₀))``.

Both keep replay: a share ``replay_fraction`` of every batch's images are corpus crops (or the
parent's generations) trained with the plain ε-loss, weighted ``replay_weight``. Timesteps are
drawn where serving uses them (:class:`~encore.diffusion.training.preference.TimestepRange`).

**Taste-conditioned** (``conditioning``, :class:`Conditioning`): the child's UNet gets a class
embedding of ``k + 1`` rows (the taste groups and the null label,
:func:`~encore.diffusion.model.conditioned_denoiser`), zero at the start so the child starts as
the parent; each example is labelled with the taste group of the listener whose ratings made
it, and with probability ``dropout`` the label becomes the null label (label dropout, so that
classifier-free guidance has an unconditioned prediction to start from). Replay crops always get
the null label. The reference is the starting model (for an unconditioned parent: the parent
with zero embeddings, which is the parent exactly), seeing the same labels as the policy.

Evaluated every ``eval_every`` steps on fixed crops / noise / timesteps: the preference loss,
the implicit-reward margin (DPO) or the rewards of each kind (KTO) on the training and the
held-out examples, and the ε-loss on held-out corpus crops (forgetting). The exported weights
are the best by the held-out preference loss (the last ones when nothing is held out).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from encore.diffusion.finetune import (
    CONFIG_FILE,
    FinetuneConfig,
    RunResult,
    _no_progress,
    best_weights,
    heldout_positions,
    open_run,
    save_export,
    set_up_torch,
    training_noise_scheduler,
)
from encore.diffusion.finetune import loop_config as finetune_loop_config
from encore.diffusion.finetune_data import clip_tensor
from encore.diffusion.folder import (
    TASTE_GROUPS_KEY,
    LoadedModel,
)
from encore.diffusion.train import fixed_heldout_batch, heldout_loss
from encore.diffusion.training import (
    BestWeights,
    DictConfig,
    LoopConfig,
    LoopOutcome,
    TrainingLoop,
    distributed,
    read_log,
    round_or_none,
)
from encore.diffusion.training.plots import plot_log
from encore.diffusion.training.preference import (
    DiffusionDPOLoss,
    DiffusionKTOLoss,
    LabelBatches,
    PairBatches,
    TimestepRange,
    fixed_labels,
    fixed_pairs,
    label_figures,
    pair_figures,
)
from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

METHODS = ("paper", "dpo", "kto")
PREFERENCE_METHODS = ("dpo", "kto")
LOG_FILE = "loss_log.jsonl"
CURVE_FILE = "loss_curve.png"
MODEL_DIR = "model"

ProgressFn = Callable[[float, str | None], None]


@dataclass(frozen=True)
class PreferenceConfig(DictConfig):
    """The preference methods' own settings (the rest is :class:`FinetuneConfig`).

    Attributes
    ----------
    method : "dpo" or "kto"
    dpo_beta, kto_beta : float
        β of each loss, for per-pixel mean squared errors (see ``docs/finetune.md``: the value
        that moves the default model within one iteration, measured).
    replay_weight : float
        Weight of the ε-loss on the replay crops, added to the preference loss.
    timestep_strength : float
        Timesteps are drawn from ``U{0..⌈s·T⌉−1}`` (the default strength of variations) ...
    full_range_share : float
        ... except this share, drawn from the whole range (generation from noise, merges).
    """

    method: Literal["dpo", "kto"] = "dpo"
    dpo_beta: float = 2000.0
    kto_beta: float = 2000.0
    replay_weight: float = 1.0
    timestep_strength: float = 0.7
    full_range_share: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in PREFERENCE_METHODS:
            raise InvalidInput(f"method={self.method!r} must be one of {PREFERENCE_METHODS}")
        for name in ("dpo_beta", "kto_beta"):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name}={getattr(self, name)!r} must be > 0")
        if not self.replay_weight >= 0:
            raise InvalidInput(f"replay_weight={self.replay_weight!r} must be >= 0")
        self.timesteps()  # validates

    @property
    def beta(self) -> float:
        return self.dpo_beta if self.method == "dpo" else self.kto_beta

    def timesteps(self) -> TimestepRange:
        return TimestepRange(self.timestep_strength, self.full_range_share)


@dataclass(frozen=True)
class Conditioning:
    """A taste-conditioned fine-tune.

    Attributes
    ----------
    num_groups : int
        ``k``: the UNet gets ``k + 1`` class embeddings (the last is the null label).
    groups : sequence of int
        The taste group of every example (aligned with ``pairs`` / ``labels``), in ``[0, k]``
        (``k``, the null label: a listener without a group).
    dropout : float
        Probability that an example's label becomes the null label (label dropout).
    embedding_lr_scale : float
        The group embedding learns this many times faster than the other weights. Adam moves a
        weight by about the learning rate per step whatever its gradient, so at a preference
        fine-tune's 1e-5 a zero-initialised embedding would stay below 3e-3 in 300 steps, where
        the timestep embedding it is added to is ~0.2–0.5 per coordinate (the shipped model).
    record : mapping
        What the group numbers refer to (the stored taste groups), kept in the model folder's
        ``encore.json`` under ``taste_groups`` so that serving can check it.
    """

    num_groups: int
    groups: Sequence[int]
    dropout: float = 0.1
    embedding_lr_scale: float = 100.0
    record: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.num_groups, int) or self.num_groups < 1:
            raise InvalidInput(f"num_groups={self.num_groups!r} must be a whole number >= 1")
        if not 0.0 <= float(self.dropout) <= 1.0:
            raise InvalidInput(f"label dropout {self.dropout!r} must be in [0, 1]")
        if not 0.0 < float(self.embedding_lr_scale) < float("inf"):
            raise InvalidInput(f"embedding_lr_scale={self.embedding_lr_scale!r} must be a finite number > 0")
        bad = [g for g in self.groups if not 0 <= int(g) <= self.num_groups]
        if bad:
            raise InvalidInput(f"taste groups {sorted(set(bad))[:10]} outside 0..{self.num_groups} "
                               f"({self.num_groups} = no group)")

    def to_dict(self) -> dict[str, Any]:
        sizes = np.bincount(np.asarray(list(self.groups), dtype=int), minlength=self.num_groups + 1)
        return {"num_groups": self.num_groups, "null_label": self.num_groups, "dropout": float(self.dropout),
                "embedding_lr_scale": float(self.embedding_lr_scale),
                "examples_per_group": [int(n) for n in sizes], **dict(self.record)}


def starting_model(parent: LoadedModel, conditioning: Conditioning | None) -> torch.nn.Module:
    """The weights a fine-tune starts from (a float32 copy on the parent's device): the parent's,
    or — for a conditioned fine-tune — the parent with zero-initialised group embeddings
    (unless the parent is already conditioned on the same groups: then its own)."""
    from encore.diffusion.model import conditioned_denoiser

    model = copy.deepcopy(parent.denoiser).float().to(parent.denoiser.device)
    if conditioning is None:
        return model
    same = (model.num_groups == conditioning.num_groups
            and dict(parent.meta.get(TASTE_GROUPS_KEY) or {}).get("groups_id") == conditioning.record.get("groups_id"))
    return model if same else conditioned_denoiser(model, conditioning.num_groups)


@dataclass(frozen=True)
class PreferenceResult(RunResult):
    """What a preference fine-tune produced (:class:`RunResult`; ``figures``:
    ``{name: (parent, exported)}``)."""

    method: str
    figures: dict[str, tuple[float | None, float | None]]
    preference: PreferenceConfig
    conditioning: dict[str, Any] | None = None  # Conditioning.to_dict() of a conditioned child

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, **super().summary(), "beta": self.preference.beta}
        if self.conditioning is not None:
            out["conditioning"] = self.conditioning
        for key, (before, after) in self.figures.items():
            out[key] = {"parent": round_or_none(before), "finetuned": round_or_none(after)}
        return out


def _fingerprint(images: Sequence[torch.Tensor], examples: Sequence[tuple[Any, ...]]) -> str:
    h = hashlib.sha256()
    for x in images:
        h.update(np.asarray(x.shape).tobytes())
        h.update(x.numpy().astype(np.float32).tobytes())
    h.update(json.dumps([list(map(float, e)) for e in examples]).encode())
    return h.hexdigest()[:16]


def loop_config(cfg: FinetuneConfig, method: str, criterion: str) -> LoopConfig:
    return finetune_loop_config(cfg, criterion, f"{method} fine-tune")


def frozen_reference(parent: LoadedModel) -> torch.nn.Module:
    """A frozen float32 copy of the parent's denoiser: ``eval()``, no gradients."""
    return copy.deepcopy(parent.denoiser).float().to(parent.denoiser.device).eval().requires_grad_(False)


@dataclass(frozen=True)
class _Examples:
    """The validated examples of a preference fine-tune, split into training and held-out ones.

    ``tensors[k]`` is the image of clip ``ids[k]``; an example names its clips by that index:
    ``(winner, loser, weight)`` (DPO) or ``(clip, desirable, weight)`` (KTO)."""

    ids: list[Any]
    tensors: list[torch.Tensor]
    train: list[tuple[Any, ...]]
    held: list[tuple[Any, ...]]
    train_groups: list[int] | None
    held_groups: list[int] | None
    training_set: tuple[dict[str, Any], ...]
    fingerprint: str


def _index_examples(images: Mapping[Any, Any], examples: Sequence[tuple[Any, ...]], method: str,
                    height: int) -> tuple[list[Any], list[torch.Tensor], list[tuple[Any, ...]]]:
    """Check the examples and their images; the clip ids, their images and the examples with
    clips by index."""
    if not examples:
        raise InvalidInput(f"{method}: no {'preference pairs' if method == 'dpo' else 'labelled clips'} "
                           "to train on")
    ids = sorted({cid for e in examples for cid in ((e[0], e[1]) if method == "dpo" else (e[0],))})
    missing = [cid for cid in ids if cid not in images]
    if missing:
        raise InvalidInput(f"no mel image for clips {missing[:10]}")
    index = {cid: k for k, cid in enumerate(ids)}
    tensors = [clip_tensor(images[cid], height) for cid in ids]
    indexed: list[tuple[Any, ...]] = []
    for e in examples:
        weight = float(e[2])
        if not (np.isfinite(weight) and weight >= 0):
            raise InvalidInput(f"example {e!r} has weight {weight!r}; it must be finite and >= 0")
        if method == "dpo":
            if e[0] == e[1]:
                raise InvalidInput(f"a pair compares clip {e[0]!r} with itself")
            indexed.append((index[e[0]], index[e[1]], weight))
        else:
            indexed.append((index[e[0]], bool(e[1]), weight))
    return ids, tensors, indexed


def _split_examples(images: Mapping[Any, Any], examples: Sequence[tuple[Any, ...]], method: str,
                    height: int, cfg: FinetuneConfig, conditioning: Conditioning | None) -> _Examples:
    """Validate the examples, hold out a seeded few (:func:`heldout_positions`), drop weight 0."""
    ids, tensors, indexed = _index_examples(images, examples, method, height)
    if conditioning is not None and len(conditioning.groups) != len(indexed):
        raise InvalidInput(f"{len(conditioning.groups)} taste groups for {len(indexed)} examples")
    held_idx = sorted(heldout_positions(len(indexed), cfg))
    train_idx = [i for i in range(len(indexed)) if i not in set(held_idx) and indexed[i][2] > 0]
    held_idx = [i for i in held_idx if indexed[i][2] > 0]
    if not train_idx:
        raise InvalidInput(f"{method}: every training example has weight 0; nothing to learn")
    group_of = list(conditioning.groups) if conditioning is not None else None
    roles = {i: "train" for i in train_idx} | {i: "heldout" for i in held_idx}
    training_set = tuple(
        ({"winner": e[0], "loser": e[1]} if method == "dpo" else {"clip_id": e[0], "desirable": bool(e[1])})
        | {"weight": round(float(e[2]), 6), "role": roles.get(i, "dropped")}
        | ({"group": int(group_of[i])} if group_of is not None else {})
        for i, e in enumerate(examples))
    return _Examples(
        ids=ids, tensors=tensors, train=[indexed[i] for i in train_idx], held=[indexed[i] for i in held_idx],
        train_groups=[group_of[i] for i in train_idx] if group_of is not None else None,
        held_groups=[group_of[i] for i in held_idx] if group_of is not None else None,
        training_set=training_set,
        fingerprint=_fingerprint(tensors, [(*e, group_of[i]) for i, e in enumerate(indexed)]
                                 if group_of is not None else indexed),
    )


@dataclass(frozen=True)
class _MethodParts:
    """What DPO and KTO do differently: the batches, the objective, the fixed evaluation sets
    of the training and the held-out examples, and the figures measured on them."""

    batches: Any
    objective: Any
    fixed_train: Any
    fixed_held: Any
    figures_of: Callable[..., dict[str, float]]


def _method_parts(data: _Examples, cfg: FinetuneConfig, pref: PreferenceConfig, *, width: int, T: int,
                  replay: Any, n_replay: int, per_batch: int, dropout: float) -> _MethodParts:
    timesteps = pref.timesteps()
    fixed = fixed_pairs if pref.method == "dpo" else fixed_labels
    if pref.method == "dpo":
        batches: Any = PairBatches(data.tensors, data.train, width=width, pairs_per_batch=max(per_batch // 2, 1),
                                   seed=cfg.seed, replay=replay, n_replay=n_replay, groups=data.train_groups)
        objective: Any = DiffusionDPOLoss(pref.dpo_beta, timesteps, pref.replay_weight, dropout)
    else:
        batches = LabelBatches(data.tensors, data.train, width=width, per_batch=per_batch, seed=cfg.seed,
                               replay=replay, n_replay=n_replay, groups=data.train_groups)
        objective = DiffusionKTOLoss(pref.kto_beta, timesteps, pref.replay_weight, dropout)
    return _MethodParts(
        batches=batches, objective=objective,
        fixed_train=fixed(data.tensors, data.train, width=width, n=cfg.eval_crops, T=T, timesteps=timesteps,
                          seed=cfg.seed + 11, groups=data.train_groups),
        fixed_held=fixed(data.tensors, data.held, width=width, n=cfg.eval_crops, T=T, timesteps=timesteps,
                         seed=cfg.seed + 12, groups=data.held_groups),
        figures_of=pair_figures if pref.method == "dpo" else label_figures,
    )


def _evaluator(parts: _MethodParts, pref: PreferenceConfig, reference: torch.nn.Module,
               forgetting: Any, noise_scheduler: Any, bf16: bool) -> Callable[[torch.nn.Module],
                                                                          dict[str, float | None]]:
    """The loop's evaluation: the method's figures on the fixed training and held-out sets (the
    frozen reference's errors computed once per set) and the ε-loss on held-out corpus crops."""
    reference_errors: dict[Any, torch.Tensor] = {}

    def evaluate(m: torch.nn.Module) -> dict[str, float | None]:
        out_figures: dict[str, float | None] = {}
        for tag, fixed in (("train", parts.fixed_train), ("heldout", parts.fixed_held)):
            if fixed is None:
                out_figures[f"{tag}_{pref.method}_loss"] = None
                continue
            for key, value in parts.figures_of(m, reference, fixed, noise_scheduler, beta=pref.beta,
                                               use_bf16=bf16, cache=reference_errors).items():
                out_figures[f"{tag}_{key}"] = value
        out_figures["replay_loss"] = (heldout_loss(m, forgetting, noise_scheduler, use_bf16=bf16)
                                      if forgetting is not None else None)
        return out_figures

    return evaluate


def preference_finetune(
    parent: LoadedModel,
    images: Mapping[Any, Any],
    *,
    pairs: Sequence[tuple[Any, Any, float]] | None = None,
    labels: Sequence[tuple[Any, bool, float]] | None = None,
    cfg: FinetuneConfig | None = None,
    pref: PreferenceConfig | None = None,
    out_dir: str | Path,
    replay: Any = None,
    replay_heldout: Any = None,
    model_dir: str | Path | None = None,
    name: str | None = None,
    parent_name: str | None = None,
    record: dict[str, Any] | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    conditioning: Conditioning | None = None,
) -> PreferenceResult:
    """Fine-tune ``parent`` by Diffusion-DPO (``pairs``) or Diffusion-KTO (``labels``).

    ``images``: clip id → mel image ``(H, W)`` (uint8 or float in [-1, 1]); ``pairs``:
    ``(winner id, loser id, weight)``; ``labels``: ``(clip id, desirable, weight)``. The rest as
    :func:`encore.diffusion.finetune.finetune` (replay, resume, export, progress).
    ``conditioning``: a taste-conditioned child (module docstring), with each example's group.

    Raises
    ------
    InvalidInput
        No examples for the method, an example naming a clip without an image, a negative
        weight, bad images, or a checkpoint of other data without ``resume``.
    """
    cfg = cfg or FinetuneConfig()
    pref = pref or PreferenceConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or _no_progress
    width = int(cfg.width or parent.mel_config.x_res)
    if width % parent.denoiser.width_multiple:
        raise InvalidInput(f"crop width {width} must be a multiple of {parent.denoiser.width_multiple}")
    data = _split_examples(images, list((pairs if pref.method == "dpo" else labels) or []), pref.method,
                           int(parent.mel_config.y_res), cfg, conditioning)

    cfg, checkpoint = open_run(out, cfg, data.fingerprint, resume, what=f"{pref.method} fine-tune",
                               data="clips or preferences")
    if checkpoint is not None:
        pref = PreferenceConfig.from_dict(checkpoint["preference"])
    bf16 = set_up_torch(cfg, parent.denoiser.device)
    model = starting_model(parent, conditioning).requires_grad_(True)
    # the frozen reference is where the policy starts: the parent, or the parent with zero group
    # embeddings (the same function) for a newly conditioned child
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    noise_scheduler = training_noise_scheduler(parent)
    T = int(noise_scheduler.config.num_train_timesteps)
    n_replay = cfg.replay_per_batch if replay is not None and len(replay) > 0 else 0
    per_batch = max(cfg.batch_size - n_replay, 1)
    parts = _method_parts(data, cfg, pref, width=width, T=T, replay=replay, n_replay=n_replay,
                          per_batch=per_batch, dropout=conditioning.dropout if conditioning is not None else 0.0)
    forgetting = fixed_heldout_batch(replay_heldout if replay_heldout is not None else replay,
                                     cfg.eval_crops, T, cfg.seed + 13)
    criterion = f"heldout_{pref.method}_loss"
    loop_settings = loop_config(cfg, pref.method, criterion)
    if conditioning is not None:
        loop_settings = dataclasses.replace(
            loop_settings, lr_scales=(("unet.class_embedding.", float(conditioning.embedding_lr_scale)),))
    loop = TrainingLoop(
        model, objective=parts.objective, batches=parts.batches, config=loop_settings,
        out=out, noise_scheduler=noise_scheduler, use_bf16=bf16, reference=reference,
        evaluate=_evaluator(parts, pref, reference, forgetting, noise_scheduler, bf16),
        best=BestWeights(criterion, cfg.patience),
        checkpoint_extra={"config": cfg.to_dict(), "preference": pref.to_dict(), "fingerprint": data.fingerprint,
                          "conditioning": conditioning.to_dict() if conditioning is not None else None},
        on_step=lambda s: report(s.fraction, f"{pref.method}: step {s.step}/{cfg.steps}"),
    )
    loop.resume(checkpoint)
    if distributed.is_main():
        (out / CONFIG_FILE).write_text(json.dumps({**cfg.to_dict(), **pref.to_dict()}, indent=2) + "\n")
    logger.info("%s fine-tune of %s: %d training examples (%d held out) over %d clips, %d per batch + "
                "%d replay, β %g, t < %d (full range %.0f %%), %d steps, lr %.1e, bf16=%s",
                pref.method, parent.name, len(data.train), len(data.held), len(data.ids), per_batch, n_replay,
                pref.beta, pref.timesteps().t_max(T), 100 * pref.full_range_share, cfg.steps, cfg.lr, bf16)
    report(loop.step / cfg.steps, f"{pref.method} fine-tuning")
    outcome = loop.run()
    return _export(loop, outcome, parent, cfg, pref, data.training_set,
                   model_dir=Path(model_dir) if model_dir is not None else out / MODEL_DIR,
                   n_replay=n_replay, name=name, parent_name=parent_name, record=record, report=report,
                   conditioning=conditioning)


def _export(loop: TrainingLoop, outcome: LoopOutcome, parent: LoadedModel, cfg: FinetuneConfig,
            pref: PreferenceConfig, training_set: tuple[dict[str, Any], ...], *, model_dir: Path,
            n_replay: int, name: str | None, parent_name: str | None, record: dict[str, Any] | None,
            report: ProgressFn, conditioning: Conditioning | None = None) -> PreferenceResult:
    final_model, exported, parent_figures, best_step = best_weights(loop, outcome)
    m = pref.method
    keys = ([f"{tag}_{k}" for tag in ("train", "heldout") for k in ("dpo_loss", "margin", "accuracy")]
            if m == "dpo" else
            [f"{tag}_{k}" for tag in ("train", "heldout") for k in ("kto_loss", "reward_desirable",
                                                                    "reward_undesirable")])
    keys.append("replay_loss")
    figures = {k: (parent_figures.get(k), exported.get(k)) for k in keys
               if parent_figures.get(k) is not None or exported.get(k) is not None}
    series = {f"train_{m}_loss": "training examples (EMA)", f"heldout_{m}_loss": "held-out examples (EMA)"}
    if m == "dpo":
        series["train_margin"] = "training pairs: reward margin r_w − r_l (EMA)"
    main = distributed.is_main()
    curve = plot_log(loop.log_path, loop.out / CURVE_FILE, series=series, title=f"{m} fine-tune of {parent.name}",
                     best_step=best_step) if main else None
    result = PreferenceResult(
        method=m, out_dir=loop.out, model_dir=model_dir, steps=outcome.steps, planned_steps=cfg.steps,
        best_step=best_step, stop_reason=outcome.stop_reason, wall_seconds=outcome.wall_seconds,
        samples_seen=outcome.steps * cfg.batch_size, figures=figures, training_set=training_set,
        loss_curve=tuple(read_log(loop.log_path)), log_path=loop.log_path, curve_path=curve,
        config=cfg, preference=pref, conditioning=conditioning.to_dict() if conditioning is not None else None,
    )
    training = {"kind": f"finetune-{m}", "method": m, "config": cfg.to_dict(), "preference": pref.to_dict(),
                "replay": {"crops_per_batch": n_replay, "weight": pref.replay_weight},
                "training_set": list(training_set), **result.summary(), **(record or {})}
    if conditioning is not None:
        training["conditioning"] = conditioning.to_dict()
    if not main:  # under torchrun rank 0 alone writes the folder
        return result
    save_export(loop, final_model, parent, model_dir=model_dir, config_json={**cfg.to_dict(), **pref.to_dict()},
                curve=curve, training=training, name=name, parent_name=parent_name, report=report,
                taste_groups=conditioning.to_dict() if conditioning else None)
    logger.info("%s fine-tune done: %d steps (%s), best step %d, %.1f min; %s", m, result.steps,
                result.stop_reason, best_step, result.wall_seconds / 60,
                ", ".join(f"{k} {round_or_none(a, 5)} -> {round_or_none(b, 5)}" for k, (a, b) in figures.items()))
    return result

