"""Options shared by the migration environment and the schema check."""

from __future__ import annotations

from typing import Any

from encore.store.base import UTCDateTime


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave alone tables that are not encore's (e.g. a Huey queue in the same database)."""
    return not (type_ == "table" and reflected and compare_to is None)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render encore's column types as plain SQLAlchemy types, so migrations import none
    of encore's code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


MIGRATION_OPTIONS: dict[str, Any] = {
    "render_as_batch": True,  # SQLite cannot ALTER most things: move-and-copy instead
    "compare_type": True,
    "compare_server_default": False,
    "include_object": include_object,
    "render_item": render_item,
}
