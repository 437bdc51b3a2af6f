"""The loss log of a run as a PNG (matplotlib is imported on use: it is slow to load)."""

from __future__ import annotations

import os
from pathlib import Path

from encore.diffusion.training.state import read_log


def plot_log(
    log_path: str | Path,
    png_path: str | Path,
    *,
    series: dict[str, str],
    title: str,
    train_label: str = "training batches (window mean)",
    log_y: bool = False,
    best_step: int | None = None,
) -> Path | None:
    """Training loss (log windows) and the evaluated figures in ``series`` against steps.

    ``series`` maps a figure's key in the log to its label; ``best_step`` draws a dotted line
    at the exported step. Written atomically; None when the log has nothing to draw.
    """
    rows = read_log(log_path)
    train = [r for r in rows if "loss" in r]
    curves = {k: [r for r in rows if r.get(k) is not None] for k in series}
    if not train and not any(curves.values()):
        return None
    import matplotlib  # deferred: matplotlib takes a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, alpha=0.6,
                color="grey", label=train_label)
    for key, pts in curves.items():
        if pts:
            ax.plot([r["step"] for r in pts], [r[key] for r in pts], "o-", ms=3, label=series[key])
    if best_step is not None:
        ax.axvline(best_step, ls=":", color="black", lw=0.8, label=f"exported (step {best_step})")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
