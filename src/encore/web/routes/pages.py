"""The home page and small fixed resources."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from encore.web.deps import MaybeUser

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(user: MaybeUser) -> Response:
    """Signed in: the library (operators: the report); otherwise the sign-in page."""
    if user is None:
        return RedirectResponse("/signin", status_code=303)
    return RedirectResponse("/operator/report" if user.is_operator else "/songs", status_code=303)


@router.get("/robots.txt")
def robots() -> Response:
    """Nothing here is for search engines."""
    return PlainTextResponse("User-agent: *\nDisallow: /\n")
