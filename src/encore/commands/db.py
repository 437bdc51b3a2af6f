"""``encore db``: database migrations (upgrade, current revision, schema check)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="database migrations")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    up = sub.add_parser("upgrade", help="migrate the database to the newest schema")
    up.add_argument("--url", help="database URL (default: the configured one)")
    up.add_argument("--revision", default="head")
    up.set_defaults(handler=_upgrade)

    cur = sub.add_parser("current", help="print the database's schema revision")
    cur.add_argument("--url", help="database URL (default: the configured one)")
    cur.set_defaults(handler=_current)

    check = sub.add_parser(
        "check", help="compare the database schema with the models (exit 1 if they differ)"
    )
    check.add_argument("--url", help="database URL (default: the configured one)")
    check.set_defaults(handler=_check)

    rev = sub.add_parser(
        "revision",
        help="autogenerate a new migration from the models (developers; review the file)",
    )
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--url", help="a database at the current head to compare against")
    rev.set_defaults(handler=_revision)


def _url(args: argparse.Namespace) -> str:
    from encore.config import get_settings

    return str(args.url or get_settings().resolved_database_url)


def _on_engine(args: argparse.Namespace, use: Callable[[Engine], T]) -> T:
    """``use(engine)`` on an engine for the database of ``--url``, disposed afterwards."""
    from encore.store.db import make_engine

    engine = make_engine(_url(args))
    try:
        return use(engine)
    finally:
        engine.dispose()


def _upgrade(args: argparse.Namespace) -> int:
    from encore.store.db import upgrade

    upgrade(_url(args), args.revision)
    print(f"database upgraded to {args.revision}")  # noqa: T201
    return 0


def _current(args: argparse.Namespace) -> int:
    from encore.store.db import current_revision, head_revision

    current = _on_engine(args, current_revision)
    print(f"current: {current or '(empty database)'}  head: {head_revision()}")  # noqa: T201
    return 0


def _check(args: argparse.Namespace) -> int:
    from encore.store.db import schema_diff

    diff = _on_engine(args, schema_diff)
    for item in diff:
        print(item)  # noqa: T201
    print("schema matches the models" if not diff else f"{len(diff)} differences")  # noqa: T201
    return 1 if diff else 0


def _revision(args: argparse.Namespace) -> int:
    from alembic import command

    from encore.store.db import alembic_config, upgrade

    url = _url(args)
    upgrade(url)
    command.revision(alembic_config(url), message=args.message, autogenerate=True)
    return 0
