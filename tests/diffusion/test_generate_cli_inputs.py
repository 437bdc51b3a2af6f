"""``encore generate`` as a listener meets it (issue 19): repeated ``--from`` blends, the web
upload's rules for input songs checked before any model loads, long pieces with
``--seconds``, clean edges, no diffusers warning, no traceback (tiny model folders)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encore.cli import main

from ..songs import tone_file

SR = 22050


def _song(path: Path, seconds: float = 4.0, f0: float = 330.0) -> Path:
    return tone_file(path, f0, seconds, sr=SR)


@pytest.fixture
def broken_model(tmp_path: Path) -> Path:
    """A model folder that exists but cannot load: any error about it means a model load
    was tried."""
    folder = tmp_path / "broken-model"
    folder.mkdir()
    return folder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["generate", "--no-progress", "--steps", "2", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _params(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.usefixtures("env_settings")  # settings from the environment, read afresh
def test_repeated_from_blends_like_from_a_b(tiny_model_dir, tmp_path, capsys) -> None:
    a, b = _song(tmp_path / "a.wav"), _song(tmp_path / "b.flac", f0=550.0)
    common = ["--model", str(tiny_model_dir), "--seconds", "1.0"]
    code, out, err = _run(capsys, *common, "--out", str(tmp_path / "r.wav"),
                          "--from", str(a), "--from", str(b))
    assert code == 0, err
    repeated = _params(out)
    assert repeated["input_ids"] == [str(a), str(b)] and repeated["kind"] != "vary"
    code, out, _ = _run(capsys, *common, "--out", str(tmp_path / "n.wav"), "--from", str(a), str(b))
    assert code == 0 and _params(out)["input_ids"] == [str(a), str(b)]
    np.testing.assert_array_equal(sf.read(tmp_path / "r.wav")[0], sf.read(tmp_path / "n.wav")[0])


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda t: _song(t / "blip.wav", seconds=0.2),
         "'blip.wav' lasts 0.2 s, shorter than the minimum of 3.0 s"),
        (lambda t: (t / "notes.mp3").write_text("not audio\n" * 100) and t / "notes.mp3",
         "'notes.mp3'"),
        (lambda t: (t / "a folder").mkdir() or t / "a folder", "is a folder, not an audio file"),
        (lambda t: t / "missing.wav", "missing.wav: no such file"),
        (lambda t: _song(t / "silence.wav", seconds=4.0, f0=0.0), "'silence.wav' is silent"),
    ],
    ids=["too-short", "not-audio", "folder", "missing", "silent"],
)
@pytest.mark.usefixtures("env_settings")
def test_bad_inputs_fail_before_the_model_loads(broken_model, tmp_path, capsys, make, needle) -> None:
    good = _song(tmp_path / "good.wav")
    code, _, err = _run(capsys, "--model", str(broken_model), "--out", str(tmp_path / "o.wav"),
                        "--from", str(good), "--from", str(make(tmp_path)))
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert "broken-model" not in err and not (tmp_path / "o.wav").exists()


def test_the_size_limit_of_uploads_applies(broken_model, tmp_path, capsys, env_settings) -> None:
    env_settings(ENCORE_MAX_UPLOAD_BYTES="100000")
    song = _song(tmp_path / "big.wav", seconds=4.0)  # 176 kB
    code, _, err = _run(capsys, "--model", str(broken_model), "--out", str(tmp_path / "o.wav"),
                        "--from", str(song))
    assert code == 2 and "'big.wav' is 172.3 kB; the limit is 97.6 kB" in err, err


def test_long_pieces_and_loops_with_seconds(tiny_model_dir, tmp_path, capsys, env_settings) -> None:
    # 1-second windows: 2.5 s takes three
    env_settings(ENCORE_CLIP_SECONDS="1.0", ENCORE_PIECE_OVERLAP_SECONDS="0.3")
    song, other = _song(tmp_path / "s.wav"), _song(tmp_path / "o.wav", f0=550.0)
    for seconds, extra in ((2.5, []), (2.5, ["--from", str(song)]),
                           (3.0, ["--from", str(song), "--loop"]),
                           (2.5, ["--from", str(song), str(other)]),  # a long blend
                           (3.0, ["--from", str(song), "--from", str(other), "--loop"])):
        out_path = tmp_path / f"piece{len(extra)}.wav"
        code, out, err = _run(capsys, "--model", str(tiny_model_dir), "--seconds", str(seconds),
                              "--out", str(out_path), *extra)
        assert code == 0, err
        params = _params(out)
        assert len(params["windows"]) >= 3 and params["loop"] == ("--loop" in extra)
        audio, sr = sf.read(out_path)
        # a loop is whole frames long (it must close on a frame): within one hop
        assert sr == SR and len(audio) == pytest.approx(seconds * SR, abs=512 if extra[-1:] == ["--loop"] else 2)
    code, _, err = _run(capsys, "--model", str(tiny_model_dir), "--seconds", "49",
                        "--out", str(tmp_path / "x.wav"))
    assert code == 2 and "--seconds 49.0 must be in (0, 48]" in err
    code, _, err = _run(capsys, "--model", str(tiny_model_dir), "--seconds", "3", "--loop",
                        "--method", "slerp", "--from", str(song), str(other),
                        "--out", str(tmp_path / "x.wav"))
    assert code == 2 and "cannot loop" in err and not (tmp_path / "x.wav").exists()


@pytest.mark.usefixtures("env_settings")
def test_written_clips_start_and_end_quietly(tiny_model_dir, tmp_path, capsys) -> None:
    out_path = tmp_path / "clip.wav"
    code, _, err = _run(capsys, "--model", str(tiny_model_dir), "--seconds", "1.0",
                        "--out", str(out_path), "--from", str(_song(tmp_path / "s.wav")))
    assert code == 0, err
    audio, sr = sf.read(out_path)
    n = int(0.005 * sr)
    assert max(np.abs(audio[:n]).max(), np.abs(audio[-n:]).max()) < 10 ** (-40 / 20)
    assert np.abs(audio).max() > 0.9


def test_a_real_run_prints_no_warning_and_a_bad_file_no_traceback(tiny_model_dir,
                                                                   tmp_path) -> None:
    cmd = [sys.executable, "-m", "encore.cli", "generate", "--no-progress", "--steps", "2",
           "--model", str(tiny_model_dir), "--seconds", "1.0"]
    environ = {**os.environ, "PYTHONWARNINGS": "default"}
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "ok.wav")], capture_output=True,
                        text=True, timeout=600, env=environ)
    assert ok.returncode == 0, ok.stderr
    assert "accelerate" not in ok.stderr and "WARNING" not in ok.stderr, ok.stderr
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + os.urandom(3000))
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "bad-out.wav"), "--from",
                          str(tmp_path / "bad.wav")], capture_output=True, text=True,
                         timeout=600, env=environ)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "'bad.wav'" in bad.stderr, bad.stderr
