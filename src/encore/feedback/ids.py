"""The id type of the loop's logic.

Clips, songs, raters and model versions are named by ids the services choose (database
integers in the platform; the tests also use strings). The logic keeps them in sets and
dict keys and, wherever a result must not depend on input order (ties go to the smaller
id, versions are listed in sorted order), sorts them. :class:`SortableId` says exactly
that: hashable and ordered by ``<``. ``int``, ``str`` and ``uuid.UUID`` all qualify.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

__all__ = ["IdT", "SortableId"]


class SortableId(Protocol):
    """An id that is hashable and ordered by ``<`` (ints, strings, UUIDs)."""

    def __hash__(self) -> int: ...

    def __lt__(self, other: Any, /) -> bool: ...


IdT = TypeVar("IdT", bound=SortableId)
"""One kind of :class:`SortableId`, kept through a function (what goes in comes out)."""
