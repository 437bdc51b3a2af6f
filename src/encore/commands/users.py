"""``encore users add|list|invite|set-password|deactivate|reactivate``: accounts without the web."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from encore.commands._context import service_context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help="manage accounts (operators)")
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("email")
    add.add_argument("--operator", action="store_true", help="give the operator role")
    add.add_argument("--name", default="", help="display name")
    add.add_argument(
        "--password", help="password (asked for when omitted; avoid it on shared machines)"
    )
    add.set_defaults(handler=add_user)
    lst = sub.add_parser("list", help="list accounts")
    lst.set_defaults(handler=list_users)
    inv = sub.add_parser("invite", help="print a one-time sign-up code")
    inv.set_defaults(handler=invite)
    pw = sub.add_parser(
        "set-password", help="set an account's password (e.g. a lost operator password); "
        "its sessions end"
    )
    pw.add_argument("email")
    pw.add_argument(
        "--password", help="the new password (asked for when omitted; avoid it on shared machines)"
    )
    pw.set_defaults(handler=set_password)
    for name, active, text in (
        ("deactivate", False, "block an account from signing in; its sessions end"),
        ("reactivate", True, "allow a deactivated account to sign in again"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("email")
        p.set_defaults(handler=set_active, active=active)


def add_user(args: argparse.Namespace) -> int:
    from encore.services import accounts
    from encore.store import UserRole

    password = args.password or getpass.getpass(f"password for {args.email}: ")
    ctx = service_context(queues=False)
    user = accounts.create_user(
        ctx, email=args.email, password=password, display_name=args.name,
        role=UserRole.OPERATOR if args.operator else UserRole.LISTENER,
    )
    print(f"created {user.role} {user.email} (id {user.id})")  # noqa: T201
    return 0


def list_users(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from encore.store import User

    ctx = service_context(queues=False)
    with ctx.reading() as session:
        for u in session.scalars(sa.select(User).order_by(User.id)):
            state = "" if u.active else " (deactivated)"
            print(f"{u.id:5d}  {u.role.value:9s} {u.email}  rater {u.rater_id}{state}")  # noqa: T201
    return 0


def invite(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from encore.errors import NotFound
    from encore.services import accounts
    from encore.store import User, UserRole

    ctx = service_context(queues=False)
    with ctx.reading() as session:
        operator = session.scalar(
            sa.select(User).where(User.role == UserRole.OPERATOR).order_by(User.id).limit(1)
        )
    if operator is None:
        raise NotFound("no operator account yet: run `encore serve` once or `encore users add --operator`")
    print(accounts.create_invitation(ctx, operator=operator))  # noqa: T201
    return 0


def set_password(args: argparse.Namespace) -> int:
    from encore.services import accounts

    password = args.password or getpass.getpass(f"new password for {args.email}: ")
    ctx = service_context(queues=False)
    user = accounts.set_password(ctx, email=args.email, password=password)
    print(f"password of {user.email} set; its sessions are signed out")  # noqa: T201
    return 0


def set_active(args: argparse.Namespace) -> int:
    from encore.services import accounts

    ctx = service_context(queues=False)
    user = accounts.set_active_by_email(ctx, email=args.email, active=args.active)
    state = "reactivated" if user.active else "deactivated and signed out everywhere"
    print(f"{user.email} {state}")  # noqa: T201
    return 0
