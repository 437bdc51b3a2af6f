"""Taste models, best-of-n candidates and paired deliveries.

- ``taste_models``: fitted snapshots of the listeners' taste model (parameters in a blob).
- ``songs.descriptors`` / ``clips.descriptors``: the audio descriptors the taste model reads.
- ``clips.request_id``, ``candidate_index``, ``served``, ``predicted_stars``: the n candidates
  generated for one request; the unserved ones stay (``served`` false) for training.
- ``deliveries.selection``, ``propensity``, ``taste_model_id``, ``predicted_stars``: how the
  served candidate was chosen (``taste`` pick or uniform ``explore``) and with what
  probability, so that ratings stay an unbiased sample.
- ``deliveries.pair_id``, ``pair_version_id``, ``pair_open``: paired deliveries (the same
  listener, songs, seeds and strength served later by another version).
- ``model_versions.taste_selection``: whether a version serves with the taste model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 17:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from encore.store.migrations._ops import JSON, Added, ForeignKey, add_columns, drop_columns

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDED = [
    Added("songs", [sa.Column("descriptors", JSON, nullable=True)]),
    Added("clips", [
        sa.Column("descriptors", JSON, nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("candidate_index", sa.Integer(), nullable=True),
        sa.Column("served", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("predicted_stars", sa.Double(), nullable=True),
    ], indexes=["request_id"]),
    Added("deliveries", [
        sa.Column("selection", sa.String(length=16), nullable=True),
        sa.Column("propensity", sa.Double(), nullable=True),
        sa.Column("taste_model_id", sa.Integer(), nullable=True),
        sa.Column("predicted_stars", sa.Double(), nullable=True),
        sa.Column("pair_id", sa.String(length=64), nullable=True),
        sa.Column("pair_version_id", sa.Integer(), nullable=True),
        sa.Column("pair_open", sa.Boolean(), nullable=False, server_default=sa.false()),
    ], indexes=["pair_id"], foreign_keys=[
        ForeignKey("taste_model_id", "taste_models", ondelete="SET NULL"),
        ForeignKey("pair_version_id", "model_versions", ondelete="SET NULL"),
    ]),
    Added("model_versions", [
        sa.Column("taste_selection", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]),
]


def upgrade() -> None:
    op.create_table(
        "taste_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("n_ratings", sa.Integer(), nullable=False),
        sa.Column("n_listeners", sa.Integer(), nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taste_models")),
    )
    op.create_index(op.f("ix_taste_models_created_at"), "taste_models", ["created_at"])
    add_columns(ADDED)


def downgrade() -> None:
    drop_columns(ADDED)
    op.drop_index(op.f("ix_taste_models_created_at"), table_name="taste_models")
    op.drop_table("taste_models")
