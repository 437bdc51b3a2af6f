"""What the migrations after 0001 do to tables that already exist, written once.

Most of them add columns to existing tables (in batch mode, for SQLite), sometimes with an
index or a foreign key on a new column, and their ``downgrade`` undoes it in reverse. Each such
migration lists its tables as :class:`Added` and calls :func:`add_columns` and
:func:`drop_columns` with the list.

This module is part of the migrations' history, not of encore's code: released migrations run
it, so what it emits must never change (add to it; do not alter what it does). It imports
nothing of encore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: JSON on SQLite, JSONB on PostgreSQL (encore.store.base.JSONType).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


@dataclass(frozen=True)
class ForeignKey:
    """``column`` refers to ``table.id`` (constraint ``fk_<table>_<column>_<referred>``)."""

    column: str
    table: str
    ondelete: str


@dataclass(frozen=True)
class Added:
    """Columns added to the existing table ``table``, in this order; then an index on each
    column named in ``indexes`` (``ix_<table>_<column>``, not unique) and the foreign keys."""

    table: str
    columns: Sequence[sa.Column[Any]]
    indexes: Sequence[str] = ()
    foreign_keys: Sequence[ForeignKey] = ()

    def fk_name(self, fk: ForeignKey) -> str:
        return f"fk_{self.table}_{fk.column}_{fk.table}"


def add_columns(tables: Sequence[Added]) -> None:
    """Add the columns, then the indexes, then the foreign keys, table by table."""
    for added in tables:
        with op.batch_alter_table(added.table, schema=None) as batch_op:
            for column in added.columns:
                batch_op.add_column(column)
            for name in added.indexes:
                batch_op.create_index(batch_op.f(f"ix_{added.table}_{name}"), [name])
            for fk in added.foreign_keys:
                batch_op.create_foreign_key(
                    batch_op.f(added.fk_name(fk)), fk.table, [fk.column], ["id"],
                    ondelete=fk.ondelete,
                )


def drop_columns(tables: Sequence[Added]) -> None:
    """Undo :func:`add_columns`: the tables, and what each got, in reverse order."""
    for added in reversed(tables):
        with op.batch_alter_table(added.table, schema=None) as batch_op:
            for fk in reversed(added.foreign_keys):
                batch_op.drop_constraint(batch_op.f(added.fk_name(fk)), type_="foreignkey")
            for name in reversed(added.indexes):
                batch_op.drop_index(batch_op.f(f"ix_{added.table}_{name}"))
            for column in reversed(added.columns):
                batch_op.drop_column(column.name)
