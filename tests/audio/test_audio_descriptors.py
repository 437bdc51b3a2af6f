"""Audio descriptors behave as their definitions say on synthesized audio."""

from __future__ import annotations

import numpy as np
import pytest

from encore.audio.descriptors import DESCRIPTOR_NAMES, audio_descriptors, descriptor_vector

SR = 22050
T = np.arange(int(3.0 * SR)) / SR


def tone(freq: float, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * T)).astype(np.float32)


def test_pitch_brightness_and_level_move_as_defined():
    low, high = audio_descriptors(tone(440), SR), audio_descriptors(tone(3520), SR)
    assert high["centroid"] - low["centroid"] == pytest.approx(3.0, abs=0.1)  # octaves
    assert high["rolloff"] > low["rolloff"] + 2.5
    loud = audio_descriptors(tone(440, 0.6), SR)
    assert loud["loudness"] - low["loudness"] == pytest.approx(6.02, abs=0.05)  # dB
    assert low["chroma_focus"] > 0.5  # one pitch class


def test_noise_is_flat_and_a_fade_has_dynamics():
    noise = np.random.default_rng(0).standard_normal(T.size).astype(np.float32) * 0.1
    n, t = audio_descriptors(noise, SR), audio_descriptors(tone(440), SR)
    assert n["flatness"] > t["flatness"] + 3  # decades
    assert n["high_energy"] > t["high_energy"] and n["chroma_focus"] < 0.05
    fade = tone(440) * np.linspace(1.0, 0.01, T.size).astype(np.float32)
    # a linear fade to -40 dB: the 90th-10th percentile spread of frame levels is ~18 dB
    assert audio_descriptors(fade, SR)["dynamics"] > 12 > t["dynamics"] + 11


def test_silence_and_short_input_are_finite():
    for y in (np.zeros(SR, np.float32), np.zeros(10, np.float32), tone(440)[:100]):
        d = audio_descriptors(y, SR)
        assert list(d) == list(DESCRIPTOR_NAMES) and all(np.isfinite(v) for v in d.values())
    assert np.isnan(descriptor_vector(None)).all()
    with pytest.raises(ValueError):
        audio_descriptors(tone(440), 0)
