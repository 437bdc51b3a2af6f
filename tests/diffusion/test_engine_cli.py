"""The audio-level Engine and ``encore generate`` (tiny model folders, synthetic songs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encore.cli import main
from encore.config import get_settings
from encore.diffusion.engine import Engine, canvas_width
from encore.errors import NotFound

from ..songs import tone_file

SR = 22050


def _song(path: Path, seconds: float = 6.0, intro: float = 2.0) -> Path:
    """A synthetic song with a silent intro: a tone with a few onsets."""
    return tone_file(path, 330, seconds, intro=intro, sr=SR)


def test_wider_canvas_gives_the_requested_seconds(tiny_model_dir: Path) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    assert engine.mel.x_res == 16  # trained crops: 16 frames = 0.37 s
    clips = engine.generate_batch(seconds=2.5, seeds=[1, 2], steps=3)
    frames, width = engine.canvas(2.5)
    assert len(clips) == 2
    for clip, seed in zip(clips, (1, 2), strict=True):
        assert clip.audio.shape == (round(2.5 * SR),)
        assert clip.seconds == pytest.approx(2.5)
        assert clip.image.shape == (16, frames) and clip.image.dtype == np.uint8
        assert clip.params["width"] == width and clip.params["seed"] == seed
        assert clip.params["batch_seeds"] == [1, 2]
        assert clip.audio.dtype == np.float32 and np.isfinite(clip.audio).all()
    assert (frames - 1) * engine.mel.hop_length >= 2.5 * SR
    assert width % engine.model.denoiser.width_multiple == 0 and width >= frames
    fractions: list[float] = []
    single = engine.generate(seconds=2.5, seed=1, steps=3, progress=fractions.append)
    assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert np.allclose(single.audio, clips[0].audio, atol=1e-3)


def test_canvas_width_for_the_default_clip() -> None:
    from encore.audio.mel import MelConfig

    frames, width = canvas_width(5.9, MelConfig(x_res=128, y_res=128), 16)
    assert (frames, width) == (256, 256)


def test_vary_at_strength_zero_gives_back_the_song_spectrogram(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    song = _song(tmp_path / "song.wav")
    image, offset = engine.song_image(song, 1.5)
    assert offset >= 1.9  # past the silent intro
    clip = engine.vary(song, strength=0.0, seed=0, steps=4, seconds=1.5)
    assert np.array_equal(clip.image, image[:, : clip.image.shape[1]])
    assert clip.params["start_step"] == 4 and clip.params["offsets"] == [offset]
    again = engine.vary(song, strength=0.5, seed=3, steps=4, seconds=1.5)
    assert np.array_equal(
        again.audio, engine.vary(song, strength=0.5, seed=3, steps=4, seconds=1.5).audio
    )


def test_song_windows_are_disjoint_loud_and_begin_with_the_default_window(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    # a quiet tone, then a loud one: the loud part holds the first windows
    quiet = 0.05 * np.sin(2 * np.pi * 220 * np.arange(int(3 * SR)) / SR)
    loud = 0.6 * np.sin(2 * np.pi * 330 * np.arange(int(3 * SR)) / SR)
    y = np.concatenate([quiet, loud]).astype(np.float32)
    _, default = engine.song_image(y, 0.5)
    starts = engine.song_windows(y, 0.5, 4)
    assert len(starts) == 4 and starts[0] == pytest.approx(default, abs=1e-6)
    window = engine.mel.replace(x_res=engine.canvas(0.5)[1]).slice_samples / SR
    ordered = sorted(starts)
    assert all(b - a >= window - 1e-6 for a, b in zip(ordered, ordered[1:], strict=False))
    assert starts[1] >= 3.0 - window  # the loud half comes before the quiet one
    assert engine.song_windows(y, 0.5, 4) == starts  # deterministic (paired deliveries)
    # a song that holds one window repeats it
    short = y[-int(0.6 * SR):]
    assert len(set(engine.song_windows(short, 0.5, 3))) == 1
    # the windows vary in one batch: each candidate records its own start
    clips = engine.vary_songs([y] * 2, strength=0.5, seeds=[1, 2], steps=3, seconds=0.5,
                              offsets=starts[:2])
    assert [c.params["offsets"] for c in clips] == [[starts[0]], [starts[1]]]


def test_missing_default_model_names_its_path(env_settings, tmp_path: Path) -> None:
    env_settings(ENCORE_BASE_MODEL_DIR=str(tmp_path / "no-base-model"))
    with pytest.raises(NotFound, match="no-base-model"):
        Engine()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["generate", "--no-progress", *argv])
    return code, capsys.readouterr().err


def _generate(model_dir: Path, out: Path, *argv: str) -> int:
    """``encore generate`` with ``model_dir`` writing ``out`` (its exit code)."""
    return main(["generate", "--no-progress", "--model", str(model_dir), "--out", str(out), *argv])


def test_cli_generates_a_clip_and_its_png(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.wav"
    assert _generate(tiny_model_dir, out, "--seconds", "1.2", "--steps", "3", "--seed", "5") == 0
    audio, sr = sf.read(out)
    assert sr == SR and len(audio) == round(1.2 * SR)
    assert 0.9 < np.abs(audio).max() <= 0.95 + 1e-3  # peak-normalised
    assert out.with_suffix(".png").is_file()
    printed = capsys.readouterr().out
    assert '"seed": 5,' in printed
    assert f'"sampler": "{get_settings().sampler}"' in printed


def test_cli_sampler_flag_and_eta_choose_the_solver(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--seconds", "1.0", "--steps", "3"]
    assert _generate(tiny_model_dir, tmp_path / "u.wav", *common, "--sampler", "unipc") == 0
    assert '"sampler": "unipc"' in capsys.readouterr().out
    assert _generate(tiny_model_dir, tmp_path / "e.wav", *common, "--eta", "0.5") == 0
    assert '"sampler": "ddim"' in capsys.readouterr().out  # η > 0 needs DDIM


def test_cli_merge_of_two_songs(tiny_model_dir: Path, tmp_path: Path) -> None:
    a, b = _song(tmp_path / "a.wav"), _song(tmp_path / "b.flac", intro=0.5)
    out = tmp_path / "m.ogg"
    code = _generate(tiny_model_dir, out, "--from", str(a), str(b), "--weights", "2", "1",
                     "--seconds", "1.0", "--steps", "3")
    assert code == 0
    info = sf.info(out)
    assert info.format == "OGG" and info.duration == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("make_args", "needle"),
    [
        (lambda d, t: ["--from", str(t / "missing.wav")], "missing.wav"),
        (lambda d, t: ["--from", str(_song(t / "s.wav")), "--strength", "1.5"], "1.5"),
        (lambda d, t: ["--model", str(t / "nomodel")], "nomodel"),
        (lambda d, t: ["--seconds", "-2"], "-2"),
    ],
    ids=["missing-song", "bad-strength", "missing-model", "bad-seconds"],
)
def test_cli_errors_exit_2_with_one_line_naming_the_value(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_args,
    needle: str,
) -> None:
    args = make_args(tiny_model_dir, tmp_path)
    if "--model" not in args:
        args = ["--model", str(tiny_model_dir), *args]
    code, err = _cli(capsys, "--out", str(tmp_path / "o.wav"), *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_cli_non_audio_song_is_rejected(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "notes.wav"
    fake.write_text("these are not samples\n" * 50)
    code, err = _cli(
        capsys,
        "--model",
        str(tiny_model_dir),
        "--out",
        str(tmp_path / "o.wav"),
        "--from",
        str(fake),
    )
    assert code == 2 and "notes.wav" in err


def test_cli_unknown_output_extension(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(capsys, "--model", str(tiny_model_dir), "--out", str(tmp_path / "o.mp4"))
    assert code == 2 and ".mp4" in err
