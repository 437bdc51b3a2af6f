"""Helpers shared by the browser tests (``test_web_browser*.py``): Debian's Chromium, a page
per user, signing in, polling a script expression, and uploading songs over the API.

Their fixtures (``browser``, ``start_live_server``) are in ``conftest.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from encore.web.liveserver import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
# every browser test module's ``pytestmark``
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/ensure-system-deps)"),
]
# the settings every live server of these tests shares: 2-second canvases, three steps, one
# torch thread (the workers' similarity model too), no baseline deliveries
LIVE_ENV = {
    "ENCORE_CLIP_SECONDS": "2.0",
    "ENCORE_INFERENCE_STEPS": "3",
    "ENCORE_MIN_SONG_SECONDS": "1",
    "ENCORE_BASELINE_PROBABILITY": "0",
    "ENCORE_TORCH_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


def new_page(browser: Any, server: LiveServer, **context_options: Any) -> Any:
    """A page in a fresh browser context (its own cookies) on ``server``; its uncaught
    script errors collect in ``page.js_errors`` (the tests check there are none)."""
    context = browser.new_context(base_url=server.url, **context_options)
    context.set_default_timeout(180_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    return page


def wait_until(page: Any, expression: str, timeout: float = 60.0) -> Any:
    """Poll a JS expression until it is truthy (``wait_for_function`` evaluates strings with
    ``eval``, which the app's CSP rightly forbids)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(f"() => ({expression})")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout:.0f} s: {expression}")
        time.sleep(0.1)


def sign_in(page: Any, email: str, password: str) -> None:
    page.goto("/signin")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/(songs|operator/report)$"))


def upload_as_operator(live: LiveServer, files: list[tuple[str, bytes]]) -> list[int]:
    """Upload ``(name, wav bytes)`` files as the operator over the API and wait until each is
    analysed; returns their song ids."""
    with operator_client(live) as http:
        ids = [int(http.post("/api/songs", files={"file": (name, data, "audio/wav")})
                   .json()["song"]["id"]) for name, data in files]
        for song_id in ids:
            wait_analysed(http, song_id)
    return ids


@contextmanager
def operator_client(live: LiveServer) -> Iterator[Any]:
    """An ``httpx.Client`` on ``live`` signed in as the operator, sending the CSRF token."""
    import httpx

    with httpx.Client(base_url=live.url, timeout=120) as http:
        r = http.post("/api/auth/signin", json={"email": live.operator_email,
                                                 "password": live.operator_password})
        http.headers["x-csrf-token"] = r.json()["csrf_token"]
        yield http


def wait_analysed(http: Any, song_id: int) -> None:
    """Wait until the song is no longer pending (raises after two minutes)."""
    for _ in range(600):
        if http.get(f"/api/songs/{song_id}").json()["song"]["status"] != "pending":
            return
        time.sleep(0.2)
    raise AssertionError(f"song {song_id} was never analysed")
