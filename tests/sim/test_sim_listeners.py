"""The simulated listener model: tastes, ratings, listening behaviours, adversaries."""

from __future__ import annotations

import numpy as np
import pytest

from encore.sim.features import AudioFeatures, audio_features
from encore.sim.listeners import (
    Decision,
    ListenerSpec,
    Preference,
    Taste,
    decide,
    half_stars,
    stars_for,
)

CLIP = 5.9
MIN_LISTEN = 2.95


def feats(brightness: float = 10.0, density: float = 1.5, noisiness: float = -3.0,
          loudness: float = -15.0) -> AudioFeatures:
    return AudioFeatures(brightness=brightness, density=density, noisiness=noisiness,
                         loudness=loudness)


def honest(**changes: object) -> ListenerSpec:
    taste = Taste((
        Preference("brightness", target=10.0, width=0.7),
        Preference("noisiness", target=-2.5, width=0.25, weight=1.5, shape="below"),
    ))
    values: dict[str, object] = dict(name="h", kind="honest", group="g", taste=taste, bias=0.0,
                                     noise=0.0, skip_below=0.3)
    values.update(changes)
    return ListenerSpec(**values)  # type: ignore[arg-type]


def test_appeal_peaks_at_the_target_and_falls_with_distance() -> None:
    taste = honest().taste
    distances = [0.0, 0.3, 0.7, 1.5, 3.0]
    appeals = [taste.appeal(feats(brightness=10.0 + d)) for d in distances]
    assert appeals == sorted(appeals, reverse=True)
    assert appeals[0] > appeals[-1] + 0.3
    # symmetric peak
    assert taste.appeal(feats(brightness=9.5)) == pytest.approx(taste.appeal(feats(brightness=10.5)))


def test_noisier_audio_is_liked_less() -> None:
    taste = honest().taste
    values = [taste.appeal(feats(noisiness=n)) for n in (-4.0, -3.0, -2.5, -2.0, -1.0)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_rating_is_monotone_in_appeal_without_noise() -> None:
    rng = np.random.default_rng(0)
    appeals = np.linspace(0, 1, 21)
    stars = [stars_for(a, 0.0, 0.0, rng) for a in appeals]
    assert stars == sorted(stars)
    assert stars[0] == 1.0 and stars[-1] == 5.0
    assert all(s * 2 == int(s * 2) for s in stars)


def test_noisy_ratings_still_rise_with_appeal_on_average() -> None:
    rng = np.random.default_rng(1)
    low = np.mean([stars_for(0.2, 0.3, 0.5, rng) for _ in range(400)])
    high = np.mean([stars_for(0.8, 0.3, 0.5, rng) for _ in range(400)])
    assert high - low > 2.0  # 4 x 0.6 appeal, minus clipping at the ends


def test_bias_shifts_ratings() -> None:
    rng = np.random.default_rng(2)
    plain = np.mean([stars_for(0.5, 0.0, 0.3, rng) for _ in range(300)])
    harsh = np.mean([stars_for(0.5, -0.8, 0.3, rng) for _ in range(300)])
    assert plain - harsh == pytest.approx(0.8, abs=0.15)


def test_half_star_scale() -> None:
    assert half_stars(0.2) == 1.0 and half_stars(7.0) == 5.0 and half_stars(3.26) == 3.5


def test_honest_listeners_listen_longer_to_what_they_like() -> None:
    spec = honest(seek_probability=0.0, replay_probability=0.0)
    rng = np.random.default_rng(3)
    liked = [decide(spec, feats(), CLIP, MIN_LISTEN, rng) for _ in range(50)]
    disliked = [decide(spec, feats(brightness=13.0, noisiness=-1.0), CLIP, MIN_LISTEN, rng)
                for _ in range(50)]
    assert np.mean([d.listened_seconds for d in liked]) > np.mean([d.listened_seconds for d in disliked]) + 1.5
    assert np.mean([d.stars for d in liked]) > np.mean([d.stars for d in disliked]) + 2
    # a disliked clip is skipped right after the rating unlocks, but still long enough to rate
    for d in disliked:
        assert MIN_LISTEN <= d.listened_seconds <= MIN_LISTEN + 0.5


def test_every_decision_can_be_rated_and_stays_inside_the_clip() -> None:
    rng = np.random.default_rng(4)
    for kind in ("honest", "max_min_listen", "random", "min_listen"):
        spec = honest(kind=kind, seek_probability=0.5, replay_probability=0.5, noise=0.5)
        for _ in range(100):
            f = feats(brightness=float(rng.uniform(8, 13)), noisiness=float(rng.uniform(-4, -1)))
            d = decide(spec, f, CLIP, MIN_LISTEN, rng)
            assert d.listened_seconds >= MIN_LISTEN
            assert all(0 <= a < b <= CLIP for a, b in d.ranges)
            assert 1.0 <= d.stars <= 5.0 and d.stars * 2 == int(d.stars * 2)
            assert d.play_seconds >= d.listened_seconds - 1e-9


def test_seeks_and_replays_produce_gaps_and_overlaps() -> None:
    spec = honest(seek_probability=1.0, replay_probability=1.0)
    rng = np.random.default_rng(5)
    seen_gap = seen_overlap = False
    for _ in range(60):
        d = decide(spec, feats(brightness=10.4), CLIP, MIN_LISTEN, rng)
        ends = sorted(d.ranges)
        seen_overlap |= d.play_seconds > d.listened_seconds + 1e-6
        seen_gap |= any(b[0] > a[1] + 1e-6 for a, b in zip(ends, ends[1:], strict=False))
    assert seen_gap and seen_overlap


def test_max_min_listen_adversary_rates_high_after_the_minimum() -> None:
    spec = honest(kind="max_min_listen")
    rng = np.random.default_rng(6)
    ds = [decide(spec, feats(noisiness=-0.5), CLIP, MIN_LISTEN, rng) for _ in range(200)]
    assert np.mean([d.stars == 5.0 for d in ds]) > 0.8
    assert all(d.stars >= 4.5 for d in ds)
    assert all(d.listened_seconds <= MIN_LISTEN + 0.2 for d in ds)


def test_random_adversary_ignores_the_audio() -> None:
    spec = honest(kind="random")
    good = [decide(spec, feats(), CLIP, MIN_LISTEN, np.random.default_rng(i)).stars for i in range(300)]
    bad = [decide(spec, feats(brightness=13, noisiness=-0.5), CLIP, MIN_LISTEN,
                  np.random.default_rng(i)).stars for i in range(300)]
    assert good == bad  # same draws, whatever the clip sounds like
    assert len(set(good)) == 9  # every half star from 1 to 5
    assert abs(np.mean(good) - 3.0) < 0.25


def test_min_listen_adversary_always_stops_at_the_minimum_with_one_rating() -> None:
    spec = honest(kind="min_listen", fixed_stars=2.0)
    rng = np.random.default_rng(7)
    ds = [decide(spec, feats(brightness=b), CLIP, MIN_LISTEN, rng) for b in np.linspace(8, 13, 40)]
    assert {d.stars for d in ds} == {2.0}
    assert {d.ranges for d in ds} == {((0.0, round(MIN_LISTEN + 0.15, 3)),)}


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="'lurker'"):
        decide(honest(kind="lurker"), feats(), CLIP, MIN_LISTEN, np.random.default_rng(0))


def test_decision_union_counts_overlaps_once() -> None:
    d = Decision(((0.0, 2.0), (1.0, 3.0), (4.0, 5.0)), 3.0)
    assert d.listened_seconds == pytest.approx(4.0)
    assert d.play_seconds == pytest.approx(5.0)


def test_features_follow_the_audio() -> None:
    from encore.audio.synth import demo_music

    sr = 22050
    low = audio_features(demo_music(6, sr, seed=1, tempo_bpm=70, tonic_hz=110, percussion=False), sr)
    high = audio_features(demo_music(6, sr, seed=1, tempo_bpm=170, tonic_hz=660, percussion=False), sr)
    noise = audio_features(np.random.default_rng(0).normal(size=sr * 3).astype(np.float32) * 0.2, sr)
    assert high.brightness > low.brightness + 1.0  # octaves
    assert high.density > low.density
    assert noise.noisiness > max(low.noisiness, high.noisiness) + 1.0
    silent = audio_features(np.zeros(sr, dtype=np.float32), sr)
    assert np.isfinite([silent.brightness, silent.density, silent.noisiness, silent.loudness]).all()
