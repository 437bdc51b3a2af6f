"""Set metrics of the evaluation: Fréchet distance, kernel distance, normalised score, diversity."""

from __future__ import annotations

import numpy as np
import pytest

from encore.diffusion.evaluate import (
    Standardiser,
    frechet_distance,
    kernel_distance,
    mean_pairwise_distance,
    nearest_neighbour_distances,
    normalised_score,
)
from encore.diffusion.features import clip_features, feature_names
from encore.errors import InvalidInput


def test_frechet_distance_of_a_set_with_itself_is_zero(rng: np.random.Generator) -> None:
    x = rng.normal(size=(40, 6))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_is_the_closed_form_for_known_gaussians(rng: np.random.Generator) -> None:
    # Diagonal covariances: FD = |dmu|^2 + sum (s1 - s2)^2 with s the standard deviations.
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * np.array([2.0, 1.0, 0.5]) + np.array([1.0, 0.0, -2.0])
    expected = 1.0 + 4.0 + (1 - 2) ** 2 + 0.0 + (1 - 0.5) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.05)


def test_frechet_distance_grows_with_a_shift(rng: np.random.Generator) -> None:
    a = rng.normal(size=(64, 5))
    b = rng.normal(size=(64, 5))
    fds = [frechet_distance(a, b + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert fds == sorted(fds)
    # a pure shift by s in every coordinate adds about d * s^2
    assert fds[3] - fds[0] == pytest.approx(5 * 4.0, rel=0.25)


def test_frechet_distance_survives_singular_covariances(rng: np.random.Generator) -> None:
    a, b = rng.normal(size=(8, 30)), rng.normal(size=(8, 30))  # n < d: rank-deficient
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0


def test_kernel_distance_is_unbiased_near_zero_for_one_distribution(rng: np.random.Generator) -> None:
    values = [kernel_distance(rng.normal(size=(32, 8)), rng.normal(size=(32, 8))) for _ in range(200)]
    spread = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values)) < 3 * spread
    assert min(values) < 0 < max(values)  # unbiased, so not always positive
    shifted = kernel_distance(rng.normal(size=(32, 8)), rng.normal(size=(32, 8)) + 1.0)
    assert shifted > np.mean(values) + 10 * np.std(values)


def test_normalised_score_on_hand_computed_numbers() -> None:
    assert normalised_score(fd_model=30.0, fd_real=10.0, fd_untrained=90.0) == pytest.approx(0.25)
    assert normalised_score(10.0, 10.0, 90.0) == 0.0
    assert normalised_score(90.0, 10.0, 90.0) == 1.0
    assert normalised_score(5.0, 10.0, 30.0) == pytest.approx(-0.25)
    with pytest.raises(InvalidInput, match="FD_untrained"):
        normalised_score(1.0, 10.0, 10.0)


def test_mean_pairwise_distance_and_nearest_neighbours() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 8.0]])
    # pairs: 5, 8, 5 -> mean 6
    assert mean_pairwise_distance(x) == pytest.approx(6.0)
    ref = np.array([[0.0, 1.0], [3.0, 4.0]])
    nn = nearest_neighbour_distances(x, ref)
    assert nn == pytest.approx(np.array([1.0, 0.0, 5.0]) / np.sqrt(2))


def test_standardiser_uses_the_reference_statistics(rng: np.random.Generator) -> None:
    ref = rng.normal(loc=5.0, scale=3.0, size=(100, 4))
    z = Standardiser.fit(ref)(ref)
    assert z.mean(axis=0) == pytest.approx(np.zeros(4), abs=1e-9)
    assert z.std(axis=0) == pytest.approx(np.ones(4))


def test_clip_features_shape_and_sensitivity(rng: np.random.Generator) -> None:
    sr = 22050
    t = np.arange(sr * 2) / sr
    hiss = 1e-3 * rng.normal(size=t.size)
    low = (np.sin(2 * np.pi * 220 * t) + hiss).astype(np.float32)
    high = (np.sin(2 * np.pi * 1760 * t) + hiss).astype(np.float32)
    f_low, f_low_loud, f_high = (clip_features(a, sr) for a in (low, 10 * low, high))
    assert f_low.shape == (len(feature_names()),) and np.isfinite(f_low).all()
    assert f_low == pytest.approx(f_low_loud, rel=1e-3, abs=1e-2)  # level-invariant
    assert np.linalg.norm(f_low - f_high) > 1.0
    silent = clip_features(np.zeros(sr, dtype=np.float32), sr)
    assert np.isfinite(silent).all()
