"""What a simulated listener hears: each feature does what its definition says on synthesized
audio, silence stays finite, and the four features tastes used before the others were added
are computed exactly as before (so the appeal of every existing taste is unchanged)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from encore.sim.features import (
    FEATURE_NAMES,
    SILENCE,
    AudioFeatures,
    audio_features,
)
from encore.sim.listeners import Preference, Taste

SR = 22050
SECONDS = 6.0
T = np.arange(int(SECONDS * SR)) / SR


def harmonic_tone(f0: float, partials: int = 6, gain: float = 0.3) -> np.ndarray:
    """A steady tone with ``partials`` harmonics falling as 1/k."""
    y = sum(np.sin(2 * np.pi * k * f0 * T) / k for k in range(1, partials + 1))
    return (gain * y).astype(np.float32)


def click_track(bpm: float) -> np.ndarray:
    """Short decaying noise bursts (10 ms) every beat, silence in between."""
    y = np.zeros(T.size)
    period = int(round(60.0 / bpm * SR))
    burst = np.random.default_rng(0).normal(size=220) * np.linspace(1.0, 0.0, 220) * 0.5
    for start in range(0, y.size - burst.size, period):
        y[start: start + burst.size] += burst
    return y.astype(np.float32)


def white_noise() -> np.ndarray:
    return (np.random.default_rng(0).normal(size=T.size) * 0.2).astype(np.float32)


def test_pitch_register_is_log2_of_the_fundamental() -> None:
    low = audio_features(harmonic_tone(220.0), SR)
    high = audio_features(harmonic_tone(880.0), SR)
    assert low.pitch == pytest.approx(math.log2(220.0), abs=0.02)
    assert high.pitch - low.pitch == pytest.approx(2.0, abs=0.03)  # two octaves
    # the fundamental, not the brightest partial: a pure sine of 220 Hz has the same register
    sine = audio_features((0.3 * np.sin(2 * np.pi * 220.0 * T)).astype(np.float32), SR)
    assert sine.pitch == pytest.approx(low.pitch, abs=0.02)


def test_tempo_is_log2_bpm_of_a_click_track() -> None:
    fast = audio_features(click_track(120.0), SR)
    slow = audio_features(click_track(60.0), SR)
    assert fast.tempo == pytest.approx(math.log2(120.0), abs=0.1)
    assert fast.tempo - slow.tempo == pytest.approx(1.0, abs=0.1)  # twice the tempo


def test_dynamic_range_is_the_spread_of_frame_levels_in_db() -> None:
    steady = audio_features(harmonic_tone(220.0), SR)
    # an exponential fade by 40 dB over the clip: levels spread evenly over 40 dB, so the
    # 95th and 10th percentiles are 85 % of 40 dB apart
    fade = harmonic_tone(220.0) * (10 ** (-40.0 * T / SECONDS / 20)).astype(np.float32)
    faded = audio_features(fade, SR)
    assert steady.dynamic_range == pytest.approx(0.0, abs=0.5)
    assert faded.dynamic_range == pytest.approx(0.85 * 40.0, abs=1.5)
    # the level of the whole clip does not matter, only its spread
    quiet = audio_features(fade * 0.1, SR)
    assert quiet.dynamic_range == pytest.approx(faded.dynamic_range, abs=0.1)


def test_harmonicity_separates_a_harmonic_tone_from_noise_and_clicks() -> None:
    tone = audio_features(harmonic_tone(220.0), SR)
    noise = audio_features(white_noise(), SR)
    clicks = audio_features(click_track(120.0), SR)
    assert tone.harmonicity > 25.0  # dB: nearly all the energy repeats with the period
    assert -15.0 < noise.harmonicity < -5.0
    assert clicks.harmonicity < 0.0
    # half tone, half noise (equal energy) lands in between
    mix = harmonic_tone(220.0) + white_noise() * float(np.std(harmonic_tone(220.0)) / 0.2)
    mixed = audio_features(mix.astype(np.float32), SR)
    assert noise.harmonicity + 5 < mixed.harmonicity < tone.harmonicity - 5


def test_every_feature_is_finite_and_silence_is_the_floor() -> None:
    for y in (np.zeros(SR, dtype=np.float32), np.zeros(100, dtype=np.float32)):
        silent = audio_features(y, SR)
        assert {n: silent.get(n) for n in FEATURE_NAMES} == SILENCE
    for y in (harmonic_tone(110.0), click_track(90.0), white_noise()):
        f = audio_features(y, SR)
        values = [f.get(n) for n in FEATURE_NAMES]
        assert np.isfinite(values).all()
        assert f.pitch >= SILENCE["pitch"] and f.tempo >= SILENCE["tempo"]
        assert f.harmonicity >= SILENCE["harmonicity"] and f.dynamic_range >= 0.0


# The first four features of two synthetic pieces, as computed before pitch, tempo, dynamic
# range and harmonicity were added (commit b9f6ca3).
BEFORE = [
    (dict(seed=1, tempo_bpm=70, tonic_hz=110, percussion=False),
     (8.821073007701349, 1.222392421336448, -4.836128180971372, -16.416734388924322)),
    (dict(seed=2, tempo_bpm=150, tonic_hz=440, percussion=True),
     (11.254326872599252, 2.273018494406416, -2.3954740328961828, -15.105511876403025)),
]


@pytest.mark.parametrize(("args", "before"), BEFORE)
def test_the_old_features_and_the_appeal_of_old_tastes_are_unchanged(
    args: dict[str, object], before: tuple[float, ...]
) -> None:
    from encore.audio.synth import demo_music

    f = audio_features(demo_music(6, SR, **args), SR)  # type: ignore[arg-type]
    now = (f.brightness, f.density, f.noisiness, f.loudness)
    assert now == pytest.approx(before, rel=1e-9, abs=1e-9)
    # a taste of the old kind reads only the old features: its appeal is a function of them
    old_taste = Taste((
        Preference("noisiness", target=-3.0, width=0.25, weight=1.5, shape="below"),
        Preference("brightness", target=10.0, width=0.7),
        Preference("density", target=1.5, width=0.8, weight=0.7),
        Preference("loudness", target=-15.0, width=8.0, weight=0.5),
    ))
    old_only = AudioFeatures(*before)
    assert old_taste.appeal(f) == pytest.approx(old_taste.appeal(old_only), rel=1e-9)


def test_a_missing_feature_is_an_error_not_a_default() -> None:
    by_hand = AudioFeatures(brightness=10.0, density=1.0, noisiness=-3.0, loudness=-15.0)
    assert by_hand.get("brightness") == 10.0
    with pytest.raises(ValueError, match="'pitch' was not computed"):
        by_hand.get("pitch")
    with pytest.raises(KeyError, match="unknown feature 'timbre'"):
        by_hand.get("timbre")
    full = AudioFeatures(10.0, 1.0, -3.0, -15.0, pitch=8.0, tempo=7.0, dynamic_range=4.0,
                         harmonicity=10.0)
    mean = AudioFeatures.mean([full, AudioFeatures(12.0, 2.0, -2.0, -10.0, 9.0, 6.0, 6.0, 0.0)])
    assert (mean.brightness, mean.pitch, mean.harmonicity) == (11.0, 8.5, 5.0)
    assert AudioFeatures.mean([full, by_hand]).pitch is None
