"""Initial schema: users, songs, clips, listening, ratings, data set, versions, jobs.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 13:48:21.361550

Each table is one function returning its columns and constraints (in the order they were
first written, which is the order of the CREATE TABLE statement), and ``_INDEXES`` lists its
indexes; ``upgrade`` creates the tables in order and ``downgrade`` drops them in reverse. The
helpers below are this migration's own (a migration never imports encore's code), so that the
schema it creates stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON on SQLite, JSONB on PostgreSQL (encore.store.base.JSONType).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
AT = sa.DateTime(timezone=True)  # encore.store.base.UTCDateTime
ID = "id"


def _col(name: str, type_: Any, *, null: bool = False) -> sa.Column:
    return sa.Column(name, type_, nullable=null)


def _id() -> sa.Column:
    return _col(ID, sa.Integer())


def _enum(name: str, *values: str) -> sa.Enum:
    """A string column of one of ``values`` (VARCHAR(32), no native enum, no CHECK)."""
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*(columns or (ID,)), name=op.f(f"pk_{table}"))


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _check(table: str, name: str, condition: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(condition, name=op.f(f"ck_{table}_{name}"))


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    """``table.column`` references ``target.id``."""
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def _jobs() -> list[Any]:
    t = "jobs"
    return [
        _id(),
        _col("kind", sa.String(length=64)),
        _col("queue", _enum("queuename", "generate", "train")),
        _col("status", _enum("jobstatus", "queued", "running", "done", "failed")),
        _col("payload", JSON),
        _col("progress", sa.Double()),
        _col("message", sa.String(length=500), null=True),
        _col("error", sa.Text(), null=True),
        _col("attempts", sa.Integer()),
        _col("max_attempts", sa.Integer()),
        _col("worker_id", sa.String(length=200), null=True),
        _col("created_at", AT),
        *(
            _col(f"{when}_at", AT, null=True)
            for when in ("enqueued", "started", "heartbeat", "finished")
        ),
        _check(t, "attempts_nonnegative", "attempts >= 0"),
        _check(t, "progress_range", "progress >= 0 AND progress <= 1"),
        _pk(t),
    ]


def _model_versions() -> list[Any]:
    t = "model_versions"
    return [
        _id(),
        _col("name", sa.String(length=32)),
        _col("folder", sa.String(length=1024)),
        _col("parent_id", sa.Integer(), null=True),
        _col("status", _enum("versionstatus", "draft", "active", "retired")),
        _col("ab_weight", sa.Double()),
        _col("metrics", JSON),
        _col("notes", sa.Text(), null=True),
        _col("created_at", AT),
        _col("activated_at", AT, null=True),
        _col("retired_at", AT, null=True),
        _check(t, "ab_weight_nonnegative", "ab_weight >= 0"),
        _fk(t, "parent_id", t, "RESTRICT"),
        _pk(t),
        _unique(t, "name"),
    ]


def _users() -> list[Any]:
    t = "users"
    return [
        _id(),
        _col("email", sa.String(length=320)),
        _col("display_name", sa.String(length=100)),
        _col("password_hash", sa.String(length=255)),
        _col("role", _enum("userrole", "listener", "operator")),
        _col("active", sa.Boolean()),
        _col("rater_id", sa.String(length=32)),
        _col("created_at", AT),
        _pk(t),
        _unique(t, "email"),
        _unique(t, "rater_id"),
    ]


def _clips() -> list[Any]:
    t = "clips"
    return [
        _id(),
        _col("kind", _enum("clipkind", "generated", "dataset")),
        _col("status", _enum("clipstatus", "pending", "ready", "failed")),
        _col("model_version_id", sa.Integer(), null=True),
        _col("seed", sa.BigInteger(), null=True),
        _col("steps", sa.Integer(), null=True),
        _col("start_step", sa.Integer(), null=True),
        *(_col(name, sa.Double(), null=True) for name in ("strength", "eta", "seconds")),
        *(_col(f"{k}_key", sa.String(length=255), null=True) for k in ("audio", "image", "mel")),
        _col("representation", JSON, null=True),
        *(_col(n, sa.Double(), null=True) for n in ("similarity", "rating_score", "confidence")),
        _col("job_id", sa.Integer(), null=True),
        _col("created_at", AT),
        _col("ready_at", AT, null=True),
        *(
            _check(t, f"{name}_range", f"{name} IS NULL OR ({name} >= 0 AND {name} <= 1)")
            for name in ("confidence", "similarity")
        ),
        _fk(t, "job_id", "jobs", "SET NULL"),
        _fk(t, "model_version_id", "model_versions", "RESTRICT"),
        _pk(t),
    ]


def _invitations() -> list[Any]:
    t = "invitations"
    return [
        _id(),
        _col("code_hash", sa.String(length=128)),
        _col("role", _enum("userrole", "listener", "operator")),
        _col("created_by_id", sa.Integer(), null=True),
        _col("used_by_id", sa.Integer(), null=True),
        _col("created_at", AT),
        _col("expires_at", AT),
        _col("used_at", AT, null=True),
        _fk(t, "created_by_id", "users", "SET NULL"),
        _fk(t, "used_by_id", "users", "SET NULL"),
        _pk(t),
        _unique(t, "code_hash"),
    ]


def _login_sessions() -> list[Any]:
    t = "login_sessions"
    return [
        _id(),
        _col("token_hash", sa.String(length=128)),
        _col("user_id", sa.Integer()),
        _col("csrf_token", sa.String(length=128)),
        _col("created_at", AT),
        _col("expires_at", AT),
        _col("last_seen_at", AT, null=True),
        _fk(t, "user_id", "users", "CASCADE"),
        _pk(t),
        _unique(t, "token_hash"),
    ]


def _rater_reputations() -> list[Any]:
    t = "rater_reputations"
    return [
        _col("user_id", sa.Integer()),
        _col("weight", sa.Double()),
        _col("bias", sa.Double()),
        _col("noise", sa.Double(), null=True),
        _col("flagged", sa.Boolean()),
        _col("reasons", JSON),
        _col("rating_count", sa.Integer()),
        _col("updated_at", AT),
        _check(t, "weight_range", "weight >= 0 AND weight <= 1"),
        _fk(t, "user_id", "users", "CASCADE"),
        _pk(t, "user_id"),
    ]


def _songs() -> list[Any]:
    t = "songs"
    return [
        _id(),
        _col("owner_id", sa.Integer()),
        _col("title", sa.String(length=200)),
        _col("blob_key", sa.String(length=255)),
        _col("content_type", sa.String(length=100)),
        _col("duration_seconds", sa.Double()),
        _col("sample_rate", sa.Integer()),
        _col("checksum_sha256", sa.String(length=64)),
        _col("status", _enum("songstatus", "pending", "ready", "failed")),
        _col("mel_key", sa.String(length=255), null=True),
        _col("representation", JSON, null=True),
        _col("job_id", sa.Integer(), null=True),
        _col("created_at", AT),
        _fk(t, "job_id", "jobs", "SET NULL"),
        _fk(t, "owner_id", "users", "CASCADE"),
        _pk(t),
        _unique(t, "owner_id", "checksum_sha256"),
    ]


def _training_runs() -> list[Any]:
    t = "training_runs"
    return [
        _id(),
        _col("parent_version_id", sa.Integer()),
        _col("version_id", sa.Integer(), null=True),
        _col("status", _enum("trainingstatus", "queued", "running", "done", "failed")),
        *(_col(name, JSON) for name in ("settings", "training_set", "loss_curve")),
        _col("progress", sa.Double()),
        _col("error", sa.Text(), null=True),
        _col("job_id", sa.Integer(), null=True),
        _col("created_at", AT),
        _col("started_at", AT, null=True),
        _col("finished_at", AT, null=True),
        _check(t, "progress_range", "progress >= 0 AND progress <= 1"),
        _fk(t, "job_id", "jobs", "SET NULL"),
        _fk(t, "parent_version_id", "model_versions", "RESTRICT"),
        _fk(t, "version_id", "model_versions", "SET NULL"),
        _pk(t),
        _unique(t, "version_id"),
    ]


def _clip_inputs() -> list[Any]:
    t = "clip_inputs"
    return [
        _col("clip_id", sa.Integer()),
        _col("position", sa.Integer()),
        _col("song_id", sa.Integer()),
        _col("weight", sa.Double()),
        _fk(t, "clip_id", "clips", "CASCADE"),
        _fk(t, "song_id", "songs", "RESTRICT"),
        _pk(t, "clip_id", "position"),
    ]


def _dataset_entries() -> list[Any]:
    t = "dataset_entries"
    reasons = ("duplicate", "too_old", "retired_version", "capacity", "manual")
    return [
        _id(),
        _col("clip_id", sa.Integer()),
        _col("rating_score", sa.Double()),
        _col("confidence", sa.Double()),
        _col("added_at", AT),
        _col("removed_at", AT, null=True),
        _col("removal_reason", _enum("removalreason", *reasons), null=True),
        _col("removal_detail", sa.Text(), null=True),
        _col("replaced_by_id", sa.Integer(), null=True),
        _check(t, "confidence_range", "confidence >= 0 AND confidence <= 1"),
        _fk(t, "clip_id", "clips", "CASCADE"),
        _fk(t, "replaced_by_id", t, "SET NULL"),
        _pk(t),
    ]


def _deliveries() -> list[Any]:
    t = "deliveries"
    return [
        _id(),
        _col("clip_id", sa.Integer()),
        _col("listener_id", sa.Integer()),
        _col("request_id", sa.String(length=64)),
        _col("branch", _enum("dispatchbranch", "baseline", "generate")),
        _col("input_song_ids", JSON),
        _col("delivered_at", AT),
        _col("opened_at", AT, null=True),
        _col("listened_seconds", sa.Double()),
        _fk(t, "clip_id", "clips", "CASCADE"),
        _fk(t, "listener_id", "users", "CASCADE"),
        _pk(t),
        _unique(t, "id", "clip_id", "listener_id"),
    ]


def _listen_events() -> list[Any]:
    t = "listen_events"
    return [
        _id(),
        _col("delivery_id", sa.Integer()),
        _col("sequence", sa.Integer(), null=True),
        _col("ranges", JSON),
        _col("listened_seconds", sa.Double()),
        _col("final", sa.Boolean()),
        _col("reported_at", AT),
        _fk(t, "delivery_id", "deliveries", "CASCADE"),
        _pk(t),
        _unique(t, "delivery_id", "sequence"),
    ]


def _ratings() -> list[Any]:
    t = "ratings"
    delivery = ("id", "clip_id", "listener_id")
    return [
        _id(),
        _col("delivery_id", sa.Integer()),
        _col("clip_id", sa.Integer()),
        _col("listener_id", sa.Integer()),
        _col("half_stars", sa.SmallInteger()),
        _col("listened_fraction", sa.Double()),
        _col("counted", sa.Boolean()),
        _col("created_at", AT),
        _col("updated_at", AT, null=True),
        _check(t, "half_stars_range", "half_stars >= 2 AND half_stars <= 10"),
        _check(t, "listened_fraction_range", "listened_fraction >= 0 AND listened_fraction <= 1"),
        _fk(t, "clip_id", "clips", "CASCADE"),
        sa.ForeignKeyConstraint(
            ["delivery_id", "clip_id", "listener_id"],
            [f"deliveries.{name}" for name in delivery],
            name="fk_ratings_delivery",
            ondelete="CASCADE",
        ),
        _fk(t, "listener_id", "users", "CASCADE"),
        _pk(t),
        _unique(t, "delivery_id"),
        _unique(t, "listener_id", "clip_id"),
    ]


#: An index: a column (named ``ix_<table>_<column>`` by the naming convention), or
#: ``(name, columns, options)``.
IndexSpec = str | tuple[str, list[str], dict[str, Any]]

_ACTIVE_ENTRY = sa.text("removed_at IS NULL")

#: The tables in the order they are created, with their indexes in the order they are created.
_TABLES: list[tuple[str, Callable[[], list[Any]], list[IndexSpec]]] = [
    (
        "jobs",
        _jobs,
        [
            "kind",
            ("ix_jobs_status_heartbeat_at", ["status", "heartbeat_at"], {}),
            ("ix_jobs_status_queue", ["status", "queue"], {}),
        ],
    ),
    ("model_versions", _model_versions, ["status"]),
    ("users", _users, []),
    ("clips", _clips, ["created_at", ("ix_clips_kind_status", ["kind", "status"], {}),
                       "model_version_id"]),
    ("invitations", _invitations, []),
    ("login_sessions", _login_sessions, ["expires_at", "user_id"]),
    ("rater_reputations", _rater_reputations, ["flagged"]),
    ("songs", _songs, [("ix_songs_owner_id_created_at", ["owner_id", "created_at"], {})]),
    ("training_runs", _training_runs, ["parent_version_id", "status"]),
    ("clip_inputs", _clip_inputs, ["song_id"]),
    (
        "dataset_entries",
        _dataset_entries,
        [
            "removed_at",
            (
                "uq_dataset_entries_active_clip_id",
                ["clip_id"],
                {"unique": True, "sqlite_where": _ACTIVE_ENTRY, "postgresql_where": _ACTIVE_ENTRY},
            ),
        ],
    ),
    (
        "deliveries",
        _deliveries,
        [
            "clip_id",
            ("ix_deliveries_listener_id_delivered_at", ["listener_id", "delivered_at"], {}),
            "request_id",
        ],
    ),
    ("listen_events", _listen_events, ["delivery_id"]),
    ("ratings", _ratings, ["clip_id", "created_at"]),
]


def _index(batch_op: Any, table: str, spec: IndexSpec) -> tuple[Any, list[str], dict[str, Any]]:
    """The name, columns and options of one index of ``table``."""
    if isinstance(spec, str):
        return batch_op.f(f"ix_{table}_{spec}"), [spec], {}
    return spec


def upgrade() -> None:
    for table, items, indexes in _TABLES:
        op.create_table(table, *items())
        if indexes:
            with op.batch_alter_table(table, schema=None) as batch_op:
                for spec in indexes:
                    name, columns, options = _index(batch_op, table, spec)
                    batch_op.create_index(name, columns, **{"unique": False, **options})


def downgrade() -> None:
    for table, _items, indexes in reversed(_TABLES):
        if indexes:
            with op.batch_alter_table(table, schema=None) as batch_op:
                for spec in reversed(indexes):
                    name, _columns, options = _index(batch_op, table, spec)
                    where = {k: v for k, v in options.items() if k.endswith("_where")}
                    batch_op.drop_index(name, **where)
        op.drop_table(table)
