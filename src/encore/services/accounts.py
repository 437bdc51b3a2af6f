"""Accounts: the operator's first start, sign-up by invitation, sign-in sessions, CSRF tokens.

Passwords are hashed with Argon2 (pwdlib). Session tokens and invitation codes are random
(``secrets``); only their SHA-256 is stored, so a leaked database opens no session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
from functools import lru_cache

import sqlalchemy as sa
from pwdlib import PasswordHash

from encore.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from encore.services.context import ServiceContext
from encore.store import Invitation, LoginSession, User, UserRole, utcnow

logger = logging.getLogger(__name__)

OPERATOR_EMAIL = "operator@encore.local"
SESSION_DAYS = 14
INVITATION_DAYS = 14
MIN_PASSWORD_LENGTH = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(t: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def validate_credentials(email: str, password: str) -> str:
    """Normalised e-mail; ``InvalidInput`` naming what is wrong."""
    email = (email or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise InvalidInput(f"e-mail address {email!r} is not valid")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return email


def create_user(
    ctx: ServiceContext,
    *,
    email: str,
    password: str,
    display_name: str = "",
    role: UserRole = UserRole.LISTENER,
) -> User:
    """Create an account (operators use it from the CLI; sign-up goes through :func:`sign_up`)."""
    email = validate_credentials(email, password)
    with ctx.session() as session:
        if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
            raise Conflict(f"an account for {email} already exists")
        user = User(
            email=email,
            display_name=(display_name or email.split("@")[0])[:100],
            password_hash=_hasher().hash(password),
            role=role,
        )
        session.add(user)
        session.flush()
        logger.info("created %s user %d", role, user.id)
        return user


def ensure_operator(ctx: ServiceContext) -> tuple[str, str | None]:
    """On the first start, create the operator with a random password.

    Returns ``(email, password)`` the first time and ``(email, None)`` once an operator
    exists: there is no default password, so nothing works until the printed one is used.
    """
    with ctx.reading() as session:
        existing = session.scalar(
            sa.select(User).where(User.role == UserRole.OPERATOR).order_by(User.id).limit(1)
        )
    if existing is not None:
        return existing.email, None
    password = secrets.token_urlsafe(12)
    user = create_user(
        ctx, email=OPERATOR_EMAIL, password=password, display_name="operator",
        role=UserRole.OPERATOR,
    )
    return user.email, password


def create_invitation(
    ctx: ServiceContext, *, operator: User, role: UserRole = UserRole.LISTENER
) -> str:
    """A one-time sign-up code (returned once; only its hash is kept)."""
    if not operator.is_operator:
        raise PermissionDenied("only operators can invite")
    code = secrets.token_urlsafe(9)
    with ctx.session() as session:
        session.add(
            Invitation(
                code_hash=_digest(code),
                role=role,
                created_by_id=operator.id,
                expires_at=utcnow() + dt.timedelta(days=INVITATION_DAYS),
            )
        )
    return code


def sign_up(
    ctx: ServiceContext,
    *,
    email: str,
    password: str,
    display_name: str = "",
    invitation_code: str | None = None,
) -> User:
    """Create a listener account, with an unused invitation code unless sign-up is open."""
    email = validate_credentials(email, password)
    with ctx.session() as session:
        invitation = None
        if invitation_code:
            # FOR UPDATE: on PostgreSQL a concurrent sign-up with the same code waits here
            # until this one commits, then sees the code used (SQLite has one writer).
            invitation = session.scalar(
                sa.select(Invitation)
                .where(Invitation.code_hash == _digest(invitation_code.strip()))
                .with_for_update()
            )
            if invitation is None or invitation.used_at is not None:
                raise InvalidInput("this invitation code is unknown or already used")
            if _aware(invitation.expires_at) < utcnow():
                raise InvalidInput("this invitation code has expired")
            # And the use itself is conditional: of two racing sign-ups one updates the row.
            claimed = session.execute(
                sa.update(Invitation)
                .where(Invitation.id == invitation.id, Invitation.used_at.is_(None))
                .values(used_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
            if claimed != 1:
                raise InvalidInput("this invitation code is unknown or already used")
        elif not ctx.settings.open_signup:
            raise InvalidInput("an invitation code is required to sign up")
        if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
            raise Conflict(f"an account for {email} already exists")
        user = User(
            email=email,
            display_name=(display_name.strip() or email.split("@")[0])[:100],
            password_hash=_hasher().hash(password),
            role=invitation.role if invitation else UserRole.LISTENER,
        )
        session.add(user)
        session.flush()
        if invitation is not None:
            session.execute(
                sa.update(Invitation)
                .where(Invitation.id == invitation.id)
                .values(used_by_id=user.id)
                .execution_options(synchronize_session=False)
            )
        return user


def sign_in(ctx: ServiceContext, *, email: str, password: str) -> tuple[User, str]:
    """Check the password and open a session; returns the user and the raw cookie token."""
    email = (email or "").strip().lower()
    with ctx.session() as session:
        user = session.scalar(sa.select(User).where(User.email == email))
        # Verify against a dummy hash for unknown e-mails: same time either way.
        valid, new_hash = _hasher().verify_and_update(
            password or "", user.password_hash if user else _dummy_hash()
        )
        if user is None or not valid or not user.active:
            raise PermissionDenied("wrong e-mail address or password")
        if new_hash:
            user.password_hash = new_hash
        token = secrets.token_urlsafe(32)
        session.add(
            LoginSession(
                token_hash=_digest(token),
                user_id=user.id,
                csrf_token=secrets.token_urlsafe(32),
                expires_at=utcnow() + dt.timedelta(days=SESSION_DAYS),
            )
        )
        return user, token


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_hex(16))


def _live_session(session: sa.orm.Session, token: str) -> LoginSession | None:
    login = session.scalar(sa.select(LoginSession).where(LoginSession.token_hash == _digest(token)))
    if login is None or _aware(login.expires_at) < utcnow():
        return None
    return login


def user_for_session(ctx: ServiceContext, token: str) -> User | None:
    """The active user of a session token, or ``None`` (unknown, expired, deactivated)."""
    if not token:
        return None
    with ctx.reading() as session:  # one query: this runs on every request
        row = session.execute(
            sa.select(User, LoginSession.expires_at)
            .join(LoginSession, LoginSession.user_id == User.id)
            .where(LoginSession.token_hash == _digest(token))
        ).one_or_none()
    if row is None:
        return None
    user, expires_at = row
    if _aware(expires_at) < utcnow() or not user.active:
        return None
    return user  # type: ignore[no-any-return]


def csrf_token_for_session(ctx: ServiceContext, token: str) -> str | None:
    """The CSRF token bound to a live session."""
    with ctx.reading() as session:
        login = _live_session(session, token)
        return login.csrf_token if login else None


def sign_out(ctx: ServiceContext, token: str) -> None:
    """End the session (unknown tokens are ignored)."""
    with ctx.session() as session:
        session.execute(sa.delete(LoginSession).where(LoginSession.token_hash == _digest(token)))


def list_users(ctx: ServiceContext, *, operator: User) -> list[User]:
    if not operator.is_operator:
        raise PermissionDenied("only operators can list users")
    with ctx.reading() as session:
        return list(session.scalars(sa.select(User).order_by(User.id)))


def set_active(ctx: ServiceContext, *, operator: User, user_id: int, active: bool) -> User:
    """(De)activate an account; deactivated users cannot sign in."""
    if not operator.is_operator:
        raise PermissionDenied("only operators can change accounts")
    with ctx.session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        if user.id == operator.id and not active:
            raise Conflict("operators cannot deactivate themselves")
        user.active = active
        return user
