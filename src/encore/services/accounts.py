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
from encore.store import Invitation, LoginSession, PasswordReset, User, UserRole, as_utc, utcnow

logger = logging.getLogger(__name__)

OPERATOR_EMAIL = "operator@encore.local"
SESSION_DAYS = 14
INVITATION_DAYS = 14
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 320
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
SIGNUP_REFUSED = (
    "an account cannot be created with this e-mail address; if you already have one, "
    "sign in (or ask the operator for a password reset link)"
)


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_credentials(email: str, password: str) -> str:
    """Normalised e-mail; ``InvalidInput`` naming what is wrong."""
    email = (email or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > MAX_EMAIL_LENGTH:
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
            if as_utc(invitation.expires_at) < utcnow():
                raise InvalidInput("this invitation code has expired")
            # And the use itself is conditional: of two racing sign-ups one updates the row.
            _use_once(session, Invitation, invitation.id,
                      "this invitation code is unknown or already used")
        elif not ctx.settings.open_signup:
            raise InvalidInput("an invitation code is required to sign up")
        password_hash = _hasher().hash(password)  # before the look-up: the same time either way
        if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
            # Not "already exists" with its own status: sign-up must not tell a stranger
            # which addresses have accounts (the invitation code stays unused).
            raise InvalidInput(SIGNUP_REFUSED)
        user = User(
            email=email,
            display_name=(display_name.strip() or email.split("@")[0])[:100],
            password_hash=password_hash,
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
            password or "",
            user.password_hash if user is not None and user.deleted_at is None else _dummy_hash(),
        )
        if user is None or not valid or not user.active or user.deleted_at is not None:
            raise PermissionDenied("wrong e-mail address or password")
        if new_hash:
            user.password_hash = new_hash
        # Expired sessions are purged as new ones open (indexed on expires_at).
        session.execute(
            sa.delete(LoginSession)
            .where(LoginSession.expires_at < utcnow())
            .execution_options(synchronize_session=False)
        )
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
    if login is None or as_utc(login.expires_at) < utcnow():
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
    if as_utc(expires_at) < utcnow() or not user.active:
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
        if user.deleted_at is not None:
            raise Conflict(f"account {user_id} was deleted")
        user.active = active
        if not active:  # reactivating must not bring the old sessions back
            _end_sessions(session, user)
        return user


def _end_sessions(session: sa.orm.Session, user: User, *, keep_token: str | None = None) -> int:
    """Delete the user's sessions (but the one of ``keep_token``); returns how many."""
    query = sa.delete(LoginSession).where(LoginSession.user_id == user.id)
    if keep_token:
        query = query.where(LoginSession.token_hash != _digest(keep_token))
    user.sessions_valid_after = utcnow()
    return int(session.execute(query.execution_options(synchronize_session=False)).rowcount or 0)


def _set_password(session: sa.orm.Session, user: User, password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    user.password_hash = _hasher().hash(password)


def change_password(
    ctx: ServiceContext, *, user: User, current_password: str, new_password: str,
    keep_token: str | None = None,
) -> int:
    """Change the user's password after checking the current one; every other session
    ends (the one of ``keep_token`` stays). Returns the number of sessions ended.

    Raises
    ------
    PermissionDenied
        The current password is wrong.
    InvalidInput
        The new password is too short.
    """
    with ctx.session() as session:
        row = session.get(User, user.id, with_for_update=True)
        if row is None or not row.active or row.deleted_at is not None:
            raise PermissionDenied("this account cannot change its password")
        if not _hasher().verify(current_password or "", row.password_hash):
            raise PermissionDenied("the current password is wrong")
        _set_password(session, row, new_password)
        return _end_sessions(session, row, keep_token=keep_token)


def sign_out_everywhere(ctx: ServiceContext, *, user: User) -> int:
    """End every session of the user (this one too); returns how many."""
    with ctx.session() as session:
        row = session.get(User, user.id)
        return _end_sessions(session, row) if row is not None else 0


def _user_by_email(session: sa.orm.Session, email: str) -> User:
    user = session.scalar(sa.select(User).where(User.email == (email or "").strip().lower()))
    if user is None or user.deleted_at is not None:
        raise NotFound(f"no account has the e-mail address {email!r}")
    return user


def set_password(ctx: ServiceContext, *, email: str, password: str) -> User:
    """Set an account's password (the operator's command line); its sessions end."""
    with ctx.session() as session:
        user = _user_by_email(session, email)
        _set_password(session, user, password)
        _end_sessions(session, user)
        return user


def set_active_by_email(ctx: ServiceContext, *, email: str, active: bool) -> User:
    """(De)activate an account from the command line; deactivation ends its sessions."""
    with ctx.session() as session:
        user = _user_by_email(session, email)
        user.active = active
        if not active:
            _end_sessions(session, user)
        return user


def create_password_reset(ctx: ServiceContext, *, operator: User, user_id: int) -> tuple[str, dt.datetime]:
    """A one-time password reset token for ``user_id`` (returned once; only its hash is
    kept), valid for ``password_reset_hours``. Earlier unused tokens of the user are void."""
    if not operator.is_operator:
        raise PermissionDenied("only operators can issue password reset links")
    token = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(hours=ctx.settings.password_reset_hours)
    with ctx.session() as session:
        user = session.get(User, user_id)
        if user is None or user.deleted_at is not None:
            raise NotFound(f"user {user_id} does not exist")
        session.execute(
            sa.delete(PasswordReset).where(
                PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None)
            )
        )
        session.add(
            PasswordReset(
                token_hash=_digest(token), user_id=user.id, created_by_id=operator.id,
                expires_at=expires,
            )
        )
    return token, expires


def password_reset_user(ctx: ServiceContext, token: str) -> User:
    """The account a live reset token is for (``InvalidInput`` otherwise)."""
    with ctx.reading() as session:
        reset = session.scalar(
            sa.select(PasswordReset).where(PasswordReset.token_hash == _digest(token or ""))
        )
        if reset is None or reset.used_at is not None or as_utc(reset.expires_at) < utcnow():
            raise InvalidInput("this password reset link is unknown, used or expired")
        user = session.get(User, reset.user_id)
        if user is None or user.deleted_at is not None:
            raise InvalidInput("this password reset link is unknown, used or expired")
        return user


def _use_once(session: sa.orm.Session, model: type[Invitation] | type[PasswordReset], row_id: int,
              refusal: str) -> None:
    """Mark a one-time code's row used, on condition that it is still unused: of two racing
    uses exactly one updates the row; the other gets :class:`InvalidInput` (``refusal``)."""
    claimed = session.execute(
        sa.update(model)
        .where(model.id == row_id, model.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise InvalidInput(refusal)


def reset_password(ctx: ServiceContext, *, token: str, new_password: str) -> User:
    """Use a reset token once: set the password and end every session of the account."""
    with ctx.session() as session:
        reset = session.scalar(
            sa.select(PasswordReset)
            .where(PasswordReset.token_hash == _digest(token or ""))
            .with_for_update()
        )
        if reset is None or reset.used_at is not None or as_utc(reset.expires_at) < utcnow():
            raise InvalidInput("this password reset link is unknown, used or expired")
        _use_once(session, PasswordReset, reset.id,
                  "this password reset link is unknown, used or expired")
        user = session.get(User, reset.user_id)
        if user is None or user.deleted_at is not None:
            raise InvalidInput("this password reset link is unknown, used or expired")
        _set_password(session, user, new_password)
        _end_sessions(session, user)
        return user


def purge_expired_sessions(ctx: ServiceContext) -> int:
    """Delete expired sessions and used or expired reset tokens; returns the sessions deleted."""
    now = utcnow()
    with ctx.session() as session:
        n = session.execute(sa.delete(LoginSession).where(LoginSession.expires_at < now)).rowcount
        session.execute(
            sa.delete(PasswordReset).where(
                sa.or_(PasswordReset.expires_at < now, PasswordReset.used_at.is_not(None))
            )
        )
        return int(n or 0)


def delete_account(ctx: ServiceContext, *, user: User, password: str) -> int:
    """Delete the user's account after checking the password.

    Every song goes as with :func:`encore.services.songs.delete_song` (audio deleted, clips
    made from them out of the data set and never served again); sessions, reset links end.
    The row stays, anonymous (no e-mail, name or password), so that the ratings given stay
    in the report under the pseudonymous rater id. Returns the number of blobs deleted.

    Raises
    ------
    PermissionDenied
        Wrong password, or an operator (operators are removed from the command line).
    """
    from encore.services import songs as songs_service
    from encore.store import Song

    now = utcnow()
    with ctx.session() as session:
        row = session.get(User, user.id, with_for_update=True)
        if row is None or row.deleted_at is not None:
            raise NotFound("this account does not exist")
        if row.is_operator:
            raise PermissionDenied("an operator account cannot be deleted from the web")
        if not _hasher().verify(password or "", row.password_hash):
            raise PermissionDenied("the password is wrong; the account was not deleted")
        keys: list[str] = []
        for song in session.scalars(
            sa.select(Song).where(Song.owner_id == row.id, Song.deleted_at.is_(None))
        ):
            keys += songs_service._forget_song(session, song, now)
        _end_sessions(session, row)
        session.execute(sa.delete(PasswordReset).where(PasswordReset.user_id == row.id))
        row.email = f"deleted-{row.id}@deleted.invalid"
        row.display_name = "deleted listener"
        row.password_hash = "!deleted"  # matches no password
        row.active = False
        row.deleted_at = now
    logger.info("account %d deleted (%d blobs)", user.id, len(keys))
    return songs_service.delete_blobs(ctx, keys)
