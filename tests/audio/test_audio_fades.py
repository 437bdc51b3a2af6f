"""The edge fade of served clips (issue 19): the first and last 5 ms of a clip cut out of
loud music are below −40 dBFS after the codec the service stores clips with, and nothing
between the fades changes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from encore.audio.encode import encode_audio
from encore.audio.fades import FADE_SECONDS, edge_gain_db, fade_edges, fade_gain
from encore.errors import InvalidInput

from .conftest import SR


def _edge_peaks_dbfs(y: np.ndarray, sr: int, ms: float = 5.0) -> tuple[float, float]:
    n = int(round(ms / 1000 * sr))
    return (20 * np.log10(max(float(np.abs(y[:n]).max()), 1e-12)),
            20 * np.log10(max(float(np.abs(y[-n:]).max()), 1e-12)))


def _served(y: np.ndarray, sr: int, fmt: str = "ogg") -> np.ndarray:
    out, file_sr = sf.read(io.BytesIO(encode_audio(y, sr=sr, format=fmt)), dtype="float32")
    assert file_sr == sr
    return out


@pytest.fixture
def cut(music: np.ndarray) -> np.ndarray:
    """A clip cut out of the middle of the music, starting and ending at a loud sample."""
    loud = np.flatnonzero(np.abs(music) > 0.4)
    start = int(loud[loud > SR][0])
    stop = int(loud[loud < len(music) - SR][-1]) + 1
    clip = music[start:stop]
    assert abs(clip[0]) > 0.4 and abs(clip[-1]) > 0.4
    return clip


@pytest.mark.parametrize("fmt", ["ogg", "wav"])
def test_served_edges_are_below_minus_40_dbfs_only_with_the_fade(cut, fmt) -> None:
    before = _edge_peaks_dbfs(_served(cut, SR, fmt), SR)
    after = _edge_peaks_dbfs(_served(fade_edges(cut, SR), SR, fmt), SR)
    assert min(before) > -10.0  # the click the fade removes
    assert max(after) < -40.0, after


def test_only_the_ends_change_and_the_edges_are_smooth(cut) -> None:
    original = cut.copy()
    faded = fade_edges(cut, SR)
    np.testing.assert_array_equal(cut, original)  # the input is not modified
    n = int(round(FADE_SECONDS * SR))
    assert faded.dtype == np.float32 and faded.shape == cut.shape
    np.testing.assert_array_equal(faded[n:-n], cut[n:-n])
    assert abs(faded[0]) < 1e-6 and abs(faded[-1]) < 1e-6
    # no step at the ends: the largest sample-to-sample jump in the fades is no larger
    # than the music's own
    jumps = np.abs(np.diff(faded))
    assert jumps[:n].max() <= np.abs(np.diff(cut)).max()
    assert jumps[-n:].max() <= np.abs(np.diff(cut)).max()


def test_ramp_rises_monotonically_and_matches_its_stated_gain() -> None:
    ramp = fade_gain(661)
    assert np.all(np.diff(ramp) > 0) and 0 < ramp[0] < 1e-6 and ramp[-1] > 0.999
    n5 = int(round(0.005 / FADE_SECONDS * 661))
    assert 20 * np.log10(ramp[:n5].max()) <= edge_gain_db(0.005) + 0.1
    assert edge_gain_db(0.005) < -60.0
    assert edge_gain_db(1.0) == 0.0


def test_stereo_short_and_empty_fades() -> None:
    stereo = np.ones((SR, 2), dtype=np.float32)
    faded = fade_edges(stereo, SR)
    np.testing.assert_array_equal(faded[:, 0], faded[:, 1])
    assert faded[0, 0] < 1e-6 and faded[SR // 2, 0] == 1.0
    short = fade_edges(np.ones(100, dtype=np.float32), SR)  # shorter than two fades
    assert short[0] < 1e-3 and short[-1] < 1e-3 and short[49] > 0.99 and short[50] > 0.99
    np.testing.assert_array_equal(fade_edges(np.ones(10), SR, seconds=0.0), np.ones(10))
    assert fade_edges(np.zeros(0, dtype=np.float32), SR).shape == (0,)


@pytest.mark.parametrize(
    "y, sr, seconds",
    [(np.ones((2, 2, 2)), SR, 0.03), (np.ones(10), 0, 0.03), (np.ones(10), SR, -1.0),
     (np.ones(10), SR, float("nan"))],
)
def test_bad_arguments_are_refused(y, sr, seconds) -> None:
    with pytest.raises(InvalidInput):
        fade_edges(y, sr, seconds=seconds)
