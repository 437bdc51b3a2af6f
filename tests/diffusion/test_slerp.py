"""Spherical interpolation: two-way SLERP and the weighted N-way spherical mean."""

from __future__ import annotations

import math

import pytest
import torch

from encore.diffusion.slerp import orthogonal_direction, slerp, slerp_n, validate_weights
from encore.errors import InvalidInput

D = (1, 16, 64)  # a noise-like tensor of 1024 numbers


def _noise(seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(D, generator=torch.Generator().manual_seed(seed))


def _norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x.double()))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(
        torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), 0)
    )


def test_endpoints_are_the_inputs() -> None:
    a, b = _noise(1), _noise(2)
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.equal(slerp(a, b, 1.0), b)


def test_midpoint_of_gaussians_keeps_sqrt_d_norm_and_lerp_does_not() -> None:
    a, b = _noise(1), _noise(2)
    mid = slerp(a, b, 0.5)
    assert abs(_norm(mid) - (_norm(a) + _norm(b)) / 2) < 1e-4
    assert abs(_norm(mid) / math.sqrt(a.numel()) - 1) < 0.1
    assert _norm((a + b) / 2) < 0.8 * _norm(mid)  # the shrinkage slerp avoids


def test_norm_is_the_weighted_mean_of_norms_for_unequal_norms() -> None:
    a, b = _noise(1, 1.0), _noise(2, 3.0)
    for t in (0.1, 0.5, 0.9):
        assert abs(_norm(slerp(a, b, t)) - ((1 - t) * _norm(a) + t * _norm(b))) < 1e-3


def test_points_lie_on_the_great_circle_at_fraction_t() -> None:
    a, b = _noise(1), _noise(2)
    theta = math.acos(_cos(a, b))
    for t in (0.25, 0.5, 0.75):
        z = slerp(a, b, t)
        assert abs(math.acos(_cos(a, z)) - t * theta) < 1e-5
        assert abs(math.acos(_cos(z, b)) - (1 - t) * theta) < 1e-5


def test_near_parallel_inputs_are_stable() -> None:
    a = _noise(1)
    b = a + 1e-7 * _noise(2)
    z = slerp(a, b, 0.5)
    assert torch.isfinite(z).all()
    assert torch.allclose(z, (a + b) / 2, atol=1e-6)
    assert torch.allclose(slerp(a, a.clone(), 0.3), a, atol=1e-6)
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-5)


def test_exactly_opposite_inputs_follow_a_deterministic_orthogonal_path() -> None:
    a = _noise(1)
    z = slerp(a, -a, 0.5)
    assert abs(_norm(z) - _norm(a)) < 1e-4  # never the zero vector
    assert abs(_cos(z, a)) < 1e-6  # a quarter turn: orthogonal to both ends
    assert torch.equal(z, slerp(a, -a, 0.5))  # deterministic
    quarter = slerp(a, -a, 0.25)
    assert abs(math.acos(_cos(a, quarter)) - math.pi / 4) < 1e-5


def test_orthogonal_direction_of_sparse_and_constant_vectors() -> None:
    for u in (torch.tensor([1.0, 0.0, 0.0]).double(), torch.ones(5).double() / math.sqrt(5)):
        v = orthogonal_direction(u)
        assert abs(float(v @ u)) < 1e-12 and abs(float(v.norm()) - 1) < 1e-12


def test_two_way_slerp_n_equals_slerp() -> None:
    a, b = _noise(1), _noise(2, 2.0)
    for t in (0.2, 0.5, 0.8):
        assert torch.allclose(slerp_n([a, b], [1 - t, t]), slerp(a, b, t), atol=1e-5)


def test_n_way_is_order_invariant_and_keeps_the_weighted_norm() -> None:
    xs = [_noise(s, scale) for s, scale in ((1, 1.0), (2, 1.5), (3, 0.5), (4, 1.0))]
    w = [0.1, 0.2, 0.3, 0.4]
    z = slerp_n(xs, w)
    order = [2, 0, 3, 1]
    z2 = slerp_n([xs[i] for i in order], [w[i] for i in order])
    assert torch.allclose(z, z2, atol=1e-5)
    assert abs(_norm(z) - sum(wi * _norm(x) for wi, x in zip(w, xs, strict=True))) < 1e-3


def test_n_way_mean_is_stationary_and_pulled_by_weights() -> None:
    xs = [_noise(s) for s in (1, 2, 3)]
    w = [0.6, 0.3, 0.1]
    z = slerp_n(xs, w)
    p = z.flatten().double() / _norm(z)
    # the weighted sum of tangent vectors at the spherical mean vanishes
    grad = torch.zeros_like(p)
    for wi, x in zip(w, xs, strict=True):
        u = x.flatten().double() / _norm(x)
        c = float(p @ u)
        theta = math.acos(c)
        grad += wi * theta / math.sin(theta) * (u - c * p)
    assert float(grad.norm()) < 1e-6
    angles = [math.acos(_cos(z, x)) for x in xs]
    assert angles[0] < angles[1] < angles[2]


def test_equal_weights_of_orthogonal_inputs_is_their_normalised_sum() -> None:
    xs = [torch.zeros(3) for _ in range(3)]
    for i, x in enumerate(xs):
        x[i] = 2.0
    z = slerp_n(xs)
    assert torch.allclose(z, torch.full((3,), 2.0 / math.sqrt(3)), atol=1e-6)


def test_single_positive_weight_returns_that_input() -> None:
    xs = [_noise(1), _noise(2), _noise(3)]
    assert torch.allclose(slerp_n(xs, [0, 1, 0]), xs[1], atol=1e-6)


def test_opposite_inputs_with_equal_weights_do_not_collapse() -> None:
    a = _noise(1)
    z = slerp_n([a, -a], [1, 1])
    assert abs(_norm(z) - _norm(a)) < 1e-4
    assert torch.allclose(z, slerp(a, -a, 0.5), atol=1e-6)


@pytest.mark.parametrize(
    ("weights", "pattern"),
    [
        ([0.5, -0.5], r"-0\.5"),
        ([0.0, 0.0], "sum to 0"),
        ([1.0], "1 weights"),
        ([float("nan"), 1.0], "nan"),
    ],
)
def test_bad_weights_are_named(weights: list[float], pattern: str) -> None:
    with pytest.raises(InvalidInput, match=pattern):
        slerp_n([_noise(1), _noise(2)], weights)


def test_weights_are_normalised() -> None:
    assert validate_weights([2, 6], 2) == [0.25, 0.75]
    assert validate_weights(None, 4) == [0.25] * 4


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="1.5"):
        slerp(_noise(1), _noise(2), 1.5)
    with pytest.raises(InvalidInput, match="zero vector"):
        slerp(_noise(1), torch.zeros(D), 0.5)
    with pytest.raises(InvalidInput, match="shape"):
        slerp_n([_noise(1), torch.ones(3)])
