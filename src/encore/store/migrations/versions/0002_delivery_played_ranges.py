"""The union of a delivery's played ranges, kept on the delivery.

A listening heartbeat then reads and writes one row instead of re-reading every earlier
report of the delivery. Existing deliveries get the union of their listen events' ranges
(valid ranges only, cut to the clip, merged).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 14:40:00
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from encore.store.migrations._ops import JSON, Added, add_columns, drop_columns

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDED = [
    Added("deliveries", [
        sa.Column("played_ranges", JSON, nullable=False, server_default=sa.text("'[]'")),
    ]),
]


def _merged(ranges: list, clip_seconds: float) -> list[list[float]]:
    """Valid ranges cut to [0, clip_seconds], merged (a frozen copy of the rule in
    encore.feedback.listening, so that this migration never changes behaviour)."""
    valid = []
    for item in ranges:
        try:
            start, end = (float(v) for v in item)
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            continue
        lo, hi = max(start, 0.0), min(end, clip_seconds)
        if hi > lo:
            valid.append((lo, hi))
    merged: list[list[float]] = []
    for lo, hi in sorted(valid):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def upgrade() -> None:
    add_columns(ADDED)
    bind = op.get_bind()
    deliveries = sa.table(
        "deliveries", sa.column("id", sa.Integer), sa.column("clip_id", sa.Integer),
        sa.column("played_ranges", JSON),
    )
    clips = sa.table("clips", sa.column("id", sa.Integer), sa.column("seconds", sa.Double))
    events = sa.table(
        "listen_events", sa.column("id", sa.Integer), sa.column("delivery_id", sa.Integer),
        sa.column("ranges", JSON),
    )
    rows = bind.execute(
        sa.select(events.c.delivery_id, events.c.ranges, clips.c.seconds)
        .join(deliveries, deliveries.c.id == events.c.delivery_id)
        .join(clips, clips.c.id == deliveries.c.clip_id)
        .order_by(events.c.delivery_id, events.c.id)
    ).all()
    by_delivery: dict[int, tuple[list, float]] = {}
    for delivery_id, ranges, seconds in rows:
        if isinstance(ranges, str):
            ranges = json.loads(ranges)
        held = by_delivery.setdefault(delivery_id, ([], float(seconds or 0.0)))
        held[0].extend(ranges or [])
    for delivery_id, (ranges, seconds) in by_delivery.items():
        if seconds > 0:
            bind.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(played_ranges=_merged(ranges, seconds))
            )


def downgrade() -> None:
    drop_columns(ADDED)
