"""A finished base-training run as a shippable model folder: fp16 weights, card, curve, pictures.

``encore train export --run RUN --out DIR`` (and ``scripts/gpu-base-run``) call
:func:`export_run`: the run's EMA weights (``RUN/model``) are written as fp16 safetensors with the
run's ``train_config.json``, its loss curve, the evaluation's spectrogram pictures and a
``MODEL_CARD.md`` written from the run's own figures (how it was trained, on what, how long,
the held-out loss along the way and, when given, the ``encore eval`` report). Nothing in the
card is typed by hand, so a run on a machine nobody watches still documents itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from encore.diffusion.folder import load_model_folder
from encore.diffusion.train import (
    CONFIG_FILE,
    CURVE_FILE,
    MODEL_DIR,
    TrainConfig,
    export_model_folder,
)
from encore.diffusion.training import read_log
from encore.errors import InvalidInput, NotFound

CARD_FILE = "MODEL_CARD.md"
PICTURES_DIR = "pictures"


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    eval_report: dict[str, Any] | None = None,
    pictures: str | Path | None = None,
    notes: dict[str, Any] | None = None,
) -> Path:
    """Write the run's EMA weights as an fp16 model folder with its card; returns ``out_dir``.

    Parameters
    ----------
    run_dir : path
        A folder written by ``encore train base`` (``model/``, ``train_config.json``,
        ``loss_log.jsonl``, ``loss_curve.png``).
    out_dir : path
        The model folder to write (replaced atomically if it exists).
    name : str, optional
        The model's name (default: the folder's name).
    eval_report : dict, optional
        ``encore eval --json``'s report; stored as the folder's metrics and tabled in the card.
    pictures : path, optional
        A folder of PNGs (``encore eval --pictures``) copied to ``pictures/``.
    notes : dict, optional
        Free-form facts for the card (the corpus pack, the command, timings), shown as a table.
    """
    run, out = Path(run_dir), Path(out_dir)
    if not (run / MODEL_DIR).is_dir():
        raise NotFound(f"{run} holds no exported weights ({MODEL_DIR}/); is it a run folder of `encore train base`?")
    config_path = run / CONFIG_FILE
    if not config_path.is_file():
        raise NotFound(f"no {CONFIG_FILE} in run folder {run}")
    cfg = TrainConfig.from_dict(json.loads(config_path.read_text()))
    loaded = load_model_folder(run / MODEL_DIR, device="cpu")
    training = dict(loaded.meta.get("training") or {})
    training.pop("train_config", None)  # export_model_folder records the config again
    files: dict[str, Any] = {}
    if (run / CURVE_FILE).is_file():
        files[CURVE_FILE] = run / CURVE_FILE
    picture_names: list[str] = []
    if pictures is not None:
        folder = Path(pictures)
        if not folder.is_dir():
            raise NotFound(f"pictures folder {folder} does not exist")
        for png in sorted(folder.glob("*.png")):
            files[f"{PICTURES_DIR}/{png.name}"] = png
            picture_names.append(png.name)
    n_params = sum(p.numel() for p in loaded.denoiser.parameters())
    title = name or out.name
    files[CARD_FILE] = model_card(
        title, cfg, training, n_params=n_params, log=read_log(run / "loss_log.jsonl"),
        eval_report=eval_report, pictures=picture_names, notes=notes or {},
        has_curve=CURVE_FILE in files)
    return export_model_folder(loaded.denoiser, out, cfg=cfg, mel_config=loaded.mel_config,
                               training=training, metrics=eval_report, dtype=torch.float16,
                               name=title, extra_files=files)


def load_eval_report(path: str | Path) -> dict[str, Any]:
    """An ``encore eval --json`` report (a dict with ``rows``)."""
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"evaluation report {p} does not exist")
    try:
        report = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{p} is not JSON: {exc}") from exc
    if not isinstance(report, dict) or "rows" not in report:
        raise InvalidInput(f"{p} is not an `encore eval --json` report (no rows)")
    return report


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def model_card(
    name: str,
    cfg: TrainConfig,
    training: dict[str, Any],
    *,
    n_params: int,
    log: list[dict[str, Any]],
    eval_report: dict[str, Any] | None,
    pictures: list[str],
    notes: dict[str, Any],
    has_curve: bool,
) -> str:
    """The markdown model card of a base-training run, from its own records."""
    steps = int(training.get("steps") or 0)
    samples = int(training.get("samples_seen") or steps * cfg.batch_size)
    seconds = float(training.get("wall_seconds") or 0.0)
    rate = f"{samples / seconds:,.0f} samples/s" if seconds > 0 else "–"
    arch = cfg.model_config or {}
    unet = arch.get("unet", {}) if isinstance(arch, dict) else {}
    lines = [
        f"# encore {name}",
        "",
        "A DDPM ε-prediction model over mel spectrograms (the audio-diffusion format), trained "
        "from scratch by `encore train base` on the corpus encore builds itself. This card was "
        "written by `encore train export` from the run's own records.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `SpectrogramDenoiser`, layout `{arch.get('layout', '?')}`, "
        f"block_out_channels {tuple(unet.get('block_out_channels', ()))} |",
        f"| parameters | {n_params / 1e6:.2f} M ({n_params:,}) |",
        "| weights | fp16 safetensors; `load_model_folder` loads them as float32 |",
        f"| training crops | {cfg.width} frames (random offsets around the corpus's non-silent slices) |",
        f"| schedule | DDPM, {cfg.num_train_timesteps} steps, `{cfg.beta_schedule}` betas; sampled with DDIM "
        "of the same betas |",
        "",
        "## Training",
        "",
        f"| | |\n|---|---|\n"
        f"| device | {cfg.device} (precision {cfg.precision}, compile {cfg.compile or 'no'}, "
        f"batches `{cfg.data}`) |\n"
        f"| steps | {steps:,} at batch {cfg.batch_size} = **{samples:,} samples** |\n"
        f"| wall time | {seconds / 60:.1f} min ({rate}) |\n"
        f"| optimiser | AdamW, peak lr {cfg.lr:.3g} after {cfg.warmup_steps} warm-up steps, cosine to "
        f"{cfg.lr * cfg.min_lr_ratio:.3g}, weight decay {cfg.weight_decay}, clip {cfg.grad_clip} |\n"
        f"| EMA | {cfg.ema_decay} (the shipped weights) |\n"
        f"| seed | {cfg.seed} |\n"
        f"| initialised from | {cfg.init_from or 'random'} |",
    ]
    held = [r for r in log if r.get("heldout_loss") is not None]
    if held:
        picks = held if len(held) <= 9 else [held[round(i * (len(held) - 1) / 8)] for i in range(9)]
        lines += [
            "",
            "Held-out loss of the EMA weights (fixed held-out crops, fixed t spread over the "
            "schedule, fixed noise):",
            "",
            "| step | " + " | ".join(str(r["step"]) for r in picks) + " |",
            "|---|" + "---|" * len(picks),
            "| held-out loss | " + " | ".join(f"{r['heldout_loss']:.4f}" for r in picks) + " |",
        ]
    if has_curve:
        lines += ["", f"![loss curve]({CURVE_FILE})"]
    if notes:
        lines += ["", "## Run", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in notes.items()]
    lines += ["", "## Quality metrics", ""]
    if eval_report:
        lines += [
            f"`encore eval`: {eval_report.get('n')} clips per set, {eval_report.get('width')} frames, "
            f"{eval_report.get('steps')} DDIM steps, variation strength {eval_report.get('strength')}, "
            f"seed {eval_report.get('seed')} ({_fmt(eval_report.get('seconds'))} s). The score is "
            "(FD_model − FD_real) / (FD_untrained − FD_real): 0 is as close as two real held-out "
            "sets, 1 no better than an untrained model.",
            "",
            "| set | FD | KD | score | diversity | NN-train |",
            "|---|---|---|---|---|---|",
        ]
        for r in eval_report.get("rows", []):
            lines.append(f"| {r['name']} | {_fmt(r.get('fd'))} | {_fmt(r.get('kd'))} | "
                         f"{_fmt(r.get('score'), 3)} | {_fmt(r.get('diversity'))} | {_fmt(r.get('nn_train'))} |")
    else:
        lines.append("Not evaluated yet: run `encore eval --model <this folder> --corpus <corpus> --json "
                     "eval.json --pictures pictures` and export again with `--eval eval.json`.")
    if pictures:
        lines += ["", "## Pictures", "",
                  "Spectrograms from the evaluation (low frequencies at the bottom, 1 pixel = 1 mel "
                  "bin × 1 frame):", ""]
        lines += [f"- `{PICTURES_DIR}/{p}`" for p in pictures]
    lines += [
        "",
        "## Data and licences",
        "",
        "- **Corpus:** rendered by `encore corpus build` from the scores that ship with `music21` "
        "(BSD-3-Clause package; its `corpus/license.txt`: encodings distributed with their encoders' "
        "permission, *possibly with restrictions on commercial use*; the works are public domain) "
        "with `tinysoundfont` (MIT) and the `TimGM6mb.sf2` soundfont (GNU GPL v2, not redistributed). "
        "See docs/corpus.md.",
        "- **Weights:** trained by the encore project; released under the project's licence (MIT).",
        "",
    ]
    return "\n".join(lines)
