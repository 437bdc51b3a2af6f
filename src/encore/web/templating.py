"""The Jinja environment of the pages: filters for durations and dates, static URLs."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates

from encore.units import format_duration  # one rule for every duration: m:ss, rounded down

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


def format_date(value: dt.datetime | None) -> str:
    """A short UTC timestamp, ``2026-01-31 14:05``."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M")


def format_number(value: float | None, digits: int = 2) -> str:
    """A float with ``digits`` decimals (``"—"`` when missing or not finite)."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    return f"{float(value):.{digits}f}"


def loss_curve_svg(rows: list[dict[str, Any]] | None, width: int = 400, height: int = 110) -> dict[str, Any]:
    """Polyline points of a training curve for an inline SVG (no script, no plot library).

    ``rows`` are the run's loss-log rows: ``{"step", "loss"}`` for training batches and
    ``{"step", "heldout_clip_loss"}`` for held-out evaluations (either may be missing).
    Returns ``{"train", "heldout"}`` point strings (``""`` when absent), the loss range and
    the last step.
    """
    series: dict[str, list[tuple[float, float]]] = {"train": [], "heldout": []}
    for row in rows or []:
        step = row.get("step")
        if not isinstance(step, int | float):
            continue
        for name, key in (("train", "loss"), ("heldout", "heldout_clip_loss")):
            value = row.get(key)
            if isinstance(value, list | tuple):  # (before, after) pairs: take the latest
                value = next((v for v in reversed(value) if v is not None), None)
            if isinstance(value, int | float) and value == value:
                series[name].append((float(step), float(value)))
    points = series["train"] + series["heldout"]
    if not points:
        return {"train": "", "heldout": "", "lo": None, "hi": None, "steps": 0}
    x_hi = max(p[0] for p in points) or 1.0
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    span = (hi - lo) or 1.0

    def fmt(data: list[tuple[float, float]]) -> str:
        return " ".join(
            f"{x / x_hi * (width - 8) + 4:.1f},{height - 4 - (y - lo) / span * (height - 8):.1f}"
            for x, y in data
        )

    return {"train": fmt(series["train"]), "heldout": fmt(series["heldout"]), "lo": lo, "hi": hi,
            "steps": int(x_hi), "width": width, "height": height}


@lru_cache(maxsize=64)
def _static_version(name: str) -> str:
    path = STATIC_DIR / name
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=4).hexdigest()
    except OSError:
        return "0"


def static_url(name: str) -> str:
    """URL of a file in ``web/static`` with a content hash, so browsers refetch changes."""
    return f"/static/{name}?v={_static_version(name)}"


def make_templates() -> Jinja2Templates:
    """The page templates (autoescaped) with encore's filters and globals."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.filters["duration"] = format_duration
    env.filters["date"] = format_date
    env.filters["num"] = format_number
    env.globals["static"] = static_url
    env.globals["loss_curve_svg"] = loss_curve_svg
    return templates
