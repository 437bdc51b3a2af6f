"""The solver a clip was rendered with (``clips.sampler``), so that a stored clip replays
exactly whatever ``ENCORE_SAMPLER`` says later. Rows from before are DDIM's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from encore.store.migrations._ops import Added, add_columns, drop_columns

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ADDED = [Added("clips", [sa.Column("sampler", sa.String(length=16), nullable=True)])]


def upgrade() -> None:
    add_columns(ADDED)
    op.execute("UPDATE clips SET sampler = 'ddim' WHERE kind = 'generated'")


def downgrade() -> None:
    drop_columns(ADDED)
