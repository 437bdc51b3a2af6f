"""All ORM models. Importing this package registers every table on ``Base.metadata``."""

from __future__ import annotations

from encore.store.models.clips import Clip, ClipInput, Delivery, ListenEvent, Rating
from encore.store.models.dataset import DatasetEntry
from encore.store.models.jobs import Job
from encore.store.models.songs import Song
from encore.store.models.users import (
    Invitation,
    LoginSession,
    PasswordReset,
    RaterReputation,
    User,
)
from encore.store.models.versions import ModelVersion, TasteModel, TrainingRun

__all__ = [
    "Clip",
    "ClipInput",
    "DatasetEntry",
    "Delivery",
    "Invitation",
    "Job",
    "ListenEvent",
    "LoginSession",
    "ModelVersion",
    "PasswordReset",
    "Rating",
    "RaterReputation",
    "Song",
    "TasteModel",
    "TrainingRun",
    "User",
]
