"""The listener's own account: password, sessions, password reset links, data export and
deletion (issue 18)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from encore.errors import EncoreError
from encore.services import accounts
from encore.web.deps import (
    CtxDep,
    CurrentUser,
    LimitsDep,
    OperatorUser,
    Password,
    SettingsDep,
    client_ip,
    render,
    render_form_error,
    session_token,
)
from encore.web.errors import status_for
from encore.web.security import clear_session_cookie

router = APIRouter()


class PasswordChange(BaseModel):
    current_password: Password
    new_password: Password


class PasswordReset(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    new_password: Password


def forget_sessions(request: Request) -> None:
    """Sessions of an account ended: this process's caches forget them at once (others
    within ``ENCORE_SESSION_CACHE_SECONDS``)."""
    request.app.state.session_users.clear()
    request.app.state.csrf_tokens.clear()


@router.get("/account", include_in_schema=False)
def account_page(request: Request, user: CurrentUser) -> Response:
    """Password, sessions, the data export and account deletion."""
    return render(
        request, "account.html", user=user, min_password=accounts.MIN_PASSWORD_LENGTH
    )


@router.post("/api/account/password")
def api_change_password(
    request: Request, body: PasswordChange, user: CurrentUser, ctx: CtxDep, limits: LimitsDep
) -> dict[str, Any]:
    """Change the password (the current one is needed); every other session ends."""
    limits.check("signin", account=user.email, ip=client_ip(request))
    ended = accounts.change_password(
        ctx, user=user, current_password=body.current_password,
        new_password=body.new_password, keep_token=session_token(request),
    )
    forget_sessions(request)
    others = "other session" if ended == 1 else "other sessions"
    return {"changed": True, "sessions_ended": ended,
            "message": f"Your password is changed; {ended} {others} signed out."}


@router.post("/api/account/signout-everywhere")
def api_signout_everywhere(
    request: Request, user: CurrentUser, ctx: CtxDep, settings: SettingsDep
) -> Response:
    """End every session of the account, this one too."""
    ended = accounts.sign_out_everywhere(ctx, user=user)
    forget_sessions(request)
    response = JSONResponse({"signed_out": True, "sessions_ended": ended, "next": "/signin"})
    clear_session_cookie(response, settings)
    return response


@router.post("/api/operator/users/{user_id}/password-reset", status_code=201)
def api_password_reset_link(
    request: Request, user_id: int, user: OperatorUser, ctx: CtxDep
) -> dict[str, Any]:
    """A one-time password reset link for an account (shown once, to send to its owner)."""
    token, expires = accounts.create_password_reset(ctx, operator=user, user_id=user_id)
    url = str(request.url_for("reset_page", token=token))
    return {"url": url, "expires_at": expires.isoformat(),
            "message": f"Reset link (one use, until {expires:%Y-%m-%d %H:%M} UTC): {url}"}


@router.get("/reset/{token}", include_in_schema=False)
def reset_page(request: Request, token: str, ctx: CtxDep) -> Response:
    """Choose a new password with an operator's one-time link."""
    try:
        target = accounts.password_reset_user(ctx, token)
    except EncoreError as exc:
        return render(request, "reset.html", user=None, status_code=status_for(exc),
                      form_error=str(exc), token=None)
    return render(request, "reset.html", user=None, token=token, email=target.email,
                  min_password=accounts.MIN_PASSWORD_LENGTH)


@router.post("/api/auth/reset")
def api_reset_password(request: Request, body: PasswordReset, ctx: CtxDep, limits: LimitsDep) -> dict[str, Any]:
    """Set a new password with a reset token (once); every session of the account ends."""
    limits.check("signin", account=None, ip=client_ip(request))
    accounts.reset_password(ctx, token=body.token, new_password=body.new_password)
    forget_sessions(request)
    return {"reset": True, "next": "/signin", "message": "Your password is set; please sign in."}


@router.post("/reset/{token}", include_in_schema=False)
async def reset_form(request: Request, token: str, ctx: CtxDep, limits: LimitsDep) -> Response:
    """The reset form posted without JavaScript."""
    form = await request.form(max_files=0, max_fields=10)
    password = str(form.get("new_password") or "")[:1024]

    def run() -> Response:
        try:
            limits.check("signin", account=None, ip=client_ip(request))
            accounts.reset_password(ctx, token=token, new_password=password)
        except EncoreError as exc:
            return render_form_error(request, "reset.html", exc, token=token,
                                     min_password=accounts.MIN_PASSWORD_LENGTH)
        forget_sessions(request)
        return RedirectResponse("/signin", status_code=303)

    return await run_in_threadpool(run)


class AccountDeletion(BaseModel):
    password: Password


@router.post("/api/account/delete")
def api_delete_account(
    request: Request, body: AccountDeletion, user: CurrentUser, ctx: CtxDep, settings: SettingsDep
) -> Response:
    """Delete the account (the password confirms): songs and their music are deleted, the
    ratings stay anonymous in the report, every session ends."""
    deleted = accounts.delete_account(ctx, user=user, password=body.password)
    forget_sessions(request)
    response = JSONResponse({"deleted": True, "blobs_deleted": deleted, "next": "/signin"})
    clear_session_cookie(response, settings)
    return response


@router.get("/api/account/export")
def api_export(user: CurrentUser, ctx: CtxDep) -> Response:
    """The account's data as a zip: songs as uploaded, the clips served, listening and
    ratings (written to a temporary file, streamed, then removed)."""
    import tempfile

    from starlette.background import BackgroundTask
    from starlette.responses import FileResponse

    from encore.services import export

    tmp = tempfile.NamedTemporaryFile(prefix="encore-export-", suffix=".zip", delete=False)
    try:
        with tmp:
            export.write_export(ctx, user=user, out=tmp)
    except BaseException:
        os.unlink(tmp.name)
        raise
    return FileResponse(
        tmp.name,
        media_type="application/zip",
        filename=f"encore-{user.rater_id}.zip",
        background=BackgroundTask(os.unlink, tmp.name),
    )
