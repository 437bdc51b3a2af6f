"""JSON shapes of the API: what each service result looks like on the wire.

Listener views carry nothing about the model version or the dispatch branch of a clip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from typing import Any

from encore.feedback import Report
from encore.services.music import DeliveryView
from encore.store import ModelVersion, Rating, Song, User


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclass_json(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def dataclass_json(obj: Any) -> dict[str, Any]:
    """A frozen dataclass of the services as a JSON object (datetimes in ISO 8601): how a
    delivery (``DeliveryView``, which says nothing of branch or version), a listening
    heartbeat's answer, a line of the history and a fine-tuning run go on the wire."""
    return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def song_json(song: Song) -> dict[str, Any]:
    """A listener's song."""
    return {
        "id": song.id,
        "title": song.title,
        "duration_seconds": round(float(song.duration_seconds), 3),
        "status": _jsonable(song.status),
        "created_at": _jsonable(song.created_at),
        "shared": bool(song.shared),
    }


def input_titles(view: DeliveryView) -> list[str]:
    """The titles of a delivery's input songs."""
    return list(view.input_titles)


def rating_json(rating: Rating) -> dict[str, Any]:
    """A stored rating: stars and the listened fraction it was given with."""
    return {
        "id": rating.id,
        "delivery_id": rating.delivery_id,
        "stars": rating.half_stars / 2,
        "listened_fraction": round(float(rating.listened_fraction), 4),
    }


def user_json(user: User) -> dict[str, Any]:
    """What the API tells a user about their own account."""
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "role": _jsonable(user.role),
    }


def user_admin_json(user: User) -> dict[str, Any]:
    """An account as the operator sees it: :func:`user_json` and its state."""
    return {
        **user_json(user),
        "active": bool(user.active),
        "rater_id": user.rater_id,
        "created_at": _jsonable(user.created_at),
    }


def version_json(version: ModelVersion) -> dict[str, Any]:
    """A model version (operator only)."""
    return {
        "id": version.id,
        "name": version.name,
        "status": _jsonable(version.status),
        "ab_weight": float(version.ab_weight),
        "parent_id": version.parent_id,
        "metrics": _jsonable(version.metrics or {}),
        "notes": version.notes,
        "created_at": _jsonable(version.created_at),
        "activated_at": _jsonable(version.activated_at),
        "retired_at": _jsonable(version.retired_at),
    }


def report_json(report: Report) -> dict[str, Any]:
    """The report: Table 1 pooled (``table``) and by dispatch branch (``by_branch``); the fair
    comparison (``headline``, ``paired``, ``same_round``, ``decomposition``, ``fresh_means``,
    ``baseline``); the served clips' guards (``served``, ``guards``); ``text``: all of it as
    ``encore report`` prints it."""
    from encore.services.report import format_report

    fair = ("headline", "paired", "same_round", "decomposition", "fresh_means", "baseline",
            "served", "guards")
    return {
        "table": dataclass_json(report.table),
        "by_branch": {str(k): dataclass_json(v) for k, v in report.by_branch.items()},
        **{name: _jsonable(getattr(report, name)) for name in fair},
        "text": format_report(report),
    }
