"""The declarative base and the column types every model shares.

- Table and constraint names follow one naming convention, so that Alembic's batch mode
  can recreate constraints on SQLite and migrations name the same thing the same way on
  every backend.
- Timestamps are timezone-aware UTC on every backend (:class:`UTCDateTime`): SQLite has no
  time zones, so values are normalised to UTC on the way in and tagged UTC on the way out.
- JSON is ``JSON`` (TEXT) on SQLite and ``JSONB`` on PostgreSQL. Assign a new value to
  persist a change; in-place mutation of a loaded list or dict is not tracked.
- Enumerations are ``StrEnum`` classes stored as their string value in a ``VARCHAR``
  without a ``CHECK`` constraint: Python validates the values, and adding a member needs
  no schema migration as long as it fits the column length.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ENUM_LENGTH = 32


def utcnow() -> dt.datetime:
    """The current time as a timezone-aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


@overload
def as_utc(t: dt.datetime) -> dt.datetime: ...


@overload
def as_utc(t: None) -> None: ...


def as_utc(t: dt.datetime | None) -> dt.datetime | None:
    """A stored time made aware: every stored time is UTC, but what SQLite returns where no
    :class:`UTCDateTime` reads it (raw SQL, an aggregate) is naive. None stays None."""
    return t if t is None or t.tzinfo else t.replace(tzinfo=dt.UTC)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend.

    Naive datetimes are refused on the way in (their zone is unknown); aware ones are
    converted to UTC. Values read back are aware and in UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use an aware UTC time")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)  # stored as UTC text without an offset
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


#: JSON column type: JSONB on PostgreSQL, JSON (text) elsewhere.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def enum_type(enum_class: type[enum.StrEnum]) -> sa.Enum:
    """A VARCHAR column type holding the values (not the names) of ``enum_class``."""
    return sa.Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=ENUM_LENGTH,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    """Declarative base of every encore table."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }
