"""Sign up, sign in, sign out: the pages and the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from encore.services import accounts
from encore.store.models import User
from encore.web.deps import (
    CtxDep,
    LimitsDep,
    MaybeUser,
    SettingsDep,
    client_ip,
    render,
    session_token,
)
from encore.web.security import clear_session_cookie, set_session_cookie

router = APIRouter()


class SignInBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class SignUpBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    display_name: str = Field(min_length=1, max_length=100)
    invitation_code: str | None = Field(default=None, max_length=200)


def user_json(user: User) -> dict[str, Any]:
    """What the API tells a user about their own account."""
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "role": str(user.role),
    }


def _signed_in(request: Request, user: User, token: str, settings: Any, status: int) -> Response:
    csrf = request.app.state.csrf_tokens.lookup(token)
    body = {"user": user_json(user), "csrf_token": csrf, "next": "/songs"}
    response = JSONResponse(body, status_code=status)
    set_session_cookie(response, token, settings)
    return response


@router.get("/signin", include_in_schema=False)
def signin_page(request: Request, user: MaybeUser) -> Response:
    """The sign-in page (signed-in users go straight to their songs)."""
    if user is not None:
        return RedirectResponse("/songs", status_code=303)
    return render(request, "signin.html", user=None)


@router.get("/signup", include_in_schema=False)
def signup_page(request: Request, user: MaybeUser, code: str | None = None) -> Response:
    """The sign-up page; ``?code=`` pre-fills the invitation code."""
    if user is not None:
        return RedirectResponse("/songs", status_code=303)
    return render(
        request, "signup.html", user=None, code=code, min_password=accounts.MIN_PASSWORD_LENGTH
    )


@router.post("/api/auth/signin")
def api_signin(
    request: Request, body: SignInBody, ctx: CtxDep, settings: SettingsDep, limits: LimitsDep
) -> Response:
    """Sign in: sets the session cookie and returns the user and the CSRF token."""
    limits.check("signin", account=body.email.strip().lower(), ip=client_ip(request))
    user, token = accounts.sign_in(ctx, email=body.email, password=body.password)
    return _signed_in(request, user, token, settings, 200)


@router.post("/api/auth/signup", status_code=201)
def api_signup(
    request: Request, body: SignUpBody, ctx: CtxDep, settings: SettingsDep, limits: LimitsDep
) -> Response:
    """Create an account (with an invitation code unless sign-up is open) and sign in."""
    limits.check("signin", account=body.email.strip().lower(), ip=client_ip(request))
    accounts.sign_up(
        ctx,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        invitation_code=(body.invitation_code or "").strip() or None,
    )
    user, token = accounts.sign_in(ctx, email=body.email, password=body.password)
    return _signed_in(request, user, token, settings, 201)


@router.post("/api/auth/signout")
def api_signout(request: Request, ctx: CtxDep, settings: SettingsDep) -> Response:
    """End the session (idempotent) and clear the cookie."""
    token = session_token(request)
    if token is not None:
        accounts.sign_out(ctx, token)
        request.app.state.csrf_tokens.forget(token)
        request.app.state.session_users.forget(token)
    response = JSONResponse({"signed_out": True})
    clear_session_cookie(response, settings)
    return response


@router.get("/api/me")
def api_me(request: Request, user: MaybeUser) -> dict[str, Any]:
    """The signed-in user and the session's CSRF token (``user: null`` when signed out)."""
    if user is None:
        return {"user": None, "csrf_token": None}
    token = session_token(request)
    csrf = request.app.state.csrf_tokens.lookup(token) if token else None
    return {"user": user_json(user), "csrf_token": csrf}
