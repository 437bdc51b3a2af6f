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
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


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
    with op.batch_alter_table("songs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("descriptors", JSON, nullable=True))
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("descriptors", JSON, nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("candidate_index", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("served", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("predicted_stars", sa.Double(), nullable=True))
        batch_op.create_index(batch_op.f("ix_clips_request_id"), ["request_id"])
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("selection", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("propensity", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("taste_model_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("predicted_stars", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("pair_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pair_version_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("pair_open", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(batch_op.f("ix_deliveries_pair_id"), ["pair_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_taste_model_id_taste_models"), "taste_models",
            ["taste_model_id"], ["id"], ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_pair_version_id_model_versions"), "model_versions",
            ["pair_version_id"], ["id"], ondelete="SET NULL",
        )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("taste_selection", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("taste_selection")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_pair_version_id_model_versions"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_taste_model_id_taste_models"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_deliveries_pair_id"))
        for name in ("pair_open", "pair_version_id", "pair_id", "predicted_stars",
                     "taste_model_id", "propensity", "selection"):
            batch_op.drop_column(name)
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clips_request_id"))
        for name in ("predicted_stars", "served", "candidate_index", "request_id", "descriptors"):
            batch_op.drop_column(name)
    with op.batch_alter_table("songs", schema=None) as batch_op:
        batch_op.drop_column("descriptors")
    op.drop_index(op.f("ix_taste_models_created_at"), table_name="taste_models")
    op.drop_table("taste_models")
