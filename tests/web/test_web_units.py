"""What a listener reads about sizes and durations on the pages and in upload errors
(issue 19): the file's own name, limits in kB/MB and m:ss, and durations rounded down to
whole seconds as the browser's audio element shows them."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from .web_helpers import song_bytes, upload


def test_upload_over_the_size_limit_names_the_file_in_kb(listener: TestClient) -> None:
    response = upload(listener, song_bytes(6, seconds=12.0), name="Long take.wav")
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    # too big to read at all: the body limit answers, with the file's limit
    assert message == "the file is over the limit of 390.6 kB (the request is 517.0 kB)", message


def test_upload_just_over_the_size_limit_names_the_file(listener: TestClient) -> None:
    data = song_bytes(6, seconds=9.1)  # 401 354 bytes: within the multipart allowance
    response = upload(listener, data, name="Long take.wav")
    assert response.status_code == 413
    assert response.json()["error"]["message"] == (
        "'Long take.wav' is 391.9 kB; the limit is 390.6 kB")


def test_too_short_names_the_file_and_the_minimum(listener: TestClient) -> None:
    response = upload(listener, song_bytes(5, seconds=0.3), name="blip.wav")
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "'blip.wav' lasts 0.3 s, shorter than the minimum of 1.0 s")


def test_song_durations_are_rounded_down_like_the_audio_element(listener: TestClient) -> None:
    song = upload(listener, song_bytes(8, seconds=2.9), name="almost three.wav").json()["song"]
    assert 2.89 < song["duration_seconds"] < 2.91
    for page in (listener.get("/songs").text, listener.get(f"/songs/{song['id']}").text):
        assert re.search(r"\b0:02\b", page) and not re.search(r"\b0:03\b", page)
