"""Encoding for the browser and for download, and the encode → decode round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from encore.audio.decode import load_audio, probe_audio
from encore.audio.encode import PEAK_DBFS, encode_audio, mime_type, peak_normalize
from encore.errors import InvalidInput

SR = 22050


def _spectral_similarity(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.size, b.size)
    fa, fb = np.abs(np.fft.rfft(a[:n])), np.abs(np.fft.rfft(b[:n]))
    return float(fa @ fb / np.linalg.norm(fa) / np.linalg.norm(fb))


@pytest.mark.parametrize("fmt", ["wav", "ogg", "mp3"])
def test_round_trip(music, fmt):
    loud = music * 3.0  # peaks at 2.4: must be normalised, not clipped
    data = encode_audio(loud, sr=SR, format=fmt)
    info = probe_audio(data)
    assert (info.format, info.sample_rate, info.channels) == (fmt, SR, 1)
    y = load_audio(data, sr=SR)
    assert y.size == music.size
    assert np.max(np.abs(y)) <= 1.0
    target = 10 ** (PEAK_DBFS[fmt] / 20)
    assert np.max(np.abs(y)) == pytest.approx(target, rel=0.08)
    expected = loud * (target / np.max(np.abs(loud)))
    if fmt == "wav":
        np.testing.assert_allclose(y, expected, atol=1.0 / 32768 + 1e-6)
    else:
        assert _spectral_similarity(y, expected) > 0.95


def test_wav_is_16_bit_pcm(music):
    info = sf.info(io.BytesIO(encode_audio(music, sr=SR, format="wav")))
    assert (info.format, info.subtype) == ("WAV", "PCM_16")


def test_lossy_quality_trades_size(music):
    small = encode_audio(music, sr=SR, format="ogg", quality=0.1)
    large = encode_audio(music, sr=SR, format="ogg", quality=0.9)
    assert len(small) < len(large)


def test_peak_normalize_keeps_silence_and_scales_to_the_target():
    assert not np.any(peak_normalize(np.zeros(100)))
    y = peak_normalize(np.array([0.1, -0.5, 0.25]), -6.0)
    assert np.max(np.abs(y)) == pytest.approx(10 ** (-6 / 20))
    np.testing.assert_allclose(y / y[1], [-0.2, 1.0, -0.5], rtol=1e-6)


def test_mime_types():
    assert [mime_type(f) for f in ("wav", "ogg", "mp3")] == ["audio/wav", "audio/ogg", "audio/mpeg"]


@pytest.mark.parametrize(
    ("y", "kwargs", "match"),
    [
        (np.zeros(0), {"format": "wav"}, r"n > 0, got \(0,\)"),
        (np.array([0.1, np.nan]), {"format": "wav"}, r"1 non-finite"),
        (np.zeros((2, 2, 2)), {"format": "wav"}, r"got \(2, 2, 2\)"),
        (np.zeros(100), {"format": "flac"}, r"'flac' is not one of"),
        (np.zeros(100), {"format": "mp3", "sr": 96000}, r"mp3 cannot be encoded at 96000 Hz"),
        (np.full(100, 1.5), {"format": "wav", "normalize": False}, r"peak 1.500 exceeds 1.0"),
    ],
)
def test_bad_input_is_refused(y, kwargs, match):
    kwargs.setdefault("sr", SR)
    with pytest.raises(InvalidInput, match=match):
        encode_audio(y, **kwargs)
