"""Storage: database models and migrations (SQLAlchemy 2, Alembic), and blob storage.

See ``docs/store.md`` for the schema and the URLs that switch to PostgreSQL and S3.
"""

from __future__ import annotations

from encore.store.base import Base, as_utc, utcnow
from encore.store.blobs import BlobStore, make_blob_store
from encore.store.db import make_engine, make_session_factory, session_scope, upgrade
from encore.store.enqueue import enqueue_job
from encore.store.enums import (
    ClipKind,
    ClipStatus,
    DispatchBranch,
    JobStatus,
    QueueName,
    RemovalReason,
    SongStatus,
    TrainingStatus,
    UserRole,
    VersionStatus,
)
from encore.store.models import (
    Clip,
    ClipInput,
    DatasetEntry,
    Delivery,
    Invitation,
    Job,
    ListenEvent,
    LoginSession,
    ModelVersion,
    PasswordReset,
    RaterReputation,
    Rating,
    Song,
    TasteModel,
    TrainingRun,
    User,
)

__all__ = [
    "Base",
    "BlobStore",
    "Clip",
    "ClipInput",
    "ClipKind",
    "ClipStatus",
    "DatasetEntry",
    "Delivery",
    "DispatchBranch",
    "Invitation",
    "Job",
    "JobStatus",
    "ListenEvent",
    "LoginSession",
    "ModelVersion",
    "PasswordReset",
    "QueueName",
    "RaterReputation",
    "Rating",
    "RemovalReason",
    "Song",
    "SongStatus",
    "TasteModel",
    "TrainingRun",
    "TrainingStatus",
    "User",
    "UserRole",
    "VersionStatus",
    "as_utc",
    "enqueue_job",
    "make_blob_store",
    "make_engine",
    "make_session_factory",
    "session_scope",
    "upgrade",
    "utcnow",
]
