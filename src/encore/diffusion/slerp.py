"""Spherical interpolation of noise tensors: two-way SLERP and its weighted N-way form.

Each tensor is treated as one vector of ``D = numel`` numbers. A vector is split into its
*norm* and its *direction* (a point on the unit sphere), and the two are combined separately:

* **norm**: the weighted arithmetic mean of the input norms, ``Σ wᵢ‖xᵢ‖``. Gaussian noise
  has ‖x‖ ≈ √D, so merged noise keeps ‖x‖ ≈ √D (a plain average would shrink it by up to
  √N and the denoiser would see a sample that is too quiet).
* **direction**: the weighted spherical mean (the Karcher / Fréchet mean on the sphere,
  Buss & Fillmore 2001): the unit vector ``p`` minimising ``Σ wᵢ angle(p, uᵢ)²``, found by
  averaging in the tangent space at ``p`` and mapping back (``p ← exp_p(Σ wᵢ log_p(uᵢ))``)
  until the step is below ``tol``. For two inputs this *is* SLERP: the point a fraction
  ``t`` along the great-circle arc. It does not depend on the order of the inputs.

Edge cases (all deterministic):

* near-parallel directions (angle < 1e-4 rad): normalised linear interpolation (the
  difference from the arc is O(angle³));
* exactly opposite directions (two-way, or the tangent map at an antipode): the arc is not
  unique; encore takes the half great circle through ``v = e_k − (e_k·a)a`` where ``k`` is
  the index of ``a``'s smallest-magnitude component (lowest index on ties). ``v`` is never
  zero for D ≥ 2, so the result is never the zero vector;
* N-way inputs whose weighted mean direction is (almost) zero, such as two opposite vectors
  with equal weights: the mean is not unique, so the inputs are folded left to right by
  two-way SLERP with cumulative weights (``z ← slerp(z, xᵢ, wᵢ / Σ_{j≤i} wⱼ)``), which uses
  the rule above; this is the one case where the input order matters.

All arithmetic is in float64; the result has the dtype, shape and device of the first input.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

PARALLEL_ANGLE = 1e-4  # radians: below this, interpolate linearly
_OPPOSITE_SIN = 1e-12  # |sin θ| below this with cos θ < 0: exactly opposite


def _flat64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(-1).to(torch.float64)


def _split(x: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    v = _flat64(x)
    if not bool(torch.isfinite(v).all()):
        raise InvalidInput(f"{what} contains NaN or infinite values")
    n = torch.linalg.vector_norm(v)
    if float(n) == 0.0:
        raise InvalidInput(f"{what} is the zero vector; it has no direction to interpolate")
    return v / n, n


def orthogonal_direction(u: torch.Tensor) -> torch.Tensor:
    """A deterministic unit vector orthogonal to the unit vector ``u`` (1-D, D ≥ 2).

    ``e_k − u_k u`` normalised, with ``k = argmin |u_k|`` (first index on ties).
    """
    if u.numel() < 2:
        raise InvalidInput(f"cannot find a direction orthogonal to a {u.numel()}-element vector")
    k = int(torch.argmin(u.abs()))
    v = -u[k] * u
    v[k] += 1.0
    return v / torch.linalg.vector_norm(v)


def _angle(p: torch.Tensor, u: torch.Tensor) -> tuple[float, float, float, torch.Tensor]:
    """Unit ``u`` seen from unit ``p``: the cosine and sine of the angle between them, the
    angle, and ``u``'s part orthogonal to ``p`` (of length sine)."""
    cos = float(torch.clamp(torch.dot(p, u), -1.0, 1.0))
    perp = u - cos * p
    sin = float(torch.linalg.vector_norm(perp))
    return cos, sin, math.atan2(sin, cos), perp


def _arc(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Unit vector a fraction ``t`` along the great circle from unit ``a`` to unit ``b``."""
    cos, sin, theta, perp = _angle(a, b)
    if theta < PARALLEL_ANGLE:
        v = (1.0 - t) * a + t * b
        return v / torch.linalg.vector_norm(v)
    if sin < _OPPOSITE_SIN:  # exactly opposite: pick the deterministic half circle
        w = orthogonal_direction(a)
        theta = math.pi
    else:
        w = perp / sin
    return math.cos(t * theta) * a + math.sin(t * theta) * w


def _log_map(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Tangent vector at ``p`` pointing to ``u`` with length angle(p, u)."""
    cos, sin, theta, perp = _angle(p, u)
    if sin < _OPPOSITE_SIN:
        if cos > 0:
            return torch.zeros_like(p)
        return math.pi * orthogonal_direction(p)
    return (theta / sin) * perp


def _exp_map(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    n = float(torch.linalg.vector_norm(g))
    if n == 0.0:
        return p
    q = math.cos(n) * p + (math.sin(n) / n) * g
    return q / torch.linalg.vector_norm(q)


def _finish(direction: torch.Tensor, norm: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (direction * norm).reshape(like.shape).to(dtype=like.dtype, device=like.device)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two tensors of the same shape.

    Parameters
    ----------
    a, b : torch.Tensor
        Any shape (the same for both), non-zero, finite.
    t : float
        In [0, 1]: 0 returns ``a``, 1 returns ``b``.

    Returns
    -------
    torch.Tensor
        Direction a fraction ``t`` along the great circle from ``a`` to ``b``; norm
        ``(1 − t)‖a‖ + t‖b‖``. Shape, dtype and device of ``a``.

    Raises
    ------
    InvalidInput
        On a ``t`` outside [0, 1], mismatched shapes, zero or non-finite inputs.
    """
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise InvalidInput(f"slerp t={t!r} must be in [0, 1]")
    if a.shape != b.shape:
        raise InvalidInput(f"slerp inputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    ua, na = _split(a, "slerp input a")
    ub, nb = _split(b, "slerp input b")
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone().to(dtype=a.dtype, device=a.device)
    return _finish(_arc(ua, ub, t), (1.0 - t) * na + t * nb, a)


def validate_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Check and normalise interpolation weights.

    Parameters
    ----------
    weights : sequence of float or None
        ``n`` finite, non-negative numbers, not all zero. None means equal weights.
    n : int
        Number of inputs.

    Returns
    -------
    list of float
        The weights divided by their sum (they sum to 1).

    Raises
    ------
    InvalidInput
        Naming the offending weights.
    """
    if n < 1:
        raise InvalidInput("need at least one input to interpolate")
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise InvalidInput(f"got {len(w)} weights {w} for {n} inputs")
    bad = [x for x in w if not math.isfinite(x) or x < 0]
    if bad:
        raise InvalidInput(f"weights {w} must be finite and non-negative (bad: {bad})")
    total = math.fsum(w)
    if total <= 0:
        raise InvalidInput(f"weights {w} sum to 0; at least one must be positive")
    return [x / total for x in w]


def slerp_n(
    vectors: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> torch.Tensor:
    """Weighted spherical interpolation of N tensors (the module docstring has the rule).

    Parameters
    ----------
    vectors : sequence of torch.Tensor
        N ≥ 1 tensors of one shape, non-zero, finite.
    weights : sequence of float, optional
        N non-negative weights (normalised to sum to 1); equal weights when omitted.
    tol : float
        Stop when the tangent-space step is shorter than this (radians).
    max_iter : int
        Iteration cap of the spherical mean.

    Returns
    -------
    torch.Tensor
        Norm ``Σ wᵢ‖xᵢ‖`` along the weighted spherical mean direction; shape, dtype and
        device of ``vectors[0]``. With two inputs and weights ``(1 − t, t)`` it equals
        ``slerp(a, b, t)``; with one non-zero weight it returns that input.
    """
    if len(vectors) == 0:
        raise InvalidInput("slerp_n needs at least one input")
    w = validate_weights(weights, len(vectors))
    shape = vectors[0].shape
    for i, v in enumerate(vectors):
        if v.shape != shape:
            raise InvalidInput(
                f"slerp_n input {i} has shape {tuple(v.shape)}, input 0 has {tuple(shape)}"
            )
    parts = [_split(v, f"slerp_n input {i}") for i, v in enumerate(vectors)]
    active = [(wi, u, n) for wi, (u, n) in zip(w, parts, strict=True) if wi > 0]
    norm = sum((wi * n for wi, _, n in active), torch.zeros((), dtype=torch.float64))
    like = vectors[0]
    if len(active) == 1:
        return _finish(active[0][1], norm, like)

    mean = sum((wi * u for wi, u, _ in active), torch.zeros_like(active[0][1]))
    mean_norm = float(torch.linalg.vector_norm(mean))
    if mean_norm < 1e-6:
        # No unique spherical mean (e.g. opposite inputs with equal weights): fold in order.
        logger.debug("slerp_n: weighted mean direction vanishes; folding pairwise in order")
        p, acc = active[0][1], active[0][0]
        for wi, u, _ in active[1:]:
            acc += wi
            p = _arc(p, u, wi / acc)
        return _finish(p, norm, like)

    p = mean / mean_norm
    for _ in range(max_iter):
        g = sum((wi * _log_map(p, u) for wi, u, _ in active), torch.zeros_like(p))
        step = float(torch.linalg.vector_norm(g))
        p = _exp_map(p, g)
        if step < tol:
            break
    else:
        logger.warning("slerp_n: spherical mean did not converge in %d iterations", max_iter)
    return _finish(p, norm, like)
