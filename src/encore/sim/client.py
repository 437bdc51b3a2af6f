"""A small HTTP client for the platform's JSON API, as a browser uses it (httpx).

A non-browser client satisfies the platform's CSRF defence (``encore.web.security``) the way
a same-origin page does: it sends ``Origin: <the server's origin>`` on state-changing
requests and the session's CSRF token (returned by sign-in) in ``X-CSRF-Token``; the session
itself is the HttpOnly cookie httpx keeps.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from encore.errors import EncoreError

logger = logging.getLogger(__name__)


class Stopped(EncoreError):
    """The simulation was asked to stop (Ctrl-C) while a simulated user was waiting."""


class ApiError(EncoreError):
    """The platform answered a request with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class ApiClient:
    """One signed-in (or anonymous) user of the platform.

    Parameters
    ----------
    base_url : str
        ``http://127.0.0.1:PORT``.
    timeout : float
        Seconds per request.
    """

    def __init__(self, base_url: str, *, timeout: float = 120.0,
                 stop: threading.Event | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.stop = stop or threading.Event()
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                 headers={"Accept": "application/json"})
        self.csrf: str | None = None
        self.user: dict[str, Any] | None = None

    def close(self) -> None:
        self.http.close()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time, or raise :class:`Stopped` when asked to stop."""
        if self.stop.wait(seconds):
            raise Stopped("the simulation is stopping")

    # -- plumbing ---------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Origin": self.base_url}
        if self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers

    def request(self, method: str, path: str, *, retries: int = 3, **kwargs: Any) -> httpx.Response:
        """Send a request; raise :class:`ApiError` on an error status.

        429 (rate limit) and connection errors are retried after a pause, like a patient
        user; every other error is raised at once.
        """
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        for attempt in range(retries + 1):
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == retries:
                    raise
                time.sleep(1.0 + attempt)
                continue
            if response.status_code == 429 and attempt < retries:
                time.sleep(float(response.headers.get("retry-after", 2.0)))
                continue
            if response.status_code >= 400:
                raise ApiError(method, path, response.status_code, response.text)
            return response
        raise AssertionError("unreachable")

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body if body is not None else {}, **kwargs).json()

    # -- accounts -----------------------------------------------------------------------

    def _signed_in(self, body: dict[str, Any]) -> dict[str, Any]:
        self.csrf = body["csrf_token"]
        self.user = body["user"]
        return body["user"]

    def sign_up(self, email: str, password: str, display_name: str,
                invitation_code: str | None = None) -> dict[str, Any]:
        """Create an account (``POST /api/auth/signup``) and keep its session."""
        return self._signed_in(self.post_json("/api/auth/signup", {
            "email": email, "password": password, "display_name": display_name,
            "invitation_code": invitation_code,
        }))

    def sign_in(self, email: str, password: str) -> dict[str, Any]:
        """``POST /api/auth/signin``; keeps the session cookie and the CSRF token."""
        return self._signed_in(self.post_json("/api/auth/signin", {"email": email, "password": password}))

    # -- listener -----------------------------------------------------------------------

    def upload_song(self, data: bytes, filename: str, title: str) -> dict[str, Any]:
        """``POST /api/songs`` (multipart ``file`` and ``title``)."""
        body = self.request("POST", "/api/songs", files={"file": (filename, data)},
                            data={"title": title}).json()
        return body["song"]

    def song(self, song_id: int) -> dict[str, Any]:
        return self.get_json(f"/api/songs/{song_id}")["song"]

    def wait_song_ready(self, song_id: int, *, timeout: float = 600.0, poll: float = 0.3) -> dict[str, Any]:
        """Poll a song until it is processed (``ready``); raise if it failed."""
        return self._wait_ready(f"/api/songs/{song_id}", lambda: self.song(song_id),
                                lambda song: f"song processing failed: {song}",
                                timeout=timeout, poll=poll)

    def request_music(self, song_ids: list[int], closeness: float | None = None) -> int:
        """``POST /api/music``; returns the delivery id."""
        body: dict[str, Any] = {"song_ids": list(song_ids)}
        if closeness is not None:
            body["closeness"] = closeness
        return int(self.post_json("/api/music", body)["delivery_id"])

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        return self.get_json(f"/api/deliveries/{delivery_id}")

    def wait_delivery(self, delivery_id: int, *, timeout: float = 1800.0, poll: float = 0.5) -> dict[str, Any]:
        """Poll the delivery until its music is ready (raise if it failed)."""
        return self._wait_ready(f"/api/deliveries/{delivery_id}", lambda: self.delivery(delivery_id),
                                lambda view: f"generation failed: {view.get('message')}",
                                timeout=timeout, poll=poll)

    def _wait_ready(self, path: str, fetch: Callable[[], dict[str, Any]],
                    failure: Callable[[dict[str, Any]], str], *, timeout: float,
                    poll: float) -> dict[str, Any]:
        """Poll ``fetch()`` (the view at ``path``) until its status is ``ready``: raise
        :class:`ApiError` with ``failure(view)`` if it failed, ``TimeoutError`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            view = fetch()
            if view["status"] == "ready":
                return view
            if view["status"] == "failed":
                raise ApiError("GET", path, 200, failure(view))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} not ready after {timeout:.0f} s: {view}")
            self.sleep(poll)

    def audio(self, delivery_id: int) -> bytes:
        """``GET /api/deliveries/{id}/audio`` (marks the delivery opened)."""
        return self.request("GET", f"/api/deliveries/{delivery_id}/audio").content

    def spectrogram(self, delivery_id: int) -> bytes:
        return self.request("GET", f"/api/deliveries/{delivery_id}/spectrogram").content

    def listen(self, delivery_id: int, ranges: list[tuple[float, float]], *, final: bool = False) -> dict[str, Any]:
        """A listening heartbeat with the played ranges so far."""
        return self.post_json(f"/api/deliveries/{delivery_id}/listens",
                              {"ranges": [[a, b] for a, b in ranges], "final": final})

    def rate(self, delivery_id: int, stars: float) -> dict[str, Any]:
        return self.post_json(f"/api/deliveries/{delivery_id}/rating", {"stars": stars})

    def history(self) -> list[dict[str, Any]]:
        return self.get_json("/api/history")["items"]

    # -- operator -----------------------------------------------------------------------

    def invite(self) -> str:
        return str(self.post_json("/api/operator/invitations")["code"])

    def users(self) -> list[dict[str, Any]]:
        return self.get_json("/api/operator/users")["users"]

    def curate(self) -> dict[str, Any]:
        return self.post_json("/api/operator/curate")

    def purge(self) -> dict[str, Any]:
        return self.post_json("/api/operator/purge")

    def dataset(self, include_removed: bool = True) -> list[dict[str, Any]]:
        return self.get_json("/api/operator/dataset",
                             params={"include_removed": str(include_removed).lower()})["entries"]

    def raters(self) -> list[dict[str, Any]]:
        return self.get_json("/api/operator/raters")["raters"]

    def versions(self) -> list[dict[str, Any]]:
        return self.get_json("/api/operator/versions")["versions"]

    def activate(self, version_id: int, ab_weight: float, *, force: bool = False) -> dict[str, Any]:
        return self.post_json(f"/api/operator/versions/{version_id}/activate",
                              {"ab_weight": ab_weight, "force": force})

    def report(self) -> dict[str, Any] | None:
        return self.get_json("/api/operator/report")["report"]

    def report_plots(self) -> dict[str, bytes]:
        """Open the report page (which draws the plots), then download each plot."""
        page = self.request("GET", "/operator/report", headers={"Accept": "text/html"}).text
        names = sorted(set(re.findall(r"/api/operator/report/plots/([a-z0-9_]+\.png)", page)))
        return {n: self.request("GET", f"/api/operator/report/plots/{n}").content for n in names}

    def ratings_csv(self) -> str:
        return self.request("GET", "/api/operator/ratings.csv").text

    def served_csv(self) -> str:
        return self.request("GET", "/api/operator/served.csv").text

    def has_route(self, method: str, path: str) -> bool:
        """Whether the server's OpenAPI schema lists ``method path``."""
        schema = self.get_json("/api/openapi.json")
        return method.lower() in schema.get("paths", {}).get(path, {})
