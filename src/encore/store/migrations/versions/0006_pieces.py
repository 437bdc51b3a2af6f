"""Longer pieces and the part of the song they start from (issue 19).

- ``deliveries.piece_seconds``: the length the listener asked for (null: rows from before,
  which were ``ENCORE_CLIP_SECONDS`` long); ``deliveries.start_seconds``: where in the song
  the listener asked the piece to start (null: the automatic choice, the loudest stretch);
  ``deliveries.loop``: a piece whose end continues into its beginning.
- ``clips.loop``: the clip is (to be) rendered as a loop.
- ``clip_inputs.offset_seconds``: where in the song a clip starts (before rendering the start
  asked for, null = automatic; after, where it really started).
- ``songs.spectrogram_key``: the song's whole spectrogram as a PNG (made once, on first view).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 07:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from encore.store.migrations._ops import Added, add_columns, drop_columns

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ADDED = [
    Added("deliveries", [
        sa.Column("piece_seconds", sa.Double(), nullable=True),
        sa.Column("start_seconds", sa.Double(), nullable=True),
        sa.Column("loop", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]),
    Added("clips", [sa.Column("loop", sa.Boolean(), nullable=False, server_default=sa.false())]),
    Added("clip_inputs", [sa.Column("offset_seconds", sa.Double(), nullable=True)]),
    Added("songs", [sa.Column("spectrogram_key", sa.String(length=255), nullable=True)]),
]


def upgrade() -> None:
    add_columns(ADDED)


def downgrade() -> None:
    drop_columns(ADDED)
