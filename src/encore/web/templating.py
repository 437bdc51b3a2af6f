"""The Jinja environment of the pages: filters for durations and dates, static URLs."""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi.templating import Jinja2Templates

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


def format_duration(seconds: float | None) -> str:
    """``m:ss`` for a number of seconds (``"—"`` when unknown)."""
    if seconds is None:
        return "—"
    total = max(int(round(float(seconds))), 0)
    return f"{total // 60}:{total % 60:02d}"


def format_date(value: dt.datetime | None) -> str:
    """A short UTC timestamp, ``2026-01-31 14:05``."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M")


def format_number(value: float | None, digits: int = 2) -> str:
    """A float with ``digits`` decimals (``"—"`` when missing)."""
    if value is None:
        return "—"
    return f"{float(value):.{digits}f}"


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
    return templates
