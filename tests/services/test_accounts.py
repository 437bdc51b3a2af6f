from __future__ import annotations

import pytest

from encore.errors import Conflict, InvalidInput, PermissionDenied
from encore.services import accounts
from encore.store import UserRole


def test_operator_created_once_with_a_working_random_password(ctx) -> None:
    email, password = accounts.ensure_operator(ctx)
    assert password is not None and len(password) >= 12
    assert accounts.ensure_operator(ctx) == (email, None)
    user, token = accounts.sign_in(ctx, email=email, password=password)
    assert user.role is UserRole.OPERATOR
    assert accounts.user_for_session(ctx, token).id == user.id


def test_sign_in_rejects_wrong_password_and_unknown_email(ctx, make_listener) -> None:
    listener = make_listener()
    with pytest.raises(PermissionDenied, match="wrong e-mail address or password"):
        accounts.sign_in(ctx, email=listener.email, password="not-the-password")
    with pytest.raises(PermissionDenied):
        accounts.sign_in(ctx, email="nobody@example.org", password="whatever-long")


def test_passwords_are_stored_as_argon2_hashes(ctx, make_listener) -> None:
    listener = make_listener()
    assert listener.password_hash.startswith("$argon2")
    assert "listener-pass" not in listener.password_hash


def test_sign_out_ends_the_session(ctx, make_listener) -> None:
    listener = make_listener()
    _, token = accounts.sign_in(ctx, email=listener.email, password="listener-pass")
    assert accounts.csrf_token_for_session(ctx, token)
    accounts.sign_out(ctx, token)
    assert accounts.user_for_session(ctx, token) is None
    assert accounts.csrf_token_for_session(ctx, token) is None


def test_invitation_is_single_use_and_required_when_signup_is_closed(ctx, operator) -> None:
    ctx.settings.open_signup = False
    with pytest.raises(InvalidInput, match="invitation code is required"):
        accounts.sign_up(ctx, email="a@example.org", password="long-enough-1")
    code = accounts.create_invitation(ctx, operator=operator)
    user = accounts.sign_up(ctx, email="a@example.org", password="long-enough-1", invitation_code=code)
    assert user.role is UserRole.LISTENER
    with pytest.raises(InvalidInput, match="unknown or already used"):
        accounts.sign_up(ctx, email="b@example.org", password="long-enough-1", invitation_code=code)


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [("not-an-email", "long-enough-1", "is not valid"), ("x@example.org", "short", "at least 10")],
)
def test_sign_up_validates(ctx, email: str, password: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        accounts.sign_up(ctx, email=email, password=password)


def test_duplicate_email_is_refused_without_saying_it_exists(ctx) -> None:
    accounts.sign_up(ctx, email="Same@Example.org", password="long-enough-1")
    with pytest.raises(InvalidInput, match="cannot be created with this e-mail address") as exc:
        accounts.sign_up(ctx, email="same@example.org ", password="long-enough-1")
    assert "already exists" not in str(exc.value)
    with pytest.raises(Conflict, match="already exists"):  # the operator's command line says so
        accounts.create_user(ctx, email="same@example.org", password="long-enough-1")


def test_listeners_cannot_invite(ctx, make_listener) -> None:
    with pytest.raises(PermissionDenied):
        accounts.create_invitation(ctx, operator=make_listener())
