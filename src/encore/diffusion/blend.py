"""Blends of several spectrograms that keep every input: the merge methods.

``merge`` in :mod:`encore.diffusion.sampling` is the original method (``"slerp"``): DDIM-invert
every input all the way to noise, SLERP the noises, decode. Measured on songs of the corpus
(``encore bench blend``, docs/engine.md "Blends"), its result takes harmony and timbre from one
input; the other one is no closer to the blend than an unrelated song. The denoiser cannot
tell the inputs apart in the noise: a spherical mean of two inverted noises is just another
noise, and what it decodes to is not a mixture of what each one decodes to.

This module adds three methods that condition the *start image* on every input (the default,
``DEFAULT_METHOD``, is ``"mix-inverted"``):

``"mix"``
    The start image is the inputs' mix (:func:`mix_images`: each spectrogram at the same mean
    power, weighted, summed in the power domain, back to the codec's dB scale); the blend is a
    variation of that mix at ``strength`` (the sampler, steps and seed of a variation). With
    one non-zero weight it *is* that input's variation with the same seed.
``"mix-inverted"``
    The same start image, noised to the level of ``strength`` with the inputs' own noise:
    each input is DDIM-inverted only down to that level, the noise each inversion implies
    (``(x_t − √ᾱ·x₀) / √(1 − ᾱ)``) is merged by weighted SLERP, and DDIM decodes
    ``√ᾱ·mix + √(1 − ᾱ)·ε`` without clipping. Deterministic; with one non-zero weight it is
    that input's DDIM reconstruction (the inversion and the decoding undo each other).

``"splice"``
    The start image is the inputs one after the other in time (:func:`splice_images`: input
    ``i`` gives its own frames over a share ``wᵢ`` of the canvas, joined by a short
    power-domain crossfade), re-made at ``strength`` as ``"mix"`` is: the songs take turns
    instead of sounding together.

Why the power domain: the codec's grey levels are dB relative to the slice's maximum, so an
average of grey levels is a geometric mean of powers: a band that is loud in one input and
silent in the other comes out half-way in dB (−40 dB for a −0 / −80 dB pair) and the bright
input's highs vanish. Summing powers keeps each input's bands at their own level less the
weight (−3 dB at equal weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from encore.diffusion.folder import LoadedModel
from encore.diffusion.sampling import (
    InversionCache,
    ProgressCallback,
    SampleResult,
    _check_steps,
    _denoise,
    _generators,
    _Known,
    _precision,
    _scheduler,
    _seeds,
    as_model_images,
    inpaint,
    invert_cached,
    make_result,
    model_inputs,
    start_step_for,
    vary,
)
from encore.diffusion.slerp import slerp_n, validate_weights
from encore.errors import InvalidInput

#: The merge methods (module docstring); ``"slerp"`` is :func:`encore.diffusion.sampling.merge`.
MERGE_METHODS = ("slerp", "mix", "mix-inverted", "splice")

#: The method of blends made with a strength (the services, the CLI, ``Engine.merge`` with
#: ``strength``), chosen by ``encore bench blend`` (docs/engine.md, "Blends": on 20 blends
#: the best of the four on all three similarities, and fewer UNet calls than ``"slerp"``).
DEFAULT_METHOD = "mix-inverted"


def check_method(method: str) -> str:
    if method not in MERGE_METHODS:
        raise InvalidInput(
            f"unknown merge method {method!r}; choose one of {', '.join(MERGE_METHODS)}"
        )
    return method


def mix_images(
    images: Sequence[torch.Tensor], weights: Sequence[float] | None, top_db: float
) -> torch.Tensor:
    """The power-domain mix of spectrogram images (the codec's scale, floats in [-1, 1]).

    Parameters
    ----------
    images : sequence of torch.Tensor
        N tensors ``(B, 1, H, W)`` of one shape, in [-1, 1] (grey level ↦ dB relative to the
        slice maximum: ``dB = (x + 1) / 2 · top_db − top_db``).
    weights : sequence of float, optional
        N non-negative weights (normalised); equal when omitted. Inputs of weight 0 are left
        out entirely.
    top_db : float
        The codec's dynamic range (``MelConfig.top_db``).

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` in [-1, 1]: ``Σ wᵢ·Pᵢ / mean(Pᵢ)`` per item, relative to its maximum,
        floored at ``−top_db``. With one non-zero weight, that input (to float rounding).
    """
    w = validate_weights(weights, len(images))
    shape = images[0].shape
    total = torch.zeros(shape, dtype=torch.float64, device=images[0].device)
    for i, (x, wi) in enumerate(zip(images, w, strict=True)):
        if x.shape != shape:
            raise InvalidInput(f"mix input {i} has shape {tuple(x.shape)}, input 0 has {tuple(shape)}")
        if wi == 0:
            continue
        db = (x.to(torch.float64) + 1.0) * (top_db / 2.0) - top_db
        power = torch.pow(10.0, db / 10.0)
        mean = power.mean(dim=(1, 2, 3), keepdim=True)
        total = total + wi * power / mean
    peak = total.amax(dim=(1, 2, 3), keepdim=True)
    db = 10.0 * torch.log10(total / peak)
    db = db.clamp(min=-top_db)
    return ((db + top_db) * (2.0 / top_db) - 1.0).clamp(-1.0, 1.0).to(torch.float32)


def splice_images(
    images: Sequence[torch.Tensor], weights: Sequence[float] | None, top_db: float,
    crossfade: int = 4,
) -> torch.Tensor:
    """The inputs one after the other in time: input ``i`` over a share ``wᵢ`` of the frames.

    Each input keeps its own frames at their own positions (the canvas is cut, not
    squeezed); around each cut, ``crossfade`` frames fade from one input to the next in the
    power domain. Inputs of weight 0 are left out; with one non-zero weight, that input.
    """
    w = validate_weights(weights, len(images))
    shape = images[0].shape
    for i, x in enumerate(images):
        if x.shape != shape:
            raise InvalidInput(f"splice input {i} has shape {tuple(x.shape)}, input 0 has {tuple(shape)}")
    width = shape[-1]
    frames = torch.arange(width, dtype=torch.float64, device=images[0].device) + 0.5
    bounds = torch.tensor([0.0, *[sum(w[: i + 1]) for i in range(len(w))]], dtype=torch.float64)
    bounds = bounds * width
    half = max(crossfade, 1) / 2.0
    total = torch.zeros(shape, dtype=torch.float64, device=images[0].device)
    for i, (x, wi) in enumerate(zip(images, w, strict=True)):
        if wi == 0:
            continue
        lo, hi = float(bounds[i]), float(bounds[i + 1])
        # 1 inside [lo, hi], linear ramps of ``crossfade`` frames across inner cuts
        rise = torch.ones_like(frames) if lo <= 0 else ((frames - lo + half) / (2 * half)).clamp(0, 1)
        fall = torch.ones_like(frames) if hi >= width else ((hi + half - frames) / (2 * half)).clamp(0, 1)
        gain = rise * fall
        db = (x.to(torch.float64) + 1.0) * (top_db / 2.0) - top_db
        power = torch.pow(10.0, db / 10.0)
        power = power / power.mean(dim=(1, 2, 3), keepdim=True)
        total = total + power * gain
    peak = total.amax(dim=(1, 2, 3), keepdim=True)
    db = (10.0 * torch.log10(torch.clamp(total / peak, min=1e-30))).clamp(min=-top_db)
    return ((db + top_db) * (2.0 / top_db) - 1.0).clamp(-1.0, 1.0).to(torch.float32)


def _fixed(
    model: LoadedModel, known: torch.Tensor | None, mask: torch.Tensor | None, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The known frames of a blend window of a longer piece (continuation): ``known`` as model
    images of ``like``'s shape and ``mask`` ``(1 or B, 1, 1, W)`` in [0, 1] broadcast to it."""
    if known is None and mask is None:
        return None
    if known is None or mask is None:
        raise InvalidInput("a blend continues known frames only with both known and mask")
    x = as_model_images(model, known)
    if x.shape != like.shape:
        raise InvalidInput(f"known images {tuple(x.shape)} and blend inputs {tuple(like.shape)} differ")
    m = mask.float().to(x.device)
    if m.ndim != 4 or m.shape[1:3] != (1, 1) or m.shape[0] not in (1, x.shape[0]) \
            or m.shape[-1] != x.shape[-1]:
        raise InvalidInput(f"mask must be (B, 1, 1, {x.shape[-1]}), got {tuple(m.shape)}")
    if float(m.min()) < 0.0 or float(m.max()) > 1.0:
        raise InvalidInput("mask values must lie in [0, 1]")
    return x, m.expand_as(x)


def merge_mix(
    model: LoadedModel,
    images_list: Sequence[torch.Tensor],
    *,
    weights: Sequence[float] | None = None,
    strength: float = 0.7,
    steps: int = 12,
    seed: int | Sequence[int] = 0,
    eta: float = 0.0,
    precision: str = "fp32",
    callback: ProgressCallback | None = None,
    input_ids: Sequence[str] = (),
    sampler: str = "ddim",
    method: str = "mix",
    known: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> SampleResult:
    """``"mix"``: a variation, at ``strength``, of the inputs' power-domain mix (``"splice"``:
    of the inputs one after the other, :func:`splice_images`).

    Parameters as :func:`encore.diffusion.sampling.vary` (one image batch per input, item
    ``b`` of the result blends item ``b`` of every input). The result's params have
    ``kind="merge"``, ``method="mix"``, the normalised weights and the strength.

    ``known`` and ``mask`` (a window of a longer piece): the frames where ``mask`` is 1 are
    fixed to ``known`` while the rest is made (:func:`~encore.diffusion.sampling.inpaint`).
    """
    w = validate_weights(weights, len(images_list))
    xs = model_inputs(model, images_list, "blend")
    combine = splice_images if method == "splice" else mix_images
    start = combine(xs, w, model.mel_config.top_db)
    fixed = _fixed(model, known, mask, xs[0])
    if fixed is None:
        result = vary(model, start, strength=strength, seed=seed, steps=steps, eta=eta,
                      precision=precision, callback=callback, input_ids=input_ids,
                      sampler=sampler)
    else:
        result = inpaint(model, fixed[0], fixed[1], images=start, strength=strength, seed=seed,
                         steps=steps, eta=eta, precision=precision, callback=callback,
                         input_ids=input_ids, sampler=sampler)
    return SampleResult(
        result.images, replace(result.params, kind="merge", weights=tuple(w), method=method)
    )


def merge_mix_inverted(
    model: LoadedModel,
    images_list: Sequence[torch.Tensor],
    *,
    weights: Sequence[float] | None = None,
    strength: float = 0.7,
    steps: int = 20,
    seed: int | Sequence[int] = 0,
    eta: float = 0.0,
    precision: str = "fp32",
    callback: ProgressCallback | None = None,
    input_ids: Sequence[str] = (),
    known: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    inversions: InversionCache | None = None,
) -> SampleResult:
    """``"mix-inverted"``: the mix noised with the SLERP of the inputs' partial inversions.

    DDIM both ways at ``steps`` (``k = round(strength · steps)`` inversion steps of the inputs
    in one batch, those found in ``inversions`` taken from there
    (:func:`~encore.diffusion.sampling.invert_cached`), then ``k`` decoding steps). ``seed``
    only matters for η > 0.

    ``known`` and ``mask`` (a window of a longer piece): before every decoding step the
    frames where ``mask`` is 1 are set to ``known`` noised with the same merged noise as the
    rest (inpainting); after the last they are ``known`` exactly.
    """
    w = validate_weights(weights, len(images_list))
    xs = model_inputs(model, images_list, "blend")
    fixed = _fixed(model, known, mask, xs[0])
    _check_steps(steps, eta, model.scheduler)
    batch, _, height, width = xs[0].shape
    seeds = _seeds(seed, batch)
    amp, prec = _precision(model, precision)
    sched = _scheduler(model, steps, eta, clip_sample=False)
    start = start_step_for(strength, steps)
    k = steps - start
    mix = mix_images(xs, w, model.mel_config.top_db).to(model.device)
    n = len(xs)
    if k == 0:
        out = mix if fixed is None else torch.lerp(mix, fixed[0], fixed[1])
    else:
        x0 = torch.cat(xs)
        sample, done = invert_cached(model, x0, steps, amp=amp, callback=callback,
                                     decode_calls=k, count=k, cache=inversions)
        level = sched.timesteps[start]
        alpha = sched.alphas_cumprod[int(level)].to(torch.float64)
        a, s = float(alpha.sqrt()), float((1.0 - alpha).sqrt())
        implied = ((sample.double() - a * x0.double()) / s).float().reshape(n, batch, 1, height, width)
        active = [i for i in range(n) if w[i] > 0]
        noise = torch.stack([
            slerp_n([implied[i, b] for i in active], [w[i] for i in active])
            for b in range(batch)
        ]).to(model.device)
        x_t = a * mix + s * noise
        region = None if fixed is None else _Known(fixed[0], fixed[1], noise)
        out = _denoise(model, x_t, sched, sched.timesteps[start:], eta=eta,
                       gens=_generators(seeds), amp=amp, callback=callback, done=done, total=done + k,
                       known=region)
        if region is not None:
            out = region.final(out.clamp(-1, 1))
    return make_result(out, "merge", seeds=seeds, steps=steps, eta=eta, precision=prec,
                       input_ids=input_ids, strength=float(strength), start_step=start,
                       weights=tuple(w), method="mix-inverted")


def blend(
    model: LoadedModel,
    images_list: Sequence[torch.Tensor],
    *,
    method: str = DEFAULT_METHOD,
    weights: Sequence[float] | None = None,
    strength: float | None = None,
    steps: int = 20,
    seed: int | Sequence[int] = 0,
    eta: float = 0.0,
    precision: str = "fp32",
    callback: ProgressCallback | None = None,
    input_ids: Sequence[str] = (),
    sampler: str = "ddim",
    known: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    inversions: InversionCache | None = None,
) -> SampleResult:
    """Blend N ≥ 2 spectrograms by ``method`` (:data:`MERGE_METHODS`).

    ``strength`` is required by the ``"mix"`` methods and must be None for ``"slerp"`` (which
    always inverts all the way); ``sampler`` is only used by ``"mix"`` (the others are DDIM).
    ``known`` and ``mask``: fixed frames (a later window of a longer piece, continuation);
    not for ``"slerp"``. ``inversions``: earlier inversions to reuse (``"slerp"`` and
    ``"mix-inverted"``; :class:`~encore.diffusion.sampling.InversionCache`).
    """
    from encore.diffusion.sampling import merge

    check_method(method)
    if method == "slerp":
        if strength is not None:
            raise InvalidInput(f"the slerp merge has no strength (got {strength!r})")
        if known is not None or mask is not None:
            raise InvalidInput("the slerp merge cannot continue known frames; use mix-inverted")
        return merge(model, images_list, weights=weights, steps=steps, seed=seed, eta=eta,
                     precision=precision, callback=callback, input_ids=input_ids,
                     inversions=inversions)
    if strength is None:
        raise InvalidInput(f"the {method} blend needs a strength in [0, 1]")
    if method in ("mix", "splice"):
        return merge_mix(model, images_list, weights=weights, strength=strength, steps=steps,
                         seed=seed, eta=eta, precision=precision, callback=callback,
                         input_ids=input_ids, sampler=sampler, method=method,
                         known=known, mask=mask)
    return merge_mix_inverted(model, images_list, weights=weights, strength=strength,
                              steps=steps, seed=seed, eta=eta, precision=precision,
                              callback=callback, input_ids=input_ids, known=known, mask=mask,
                              inversions=inversions)
