"""The listener's experience in Debian's Chromium at 1280 px and 390 px wide (issue 19):
waiting (queue position, cancel), downloads (the bytes decode as audio), the player's text
after rating, durations formatted alike on every page, and no page scrolling sideways with
a 120-character song title.

The server runs without workers; the test starts and stops a real generation worker
(``python -m encore.jobs.worker``) itself, so a request can be seen waiting in the queue.
"""

from __future__ import annotations

import io
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from encore.web.liveserver import LiveServer

from .browser_helpers import BROWSER_MARKS, sign_in, wait_until
from .browser_helpers import new_page as browser_page
from .web_helpers import song_bytes

pytestmark = BROWSER_MARKS

WIDE, PHONE = 1280, 390
LONG_TITLE = ("Nocturne" * 16)[:120]  # 120 characters, one word: the worst case for a layout
assert len(LONG_TITLE) == 120
ENV = {
    "ENCORE_DEFAULT_PIECE_SECONDS": "6",
    "ENCORE_MIN_LISTEN_SECONDS": "1.0",
}


class Worker:
    """A real generation worker process for ``server``, started and stopped on demand."""

    def __init__(self, server: LiveServer, env: dict[str, str]) -> None:
        self.server = server
        self.env = {**os.environ, "ENCORE_DATA_DIR": str(server.data_dir),
                    "ENCORE_ENVIRONMENT": "test", "PYTHONUNBUFFERED": "1", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = server.data_dir / "worker.log"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "encore.jobs.worker", "--queue", "generate"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # this worker's own process group only
            proc.wait()


@pytest.fixture(scope="module")
def server(start_live_server: Any) -> Iterator[LiveServer]:
    with start_live_server("live-listener", workers=False, **ENV) as live:
        yield live


@pytest.fixture(scope="module")
def worker(server: LiveServer) -> Iterator[Worker]:
    w = Worker(server, server.extra_env)
    yield w
    w.stop()


def new_page(browser: Any, server: LiveServer, width: int = WIDE) -> Any:
    return browser_page(browser, server, viewport={"width": width, "height": 860},
                        accept_downloads=True)


def csrf(page: Any) -> str:
    return str(page.locator("meta[name=csrf-token]").get_attribute("content"))


@pytest.fixture(scope="module")
def listener(browser: Any, server: LiveServer) -> Any:
    """A listener (signed up by the operator's invitation) with a ready song whose title
    is 120 characters long."""
    operator = new_page(browser, server)
    sign_in(operator, str(server.operator_email), str(server.operator_password))
    operator.goto("/operator/users")
    operator.click("text=Create an invitation code")
    code = operator.locator(".code-box").inner_text().strip()
    page = new_page(browser, server)
    page.goto(f"/signup?code={code}")
    page.fill("#display_name", "Lin")
    page.fill("#email", "lin@example.org")
    page.fill("#password", "a-long-password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/upload$"))
    response = page.request.post(
        "/api/songs",
        multipart={"file": {"name": "x.wav", "mimeType": "audio/wav", "buffer": song_bytes(61, seconds=3.3)},
                   "title": LONG_TITLE},
        headers={"x-csrf-token": csrf(page)},
    )
    assert response.status == 201, response.text()
    page.song_id = response.json()["song"]["id"]
    return page


def wait_for_song(page: Any, song_id: int) -> None:
    deadline = time.monotonic() + 240
    while page.request.get(f"/api/songs/{song_id}").json()["song"]["status"] == "pending":
        assert time.monotonic() < deadline, "the song was never processed"
        time.sleep(0.3)


def ask_in_the_page(page: Any) -> int:
    page.goto("/songs")
    page.check("input[name=song]")
    page.click("button.make")
    page.wait_for_url(re.compile(r"/music/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def no_sideways_scroll(page: Any) -> dict[str, Any]:
    """The page's scroll and client widths, and (to say what is wrong) the first elements
    that reach past the window."""
    return page.evaluate(
        "() => { const w = document.documentElement.clientWidth;"
        " const wide = [...document.querySelectorAll('body *')]"
        ".filter((e) => e.getBoundingClientRect().right > w + 0.5)"
        ".filter((e) => { for (let p = e.parentElement; p; p = p.parentElement) {"
        " if (['auto', 'hidden', 'scroll'].includes(getComputedStyle(p).overflowX)) return false; }"
        " return true; })"
        ".slice(0, 5).map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));"
        " return { scroll: document.documentElement.scrollWidth, client: w, url: location.pathname, wide }; }"
    )


def test_a_queued_request_shows_its_place_and_can_be_cancelled(
    listener: Any, worker: Worker, server: LiveServer
) -> None:
    page = listener
    worker.start()  # to process the song
    wait_for_song(page, page.song_id)
    worker.stop()  # now nothing runs: the next request waits in the queue

    delivery_id = ask_in_the_page(page)
    info = page.locator(".queue-info")
    page.locator(".queue-info", has_text="Next in the queue").wait_for(timeout=30_000)
    assert "left" not in info.inner_text()  # nothing measured yet: no made-up estimate
    cancel = page.locator("button.cancel")
    assert cancel.is_visible()
    page.click("button.cancel")
    page.locator(".job-cancelled").wait_for(state="visible")
    assert page.locator(".job-progress").is_hidden()
    view = page.request.get(f"/api/deliveries/{delivery_id}").json()
    assert view["status"] == "cancelled" and view["cancellable"] is False
    refused = page.request.post(f"/api/deliveries/{delivery_id}/cancel", headers={"x-csrf-token": csrf(page)})
    assert refused.status == 409

    # The worker comes back: the cancelled job's queue message is skipped, the next runs.
    second = ask_in_the_page(page)
    worker.start()
    page.locator(".player").wait_for(state="visible", timeout=240_000)
    assert page.request.get(f"/api/deliveries/{delivery_id}").json()["status"] == "cancelled"
    assert page.request.get(f"/api/deliveries/{second}").json()["status"] == "ready"
    assert page.js_errors == []


def test_play_rate_download_and_durations_alike(listener: Any, worker: Worker, browser: Any, server: LiveServer) -> None:
    page = listener
    worker.start()
    wait_for_song(page, page.song_id)
    delivery_id = ask_in_the_page(page)
    page.locator(".player").wait_for(state="visible", timeout=240_000)
    view = page.request.get(f"/api/deliveries/{delivery_id}").json()
    clip_seconds = float(view["clip_seconds"])

    # Download both formats from the player: the bytes decode as audio of the clip's length.
    for fmt in ("ogg", "wav"):
        with page.expect_download() as info:
            page.click(f"a.download-{fmt}")
        download = info.value
        assert download.suggested_filename.startswith(f"encore-{delivery_id} from Nocturne")
        assert download.suggested_filename.endswith(f".{fmt}")
        data = Path(download.path()).read_bytes()
        audio, sr = sf.read(io.BytesIO(data))
        assert sr > 0 and len(audio) / sr == pytest.approx(clip_seconds, abs=0.05)
        assert float(abs(audio).max()) > 0.0
    # Downloading is not listening: the rating is still locked.
    assert page.locator(".rating .stars").get_attribute("aria-disabled") == "true"

    # Play until the rating opens, rate: the player then says nothing of when rating opens.
    page.click("button.play")
    page.locator('.rating .stars[aria-disabled="false"]').wait_for(timeout=60_000)
    stars = page.locator(".rating .stars")
    stars.focus()
    page.keyboard.press("End")
    page.click("button.rate")
    page.locator(".rating-hint", has_text="You rated this 5").wait_for()
    page.click("button.play")  # play on: heartbeats after the rating
    time.sleep(4)
    listened = page.locator(".listened").inner_text()
    assert listened.startswith("Listened") and "rating opens" not in listened, listened
    page.reload()
    page.locator(".player").wait_for(state="visible")
    wait_until(page, "document.querySelector('.listened').textContent.startsWith('Listened')")
    assert "rating opens" not in page.locator(".listened").inner_text()

    # Durations: the player, History and the rule (whole seconds, floored, m:ss) agree.
    wait_until(page, "document.querySelector('.player audio').duration > 0")
    player_total = page.locator(".time").inner_text().split("/")[1].strip()
    floor = math.floor(clip_seconds)
    expected = f"{floor // 60}:{floor % 60:02d}"
    assert player_total == expected, (player_total, clip_seconds)
    assert page.evaluate(
        "async () => { const { formatSeconds } = await import('/static/api.js');"
        " return [5.94, 59.99, 79.5, 0, 61].map(formatSeconds); }"
    ) == ["0:05", "0:59", "1:19", "0:00", "1:01"]
    page.goto("/history")
    row = page.locator(f"tr[data-delivery-id='{delivery_id}']")
    assert f"of {expected}" in row.inner_text()

    # Download from History too.
    with page.expect_download() as info:
        row.locator("a", has_text="WAV").click()
    audio, sr = sf.read(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert len(audio) / sr == pytest.approx(clip_seconds, abs=0.05)
    assert page.js_errors == []


@pytest.mark.parametrize("width", [WIDE, PHONE])
def test_no_page_scrolls_sideways_with_a_long_title(
    listener: Any, browser: Any, server: LiveServer, worker: Worker, width: int
) -> None:
    worker.start()
    wait_for_song(listener, listener.song_id)
    items = listener.request.get("/api/history").json()["items"]
    ready = [i for i in items if i["status"] == "ready"]
    if not ready:  # this test may run alone
        ask_in_the_page(listener)
        listener.locator(".player").wait_for(state="visible", timeout=240_000)
        items = listener.request.get("/api/history").json()["items"]
        ready = [i for i in items if i["status"] == "ready"]
    delivery_id = ready[0]["delivery_id"]

    page = new_page(browser, server, width)
    sign_in(page, "lin@example.org", "a-long-password")
    pages = ["/songs", "/history", f"/music/{delivery_id}", f"/songs/{listener.song_id}",
             "/upload", "/account", "/no/such/page"]
    for path in pages:
        page.goto(path)
        if path.startswith("/music/"):
            page.locator(".player").wait_for(state="visible")
            wait_until(page, "document.querySelector('.player audio').duration > 0")
        state = no_sideways_scroll(page)
        assert state["scroll"] <= state["client"], state
        assert LONG_TITLE[:40] in page.content() or path in ("/upload", "/account", "/no/such/page")

    # The player's time stays on one line.
    page.goto(f"/music/{delivery_id}")
    page.locator(".player").wait_for(state="visible")
    box = page.evaluate(
        "() => { const t = document.querySelector('.time'); const s = getComputedStyle(t);"
        " return { h: t.getBoundingClientRect().height, line: parseFloat(s.lineHeight) || 1.5 * parseFloat(s.fontSize),"
        " text: t.textContent }; }"
    )
    assert re.fullmatch(r"\d+:\d\d / \d+:\d\d", box["text"]), box
    assert box["h"] < 1.5 * box["line"], box

    # History is not cut off: every row's download links lie inside the window.
    page.goto("/history")
    right = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('tr[data-delivery-id] a')]"
        ".map((a) => a.getBoundingClientRect().right))"
    )
    assert right <= width, right
    # Error pages know who is signed in.
    page.goto("/no/such/page")
    assert page.locator("text=Sign out").is_visible()
    assert page.locator(".who a", has_text="Sign in").count() == 0
    assert page.js_errors == []

    # The operator's pages, where titles appear in tables, do not scroll sideways either.
    operator = new_page(browser, server, width)
    sign_in(operator, str(server.operator_email), str(server.operator_password))
    for path in ("/operator/report", "/operator/dataset", "/operator/versions",
                 "/operator/raters", "/operator/taste", "/operator/users"):
        operator.goto(path)
        state = no_sideways_scroll(operator)
        assert state["scroll"] <= state["client"], state
