"""Issue 18 §2: decoding is bounded in memory and refuses absurd sample rates / channels."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encore.audio.decode import load_audio
from encore.config import Settings
from encore.errors import UnsupportedAudio


def _sine_flac(path_or_buf, sr: int, channels: int, seconds: float) -> None:
    with sf.SoundFile(path_or_buf, "w", samplerate=sr, channels=channels, format="FLAC",
                      subtype="PCM_16") as f:
        step = sr * 10
        for t0 in range(0, int(sr * seconds), step):
            t = np.arange(t0, min(t0 + step, int(sr * seconds))) / sr
            y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            f.write(np.repeat(y[:, None], channels, axis=1))


def test_a_4_second_file_at_655350_hz_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    _sine_flac(buf, 655_350, 1, 4.0)
    s = Settings()
    with pytest.raises(UnsupportedAudio, match="sample rate of 655350 Hz, above the limit of 96000 Hz"):
        load_audio(buf.getvalue(), sr=22050, max_sample_rate=s.max_sample_rate,
                   max_channels=s.max_channels)


def test_too_many_channels_are_refused() -> None:
    buf = io.BytesIO()
    sf.write(buf, np.full((22050, 12), 0.1, np.float32), 22050, format="WAV")
    with pytest.raises(UnsupportedAudio, match="12 channels, more than the limit of 8"):
        load_audio(buf.getvalue(), sr=22050, max_channels=8)


def test_streamed_resampling_matches_the_one_shot_resampler() -> None:
    from encore.audio.decode import resample

    rng = np.random.default_rng(0)
    y = (0.3 * rng.standard_normal(44100 * 3)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, 44100, format="WAV", subtype="FLOAT")
    streamed = load_audio(buf.getvalue(), sr=22050)
    one_shot = resample(y, 44100, 22050)
    assert streamed.shape == one_shot.shape
    # soxr's stream and one-shot paths differ only at the block seams, by float rounding.
    assert np.max(np.abs(streamed - one_shot)) < 1e-4


MEASURE = """
import os, resource, sys
from encore.audio.decode import load_audio
from encore.config import Settings
data = open(sys.argv[1], 'rb').read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = Settings()
y = load_audio(data, sr=22050, max_seconds=s.max_song_seconds,
               max_sample_rate=s.max_sample_rate, max_channels=s.max_channels)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(y.shape[0], (after - before) * 1024)
"""


@pytest.mark.slow
def test_the_longest_upload_at_the_highest_rate_decodes_within_600_mb(tmp_path: Path) -> None:
    """15 minutes at 96 kHz (the limits; 28 MB as FLAC): peak RSS growth of the decode,
    in a fresh process. Before streaming it was ~1 GB (4 GB for the 655 kHz probe)."""
    s = Settings()
    path = tmp_path / "long.flac"
    _sine_flac(path, s.max_sample_rate, 1, s.max_song_seconds)
    assert path.stat().st_size < s.max_upload_bytes
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True,
                         text=True, check=True).stdout.split()
    samples, growth = int(out[0]), int(out[1])
    assert samples == int(np.ceil(s.max_song_seconds * 22050))
    assert growth <= 600 * 1024 * 1024, f"peak RSS grew by {growth / 1e6:.0f} MB"
