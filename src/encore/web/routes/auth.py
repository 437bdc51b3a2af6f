"""Sign up, sign in, sign out: the pages and the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from encore.errors import EncoreError, InvalidInput, PermissionDenied
from encore.services import accounts
from encore.store.models import User
from encore.web.deps import (
    CtxDep,
    Email,
    LimitsDep,
    MaybeUser,
    Password,
    SettingsDep,
    client_ip,
    render,
    render_form_error,
    session_token,
)
from encore.web.security import clear_session_cookie, safe_next, set_session_cookie
from encore.web.views import user_json

router = APIRouter()


class SignInBody(BaseModel):
    email: Email
    password: Password


class SignUpBody(BaseModel):
    email: Email
    password: Password
    display_name: str = Field(min_length=1, max_length=100)
    invitation_code: str | None = Field(default=None, max_length=200)


def _signed_in(request: Request, user: User, token: str, settings: Any, status: int) -> Response:
    csrf = request.app.state.csrf_tokens.lookup(token)
    body = {"user": user_json(user), "csrf_token": csrf, "next": "/songs"}
    response = JSONResponse(body, status_code=status)
    set_session_cookie(response, token, settings)
    return response


@router.get("/signin", include_in_schema=False)
def signin_page(request: Request, user: MaybeUser, next: str | None = None) -> Response:
    """The sign-in page (signed-in users go straight on, to ``next`` if it is ours)."""
    if user is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "signin.html", user=None, next_path=safe_next(next))


async def _form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=20)
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/signin", include_in_schema=False)
async def signin_form(
    request: Request, ctx: CtxDep, settings: SettingsDep, limits: LimitsDep
) -> Response:
    """The sign-in form posted without JavaScript: a session cookie and a redirect to
    ``next`` (a path of this site only), or the page again with the reason."""
    form = await _form(request)
    email, password = form.get("email", "")[:320], form.get("password", "")[:1024]
    target = safe_next(form.get("next"))
    try:
        user, token = await run_in_threadpool(
            _sign_in_checked, request, ctx, limits, email, password
        )
    except EncoreError as exc:
        return await run_in_threadpool(
            render_form_error, request, "signin.html", exc, next_path=target, email=email
        )
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, token, settings)
    return response


@router.post("/signup", include_in_schema=False)
async def signup_form(
    request: Request, ctx: CtxDep, settings: SettingsDep, limits: LimitsDep
) -> Response:
    """The sign-up form posted without JavaScript."""
    form = await _form(request)
    values = {
        "email": form.get("email", "")[:320],
        "password": form.get("password", "")[:1024],
        "display_name": form.get("display_name", "")[:100],
        "invitation_code": (form.get("invitation_code", "")[:200].strip() or None),
    }
    try:
        user, token = await run_in_threadpool(_sign_up_checked, request, ctx, limits, values)
    except EncoreError as exc:
        return await run_in_threadpool(
            render_form_error, request, "signup.html", exc, code=values["invitation_code"],
            email=values["email"], display_name=values["display_name"],
            min_password=accounts.MIN_PASSWORD_LENGTH,
        )
    response = RedirectResponse("/upload", status_code=303)
    set_session_cookie(response, token, settings)
    return response


@router.post("/signout", include_in_schema=False)
def signout_form(request: Request, ctx: CtxDep, settings: SettingsDep) -> Response:
    """The sign-out button posted without JavaScript (the CSRF token is a form field)."""
    _end_session(request, ctx)
    response = RedirectResponse("/signin", status_code=303)
    clear_session_cookie(response, settings)
    return response


def _end_session(request: Request, ctx: Any) -> None:
    token = session_token(request)
    if token is not None:
        accounts.sign_out(ctx, token)
        request.app.state.csrf_tokens.forget(token)
        request.app.state.session_users.forget(token)


def _sign_in_checked(
    request: Request, ctx: Any, limits: Any, email: str, password: str
) -> tuple[User, str]:
    """Sign in behind the per-address limit and the per-(account, address) slow-down."""
    account, ip = email.strip().lower(), client_ip(request)
    limits.check("signin", account=None, ip=ip)
    slowdown = request.app.state.signin_slowdown
    slowdown.check(account, ip)
    try:
        user, token = accounts.sign_in(ctx, email=email, password=password)
    except PermissionDenied:
        slowdown.failed(account, ip)
        raise
    slowdown.succeeded(account, ip)
    return user, token


def _sign_up_checked(
    request: Request, ctx: Any, limits: Any, values: dict[str, Any]
) -> tuple[User, str]:
    limits.check("signin", account=values["email"].strip().lower(), ip=client_ip(request))
    if not values["display_name"].strip():
        raise InvalidInput("please give a name to show on your account")
    accounts.sign_up(ctx, **values)
    return accounts.sign_in(ctx, email=values["email"], password=values["password"])


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
    user, token = _sign_in_checked(request, ctx, limits, body.email, body.password)
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
    _end_session(request, ctx)
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
