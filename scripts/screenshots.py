#!/usr/bin/env python
"""Take screenshots of encore's main pages (PNG, for docs/screenshots/ and the README).

Starts a real ``encore serve`` in a temporary folder, walks through the platform in
Debian's Chromium (an operator invites two listeners; they upload songs — one of them a
file that is not audio — make music of the length they choose (a variation, a blend with
each song's share, a piece from a start marked on a song's spectrogram, waiting in the queue
with its place and the time left), listen, rate and download; the operator curates and
reads the report) and saves a screenshot of each page on the way.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--tiny]

By default the shipped models are used when they exist (nicer spectrograms); ``--tiny``
uses tiny random models (fast, but the clips are noise).
"""

# ruff: noqa: T201  (a command-line script: it reports with print)
from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from encore.config import Settings
from encore.web.liveserver import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
SONGS = [("Morning walk.wav", 1, 196.0, 100.0), ("Night train.wav", 2, 164.8, 132.0),
         ("Harbour lights.wav", 3, 246.9, 88.0)]


def song(seed: int, tonic: float, tempo: float, seconds: float = 20.0) -> bytes:
    from encore.audio.synth import demo_music

    y = demo_music(seconds, 22050, seed=seed, tonic_hz=tonic, tempo_bpm=tempo)
    buf = io.BytesIO()
    sf.write(buf, (0.5 * y / np.abs(y).max()).astype(np.float32), 22050, format="WAV")
    return buf.getvalue()


def wait_until(page, expression: str, timeout: float = 120.0):  # noqa: ANN001, ANN201
    """Poll a JS expression (``wait_for_function`` uses eval, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(f"() => ({expression})")):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.1)
    return value


def tiny_models(root: Path) -> dict[str, str]:
    from encore.web.bench import _tiny_models

    base, sim = _tiny_models(root)
    return {"ENCORE_BASE_MODEL_DIR": str(base), "ENCORE_SIMILARITY_MODEL_DIR": str(sim)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--tiny", action="store_true", help="tiny random models (fast)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="encore-shots-") as tmp:
        root = Path(tmp)
        env = {
            "ENCORE_MIN_LISTEN_SECONDS": "2",
            "ENCORE_BASELINE_PROBABILITY": "0",
            "ENCORE_CURATION_MIN_RATINGS": "1",
        }
        defaults = Settings()
        tiny = tiny_models(root / "models")
        if args.tiny or not (defaults.base_model_dir / "unet").is_dir():
            print("diffusion: tiny random model")
            env["ENCORE_BASE_MODEL_DIR"] = tiny["ENCORE_BASE_MODEL_DIR"]
            env.update({"ENCORE_CLIP_SECONDS": "3", "ENCORE_INFERENCE_STEPS": "3"})
        else:
            print(f"diffusion: shipped model {defaults.base_model_dir}")
            env.update({"ENCORE_INFERENCE_STEPS": "20"})
        if args.tiny or not defaults.similarity_model_dir.is_dir():
            print("similarity: tiny random model")
            env["ENCORE_SIMILARITY_MODEL_DIR"] = tiny["ENCORE_SIMILARITY_MODEL_DIR"]
        with LiveServer(root / "var", env=env, startup_timeout=300) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            shoot = Shooter(browser, server, args.out)
            shoot.run()
            browser.close()
    print(f"screenshots in {args.out}")
    return 0


class Shooter:
    def __init__(self, browser, server: LiveServer, out: Path) -> None:  # noqa: ANN001
        self.browser = browser
        self.server = server
        self.out = out

    def page(self):  # noqa: ANN201
        context = self.browser.new_context(
            base_url=self.server.url, viewport={"width": 1280, "height": 860}, device_scale_factor=1
        )
        context.set_default_timeout(120_000)
        return context.new_page()

    def snap(self, page, name: str, full: bool = True) -> None:  # noqa: ANN001
        page.wait_for_timeout(300)
        path = self.out / f"{name}.png"
        page.screenshot(path=str(path), full_page=full)
        print(f"  {path}")

    def sign_in(self, page, email: str, password: str) -> None:  # noqa: ANN001
        page.goto("/signin")
        page.fill("#email", email)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/(songs|operator/report)$"))

    def invite(self, op) -> str:  # noqa: ANN001
        op.goto("/operator/users")
        op.click("text=Create an invitation code")
        op.locator(".code-box").wait_for()
        return str(op.locator(".code-box").inner_text()).strip()

    def sign_up(self, code: str, name: str, shot: bool = False):  # noqa: ANN201
        page = self.page()
        page.goto(f"/signup?code={code}")
        page.fill("#display_name", name)
        page.fill("#email", f"{name.lower()}@example.org")
        page.fill("#password", "a-long-password")
        if shot:
            self.snap(page, "signup")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/upload$"))
        return page

    def listen_and_rate(self, page, delivery_url: str, stars: str, shot: str | None = None) -> None:  # noqa: ANN001
        page.goto(delivery_url)
        page.locator(".player").wait_for(state="visible", timeout=600_000)
        wait_until(page, "document.querySelector('.spectrogram img').naturalWidth > 0")
        page.click("button.play")
        page.locator('.rating .stars[aria-disabled="false"]').wait_for(timeout=120_000)
        page.locator(".rating .stars").focus()
        for key in stars:
            page.keyboard.press(key)
        if shot:
            page.click("button.play")  # pause, so the playhead stays put
            self.snap(page, shot)
        page.click("button.rate")
        page.locator(".rating-hint", has_text="You rated").wait_for()

    def make_music(self, page, pick: list[int], closeness: str | None = None,  # noqa: ANN001
                   shot: str | None = None, seconds: str | None = None,
                   shares: list[str] | None = None) -> str:
        page.goto("/songs")
        boxes = page.locator("input[name=song]")
        for i in pick:
            boxes.nth(i).check()
        if closeness is not None:
            page.fill("#closeness", closeness)
            page.locator("#closeness").dispatch_event("input")
        for i, share in zip(pick, shares or [], strict=False):
            weight = page.locator(".song-list li").nth(i).locator("input[name=weight]")
            weight.fill(share)
            weight.dispatch_event("input")
        if seconds is not None:
            page.select_option("#make-seconds", seconds)
        if shot:
            self.snap(page, shot)
        page.click("button.make")
        page.wait_for_url(re.compile(r"/music/\d+$"))
        return page.url

    def piece_from_song_page(self, page, index: int, at: float, seconds: str) -> str:  # noqa: ANN001
        """On a song's page: mark the start at a fraction ``at`` of the spectrogram, choose
        the length (screenshot ``song``), ask, and photograph the request waiting
        (``progress``: its place in the queue, the time left, the cancel button)."""
        page.goto("/songs")
        page.locator(".song-list li").nth(index).locator("a", has_text="listen").click()
        page.wait_for_url(re.compile(r"/songs/\d+$"))
        picture = page.locator(".song-spectrogram")
        wait_until(page, "document.querySelector('.song-spectrogram img').naturalWidth > 0")
        box = picture.bounding_box()
        picture.click(position={"x": box["width"] * at, "y": box["height"] / 2})
        page.select_option("#piece-seconds", seconds)
        page.locator("#piece-seconds").dispatch_event("change")
        self.snap(page, "song")
        page.click("#piece-make")
        page.wait_for_url(re.compile(r"/music/\d+$"))
        url = page.url
        try:  # the blend before it is still being made: it waits, with its place in the queue
            wait_until(page, "/queue/.test(document.querySelector('.queue-info').textContent)"
                       " && /left/.test(document.querySelector('.queue-info').textContent)",
                       timeout=20)
            self.snap(page, "progress")
        except TimeoutError:
            print("  (the request did not wait in the queue: no progress screenshot)")
        return url

    def run(self) -> None:
        s = self.server
        op = self.page()
        op.goto("/signin")
        self.snap(op, "signin")
        self.sign_in(op, s.operator_email, s.operator_password)

        ada = self.sign_up(self.invite(op), "Ada", shot=True)
        files = [{"name": n, "mimeType": "audio/wav", "buffer": song(seed, tonic, tempo)}
                 for n, seed, tonic, tempo in SONGS]
        files.append({"name": "shopping list.mp3", "mimeType": "audio/mpeg",
                      "buffer": b"eggs, milk, bread\n" * 60})
        ada.set_input_files("#files", files=files)
        ada.locator(".upload-item[data-state=done]").nth(2).wait_for()
        ada.locator(".upload-item[data-state=error]").wait_for()
        self.snap(ada, "upload")
        for _ in range(600):  # the worker analyses the songs
            songs = ada.request.get("/api/songs").json()["songs"]
            if all(x["status"] == "ready" for x in songs):
                break
            time.sleep(0.5)

        first = self.make_music(ada, [0], closeness="0.7", shot="make-music")
        self.listen_and_rate(ada, first, ["End", "ArrowLeft"], shot="player")
        blend = self.make_music(ada, [0, 1], shot="blend", shares=["0.7", "0.3"])
        # while the blend is made: a piece from a start marked on a song's spectrogram, which
        # waits in the queue behind it (its place, the time left once a job has been measured)
        waiting = ada.context.new_page()
        third = self.piece_from_song_page(waiting, index=2, at=0.4, seconds="12")
        self.listen_and_rate(ada, blend, ["Home", "ArrowRight", "ArrowRight", "ArrowRight"])
        self.listen_and_rate(waiting, third, ["ArrowRight"])
        waiting.close()
        ada.goto("/history")
        self.snap(ada, "history")

        bob = self.sign_up(self.invite(op), "Bob")
        bob.set_input_files("#files", files=files[1:3])
        bob.locator(".upload-item[data-state=done]").nth(1).wait_for()
        for _ in range(600):
            if all(x["status"] == "ready" for x in bob.request.get("/api/songs").json()["songs"]):
                break
            time.sleep(0.5)
        for pick, keys in (([0], ["End"]), ([1], ["Home"]), ([0, 1], ["ArrowLeft"])):
            url = self.make_music(bob, pick, closeness="0.5" if len(pick) == 1 else None,
                                  seconds="6")
            self.listen_and_rate(bob, url, keys)

        op.goto("/operator/dataset")
        op.click("text=Curate now")
        op.wait_for_load_state("networkidle")
        op.goto("/operator/dataset")
        self.snap(op, "operator-dataset")
        op.goto("/operator/raters")
        self.snap(op, "operator-raters")
        op.goto("/operator/versions")
        self.snap(op, "operator-versions")
        op.goto("/operator/report")
        wait_until(op, "[...document.querySelectorAll('.plots img')].every(i => i.complete)")
        self.snap(op, "operator-report")
        op.goto("/operator/users")
        self.snap(op, "operator-users")


if __name__ == "__main__":
    sys.exit(main())
