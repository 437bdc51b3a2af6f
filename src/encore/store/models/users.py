"""People and their credentials: users, login sessions, invitations, rater reputation."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from encore.store.base import Base, enum_type, utcnow
from encore.store.enums import UserRole

if TYPE_CHECKING:
    from encore.store.models.songs import Song


def new_rater_id() -> str:
    """A random pseudonymous rater id (16 hex characters), shown in exports instead of names."""
    return secrets.token_hex(8)


class User(Base):
    """A listener or an operator.

    ``email`` is stored lower-cased and stripped. ``rater_id`` is the pseudonym that
    exports and reports use instead of the email. Users are deactivated, not deleted.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(100))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[UserRole] = mapped_column(enum_type(UserRole), default=UserRole.LISTENER)
    active: Mapped[bool] = mapped_column(default=True)
    rater_id: Mapped[str] = mapped_column(sa.String(32), unique=True, default=new_rater_id)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # A deleted account keeps this anonymous row (no e-mail, no password, no songs) so that
    # its ratings stay in the report under the pseudonymous rater_id.
    deleted_at: Mapped[dt.datetime | None]
    # Sessions created before this time are void (password change, sign out everywhere).
    sessions_valid_after: Mapped[dt.datetime | None]

    sessions: Mapped[list[LoginSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    songs: Mapped[list[Song]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )
    reputation: Mapped[RaterReputation | None] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("email")
    def _normalise_email(self, key: str, value: str) -> str:
        return value.strip().lower()

    @property
    def is_operator(self) -> bool:
        return self.role is UserRole.OPERATOR

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


class LoginSession(Base):
    """A server-side login session. Only the hash of the cookie token is stored."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(128), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    last_seen_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship(back_populates="sessions")


class Invitation(Base):
    """A sign-up invitation. Only the hash of the code is stored; it is used at most once."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(sa.String(128), unique=True)
    role: Mapped[UserRole] = mapped_column(enum_type(UserRole), default=UserRole.LISTENER)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    used_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    used_by: Mapped[User | None] = relationship(foreign_keys=[used_by_id])


class PasswordReset(Base):
    """An operator-issued one-time password reset link. Only the hash of its token is kept."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(128), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class RaterReputation(Base):
    """The rater model's estimate for one rater and the quality-control verdict.

    ``bias`` and ``noise`` are the rater model's per-rater offset and noise size in stars
    (rating = quality + bias + noise); ``weight`` in [0, 1] scales the rater's ratings in
    aggregates; ``flagged`` raters have ``reasons`` (a JSON list of strings) recorded.
    """

    __tablename__ = "rater_reputations"
    __table_args__ = (sa.CheckConstraint("weight >= 0 AND weight <= 1", name="weight_range"),)

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    weight: Mapped[float] = mapped_column(default=1.0)
    bias: Mapped[float] = mapped_column(default=0.0)
    noise: Mapped[float | None]
    flagged: Mapped[bool] = mapped_column(default=False, index=True)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    rating_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="reputation")
