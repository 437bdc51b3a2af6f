"""Account controls: song sharing and deletion, account deletion, password resets, served audio.

- ``songs.shared``: whether music made from the song may be played to other listeners and
  join the data set (the per-song opt-out; existing songs stay shared, as before).
- ``songs.deleted_at`` / ``users.deleted_at``: a deleted song or account keeps an anonymous
  row (its blobs are deleted) so that the ratings it took part in stay in the report.
- ``songs.size_bytes``: the upload's size, for the per-account storage quota (null for
  songs stored before; their blob is measured).
- ``users.sessions_valid_after``: sessions created before it are void (password change,
  "sign out everywhere", deactivation).
- ``deliveries.audio_bytes_served`` / ``audio_bytes_total``: the furthest byte of the
  clip's audio served to the listener and the audio's size; reported listening cannot go
  past the audio it covers.
- ``password_resets``: operator-issued one-time reset links (only the token's hash).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from encore.store.migrations._ops import Added, add_columns, drop_columns

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ADDED = [
    Added("songs", [
        sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
    ]),
    Added("users", [
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sessions_valid_after", sa.DateTime(timezone=True), nullable=True),
    ]),
    Added("deliveries", [
        sa.Column("audio_bytes_served", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("audio_bytes_total", sa.BigInteger(), nullable=False, server_default="0"),
    ]),
]


def upgrade() -> None:
    add_columns(ADDED)
    op.create_table(
        "password_resets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_password_resets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_password_resets_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_resets")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_resets_token_hash")),
    )
    op.create_index(op.f("ix_password_resets_user_id"), "password_resets", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_password_resets_user_id"), table_name="password_resets")
    op.drop_table("password_resets")
    drop_columns(ADDED)
