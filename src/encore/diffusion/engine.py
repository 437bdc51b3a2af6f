"""The high-level engine: audio in, audio out.

::

    from encore.diffusion import Engine

    engine = Engine()                        # the shipped base model, best device
    clip = engine.generate(seconds=5.9, seed=1)
    clip = engine.vary("song.mp3", strength=0.7, seed=2)
    clip = engine.merge(["a.wav", "b.ogg"], weights=[0.6, 0.4], seed=3)
    clip.audio, clip.sample_rate, clip.image, clip.params
    clips = engine.generate_batch(5.9, seeds=[1, 2, 3])   # one batch, one Clip per seed
    clips = engine.vary_batch("song.mp3", 0.7, seeds=[4, 5, 6, 7])  # best-of-4 candidates

``steps`` and ``sampler`` default to ``Settings.inference_steps`` / ``Settings.sampler``
(merges: DDIM at ``Settings.merge_steps``); both are recorded in every clip's params, so a
clip can be made again whatever the defaults are by then.

Songs are decoded by :func:`encore.audio.decode.load_audio` at the model's sample rate; one
window of the requested length is taken from the *body* of the song
(:func:`encore.audio.slices.choose_slices`)
and turned into a spectrogram image by the model's mel codec at the canvas width. Clips
longer than the model's training crops come from a wider canvas: the UNet is convolutional,
so it is simply run on ``width`` frames (the frames for ``seconds`` plus one, rounded up to
the denoiser's ``width_multiple``). The image is vocoded by encore's Griffin-Lim
(:class:`encore.audio.vocoder.GriffinLim`, a fixed phase seed, so a clip's audio is as
reproducible as its image) and the audio is cut to exactly ``seconds``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encore.audio.mel import MelConfig
from encore.diffusion import sampling
from encore.diffusion.device import configure_threads, prepare_for_inference, side_by_side
from encore.diffusion.folder import LoadedModel, load_model_folder
from encore.diffusion.sampling import ProgressCallback, SampleResult
from encore.errors import AudioTooShort, InvalidInput, NotFound

logger = logging.getLogger(__name__)

AudioInput = str | Path | bytes | np.ndarray
"""A song: a file path, the file's bytes, or mono float audio at the model's sample rate."""
Progress = Callable[[float], None]
"""Called as ``progress(fraction)`` with the fraction of UNet evaluations done, in (0, 1]."""


@dataclass(frozen=True)
class Clip:
    """One generated clip with everything needed to make it again.

    Attributes
    ----------
    image : np.ndarray
        uint8 spectrogram, ``(H, frames)``; row 0 is the lowest mel band.
    audio : np.ndarray
        float32, ``(n_samples,)`` at ``sample_rate``, ``n_samples = round(seconds · sr)``;
        not loudness-normalised (as the reference; :func:`peak_normalise` before playing).
    sample_rate : int
    params : dict
        :class:`~encore.diffusion.sampling.SampleParams` as a dict with ``seed`` (this
        clip's) instead of ``seeds``, plus ``batch_seeds`` (the seeds of the batch it was
        made in: a clip is bit-identical when its batch is made again), ``seconds``,
        ``frames``, ``model`` (its name), ``offsets`` (seconds into each input song) and
        ``vocoder``.
    """

    image: np.ndarray = field(repr=False)
    audio: np.ndarray = field(repr=False)
    sample_rate: int
    params: dict[str, Any]

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


def peak_normalise(audio: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale each clip (last axis) so its peak is ``peak`` (silent clips are left as they are)."""
    a = np.asarray(audio, dtype=np.float32)
    m = np.max(np.abs(a), axis=-1, keepdims=True)
    return np.where(m > 0, a * (peak / np.maximum(m, 1e-12)), a).astype(np.float32)


def canvas_width(seconds: float, mel: MelConfig, multiple: int) -> tuple[int, int]:
    """Frames needed for ``seconds`` of audio and the canvas width that holds them.

    Returns
    -------
    (frames, width)
        ``frames`` columns vocode to at least ``seconds`` of audio
        (``(frames − 1) · hop ≥ seconds · sr``); ``width`` is ``frames`` rounded up to
        ``multiple``.
    """
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise InvalidInput(f"seconds={seconds!r} must be a positive number")
    frames = mel.frames_for_seconds(seconds) + 1
    width = -(-frames // multiple) * multiple
    return frames, width


def _check_strength(strength: Any) -> None:
    """A variation's or blend's strength: a number in [0, 1]."""
    if not (isinstance(strength, int | float) and 0.0 <= float(strength) <= 1.0):
        raise InvalidInput(f"strength={strength!r} must be in [0, 1]")


class Engine:
    """Generate, vary and merge audio clips with one model.

    Parameters
    ----------
    model : path or LoadedModel, optional
        A model folder (``None``: ``Settings.base_model_dir``, the shipped base model) or a
        model already in memory.
    device : str, optional
        ``"auto"`` / ``None`` (``Settings.device``), ``"cpu"``, ``"cuda"``, ``"mps"``.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast of the UNet (``"auto"``: bf16 on CPUs with native bf16 and on CUDA GPUs
        with bf16, fp16 on older GPUs, fp32 otherwise).
    vocoder_iters : int, optional
        Griffin-Lim iterations (the vocoder's default when omitted).

    Raises
    ------
    NotFound
        If the model folder does not exist (the message names the path).
    """

    def __init__(
        self,
        model: str | Path | LoadedModel | None = None,
        *,
        device: str | None = None,
        precision: str = "auto",
        vocoder_iters: int | None = None,
    ) -> None:
        from encore.config import get_settings

        settings = get_settings()
        configure_threads(settings.torch_threads)
        if isinstance(model, LoadedModel):
            self.model = model
        else:
            path = Path(model) if model is not None else settings.base_model_dir
            if not path.is_dir():
                hint = (
                    " (the shipped base model has not been installed; train one with "
                    "`encore train base` or pass --model)"
                    if model is None
                    else ""
                )
                raise NotFound(f"model folder {path} does not exist{hint}")
            dev = device if device not in (None, "auto") else settings.device
            self.model = load_model_folder(path, device=dev)
        prepare_for_inference(self.model.denoiser, self.model.device)
        self.precision = precision
        self.vocoder_iters = vocoder_iters
        self._vocoder: Any = None
        #: inversions of the songs blended so far (``slerp`` and ``mix-inverted``), reused
        #: when a song is blended again; shared with :meth:`for_group` copies (the key
        #: holds the guidance)
        self.inversions = sampling.InversionCache(settings.inversion_cache_items)
        self.default_sampler: str = settings.sampler
        self.default_steps: int = settings.inference_steps
        self.default_merge_steps: int = settings.merge_steps
        # pieces longer than the canvas (piece_batch): window, overlap and crossfade lengths
        self.window_seconds: float = settings.clip_seconds
        self.overlap_seconds: float = settings.piece_overlap_seconds
        self.crossfade_seconds: float = settings.piece_crossfade_seconds

    def for_group(self, group: int | None, scale: float = 1.0) -> Engine:
        """This engine sampling for taste group ``group`` with guidance ``scale`` (a shallow
        copy sharing the weights and the vocoder; :func:`encore.diffusion.sampling.guided`).

        A model that is not conditioned on taste groups ignores the group (``self`` is
        returned), as does ``group`` None.
        """
        model = sampling.guided(self.model, group, scale)
        if model is self.model:
            return self
        self.vocoder()  # built once, shared with the copy
        other = copy.copy(self)
        other.model = model
        return other

    def _guidance_params(self) -> dict[str, Any]:
        g = self.model.guidance
        return {"guidance": g.to_dict()} if g is not None else {}

    def _solver(self, steps: int | None, sampler: str | None) -> tuple[int, str]:
        """The steps and sampler to use (the settings' defaults for None)."""
        return (
            int(steps) if steps is not None else self.default_steps,
            sampling.check_sampler(sampler if sampler is not None else self.default_sampler),
        )

    # -- audio <-> images ----------------------------------------------------------------

    @property
    def mel(self) -> MelConfig:
        return self.model.mel_config

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    def canvas(self, seconds: float) -> tuple[int, int]:
        """``(frames, width)`` for a clip of ``seconds`` (see :func:`canvas_width`)."""
        return canvas_width(seconds, self.mel, self.model.denoiser.width_multiple)

    def load_song(self, song: AudioInput) -> np.ndarray:
        """Decode a song to mono float32 at the model's sample rate."""
        if isinstance(song, np.ndarray):
            y = np.asarray(song, dtype=np.float32)
            if y.ndim != 1:
                raise InvalidInput(f"audio arrays must be mono (n_samples,), got shape {y.shape}")
            if not np.isfinite(y).all():
                raise InvalidInput("audio array contains NaN or infinite samples")
            return y
        from encore.audio.decode import load_audio

        if isinstance(song, str | Path) and not Path(song).is_file():
            raise NotFound(f"song file {song} does not exist")
        return load_audio(song, sr=self.sample_rate, max_seconds=None)

    def song_image(
        self, song: AudioInput, seconds: float, *, offset: float | None = None
    ) -> tuple[np.ndarray, float]:
        """The spectrogram of one window of a song at the canvas width.

        Parameters
        ----------
        song : path, bytes or np.ndarray
        seconds : float
            Clip length; the window covers the whole canvas.
        offset : float, optional
            Start of the window in seconds (default: the loudest window of the song's
            body, :func:`encore.audio.slices.choose_slices`).

        Returns
        -------
        (image, offset)
            uint8 ``(H, width)`` and the offset used, in seconds.
        """
        from encore.audio.mel import audio_slice_to_image

        _, width = self.canvas(seconds)
        cfg = self.mel.replace(x_res=width)
        y = self.load_song(song)
        window = cfg.slice_samples
        start = self._window_start(y, window, offset)
        image = audio_slice_to_image(y[start : start + window], cfg)
        return image, start / self.sample_rate

    def song_windows(self, song: AudioInput, seconds: float, count: int) -> list[float]:
        """Starts (seconds) of ``count`` windows of a song at the canvas for ``seconds``: its
        disjoint loud windows, loudest first (:func:`~encore.audio.slices.loudest_slices`),
        so that the first is the window :meth:`song_image` picks by default. A song that
        holds fewer disjoint windows repeats them in that order. Deterministic: the same song
        gives the same starts (a paired delivery's second half reuses them).
        """
        from encore.audio.slices import loudest_slices

        if count < 1:
            raise InvalidInput(f"count={count} must be at least 1")
        _, width = self.canvas(seconds)
        window = self.mel.replace(x_res=width).slice_samples
        y = self.load_song(song)
        self._window_start(y, window, None)  # a song too short for a spectrogram is refused
        starts = loudest_slices(y, sr=self.sample_rate, slice_samples=window, count=count)
        return [starts[k % len(starts)] / self.sample_rate for k in range(count)]

    def _window_start(self, y: np.ndarray, window: int, offset: float | None) -> int:
        """The first sample of a window of ``window`` samples of the song ``y``: at ``offset``
        seconds, or (None) where :func:`~encore.audio.slices.choose_slices` puts it (the
        loudest stretch). AudioTooShort for a song too short for a spectrogram, InvalidInput
        for a negative, non-finite or too late offset."""
        if y.shape[0] < self.mel.hop_length * 2:
            raise AudioTooShort(f"song has {y.shape[0]} samples, too short for a spectrogram")
        if offset is None:
            from encore.audio.slices import choose_slices

            return choose_slices(y, sr=self.sample_rate, slice_samples=window, count=1)[0]
        if not (math.isfinite(offset) and offset >= 0):
            raise InvalidInput(f"offset={offset!r} must be a non-negative number of seconds")
        start = int(round(offset * self.sample_rate))
        if start >= y.shape[0]:
            raise InvalidInput(
                f"offset={offset} s is past the end of the song ({y.shape[0] / self.sample_rate:.2f} s)"
            )
        return start

    def vocoder(self) -> Any:
        """The Griffin-Lim vocoder for this model's mel settings (built once)."""
        if self._vocoder is None:
            from encore.audio.vocoder import GriffinLim

            kwargs: dict[str, Any] = {"device": str(self.model.device), "seed": 0}
            if self.vocoder_iters is not None:
                kwargs["n_iter"] = self.vocoder_iters
            self._vocoder = GriffinLim(self.mel, **kwargs)
        return self._vocoder

    def to_audio(self, images: np.ndarray, seconds: float | None = None) -> np.ndarray:
        """uint8 images ``(B, H, W)`` → float32 audio ``(B, n)``, cut to ``seconds``.

        The images are vocoded one at a time, so a clip's audio never depends on the batch it
        was made in (a batched vocoder call agrees to float32 rounding, and on some CPUs not
        bit for bit), and a batch of 4 cost 1.4× the CPU time of
        4 single calls on the 2-core machine (its working set outgrows the cache). On the CPU
        several images are vocoded side by side, as many at once as torch has threads
        (:func:`~encore.diffusion.device.side_by_side`), and a lone image gets all of
        torch's threads (:meth:`_vocoder_for`); the audio is the same either way.
        """
        from encore.audio.mel import image_to_audio

        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        vocoder = self._vocoder_for(images.shape[0])
        audio = np.concatenate(side_by_side(
            lambda i: np.atleast_2d(image_to_audio(images[i : i + 1], self.mel, vocoder=vocoder)),
            range(images.shape[0]), self.model.device))
        return self._cut(audio, seconds)

    def _vocoder_for(self, clips: int) -> Any:
        """The vocoder for ``clips`` clips vocoded side by side: on the CPU, torch's threads
        shared among them (a lone clip gets them all; four on two threads get one each)."""
        vocoder = self.vocoder()
        if self.model.device.type != "cpu" or vocoder.threads is None:
            return vocoder
        return vocoder.with_threads(max(1, torch.get_num_threads() // max(1, clips)))

    def _cut(self, audio: np.ndarray, seconds: float | None) -> np.ndarray:
        """``(B, n)`` audio padded or cut to exactly ``seconds`` (``None``: as it is)."""
        if seconds is not None:
            n = int(round(seconds * self.sample_rate))
            if audio.shape[-1] < n:
                audio = np.pad(audio, ((0, 0), (0, n - audio.shape[-1])))
            audio = audio[:, :n]
        return np.ascontiguousarray(audio, dtype=np.float32)

    def _clips(self, result: SampleResult, seconds: float, frames: int, **extra: Any) -> list[Clip]:
        from encore.audio.mel import unit_to_images

        images = unit_to_images(result.images[:, 0, :, :frames]).numpy()
        audio = self.to_audio(images, seconds)
        base = result.params.to_dict()
        seeds = base.pop("seeds")
        vocoder = self.vocoder()
        base.update(
            batch_seeds=seeds,
            seconds=float(seconds),
            frames=frames,
            model=self.model.name,
            vocoder={"n_iter": vocoder.n_iter, "seed": vocoder.seed},
            **self._guidance_params(),
            **extra,
        )
        return [
            Clip(
                image=images[i],
                audio=audio[i],
                sample_rate=self.sample_rate,
                params={"seed": s, **base},
            )
            for i, s in enumerate(seeds)
        ]

    @staticmethod
    def _callback(progress: Progress | None) -> ProgressCallback | None:
        if progress is None:
            return None
        return lambda done, total: progress(done / total)

    def _vary(self, images: torch.Tensor, strength: float, seeds: Sequence[int], steps: int,
              sampler: str, eta: float, progress: Progress | None,
              input_ids: Sequence[str] = ()) -> SampleResult:
        """:func:`encore.diffusion.sampling.vary` of a batch of song images with this engine's
        model and precision."""
        return sampling.vary(
            self.model,
            images,
            strength=float(strength),
            seed=list(seeds),
            steps=steps,
            eta=eta,
            precision=self.precision,
            callback=self._callback(progress),
            input_ids=input_ids,
            sampler=sampler,
        )

    # -- the three operations ------------------------------------------------------------

    def generate_batch(
        self,
        seconds: float = 5.9,
        seeds: Sequence[int] = (0,),
        steps: int | None = None,
        *,
        eta: float = 0.0,
        progress: Progress | None = None,
        sampler: str | None = None,
    ) -> list[Clip]:
        """New clips from noise, one per seed, in one batch (see :meth:`generate`)."""
        steps, sampler = self._solver(steps, sampler)
        frames, width = self.canvas(seconds)
        result = sampling.generate(
            self.model,
            batch=len(seeds),
            width=width,
            seed=list(seeds),
            steps=steps,
            eta=eta,
            precision=self.precision,
            callback=self._callback(progress),
            sampler=sampler,
        )
        return self._clips(result, seconds, frames)

    def generate(
        self,
        seconds: float = 5.9,
        seed: int = 0,
        steps: int | None = None,
        *,
        eta: float = 0.0,
        progress: Progress | None = None,
        sampler: str | None = None,
    ) -> Clip:
        """A new clip from noise.

        Parameters
        ----------
        seconds : float
            Clip length.
        seed : int
            Seed of the starting noise (and of the η noise).
        steps : int, optional
            Solver steps (default ``Settings.inference_steps``).
        eta : float
            DDIM η in [0, 1] (> 0 only with the ``"ddim"`` sampler).
        progress : callable, optional
            ``progress(fraction)`` after every UNet evaluation, fraction in (0, 1].
        sampler : {"ddim", "dpmpp", "unipc"}, optional
            Default ``Settings.sampler``.
        """
        return self.generate_batch(
            seconds, [seed], steps, eta=eta, progress=progress, sampler=sampler
        )[0]

    def vary_batch(
        self,
        audio: AudioInput,
        strength: float = 0.7,
        seeds: Sequence[int] = (0,),
        steps: int | None = None,
        *,
        seconds: float = 5.9,
        eta: float = 0.0,
        offset: float | None = None,
        input_id: str = "",
        progress: Progress | None = None,
        sampler: str | None = None,
    ) -> list[Clip]:
        """Variations of one song, one per seed, in one batch (see :meth:`vary`).

        The song is decoded and its window chosen once; the UNet runs once per step on all
        ``len(seeds)`` candidates. Each clip equals ``vary(audio, strength, seed, ...)`` made
        alone to within the batched convolutions' rounding (tested to bf16 tolerance).
        """
        _check_strength(strength)
        steps, sampler = self._solver(steps, sampler)
        frames, _ = self.canvas(seconds)
        image, used = self.song_image(audio, seconds, offset=offset)
        images = torch.from_numpy(np.repeat(image[None, None], len(seeds), axis=0))
        result = self._vary(images, strength, seeds, steps, sampler, eta, progress,
                            input_ids=(input_id,) if input_id else ())
        return self._clips(result, seconds, frames, offsets=[used])

    def vary_songs(
        self,
        audios: Sequence[AudioInput],
        strength: float = 0.7,
        seeds: Sequence[int] = (0,),
        steps: int | None = None,
        *,
        seconds: float = 5.9,
        eta: float = 0.0,
        offsets: Sequence[float | None] | None = None,
        input_ids: Sequence[str] = (),
        progress: Progress | None = None,
        sampler: str | None = None,
    ) -> list[Clip]:
        """Variations of several songs (e.g. several listeners' requests) in one UNet batch.

        Item ``i`` varies ``audios[i]`` with ``seeds[i]``; strength, steps, sampler and length
        are shared (requests that differ in them cannot share a batch). Each clip equals
        ``vary(audios[i], strength, seeds[i], ...)`` made alone to within the batched
        convolutions' rounding; its ``params["offsets"]`` and ``input_ids`` are its own song's.
        """
        if len(audios) != len(seeds):
            raise InvalidInput(f"got {len(seeds)} seeds for {len(audios)} songs")
        _check_strength(strength)
        offs = list(offsets) if offsets is not None else [None] * len(audios)
        ids = list(input_ids) if input_ids else [""] * len(audios)
        if len(offs) != len(audios) or len(ids) != len(audios):
            raise InvalidInput(f"offsets and input_ids need one entry per song ({len(audios)})")
        steps, sampler = self._solver(steps, sampler)
        frames, _ = self.canvas(seconds)
        pairs = [self.song_image(a, seconds, offset=o) for a, o in zip(audios, offs, strict=True)]
        images = torch.from_numpy(np.stack([img[None] for img, _ in pairs]))
        result = self._vary(images, strength, seeds, steps, sampler, eta, progress)
        clips = self._clips(result, seconds, frames)
        return [
            Clip(c.image, c.audio, c.sample_rate,
                 {**c.params, "offsets": [used], "input_ids": [i] if i else []})
            for c, (_, used), i in zip(clips, pairs, ids, strict=True)
        ]

    def vary(
        self,
        audio: AudioInput,
        strength: float = 0.7,
        seed: int = 0,
        steps: int | None = None,
        *,
        seconds: float = 5.9,
        eta: float = 0.0,
        offset: float | None = None,
        input_id: str = "",
        progress: Progress | None = None,
        sampler: str | None = None,
    ) -> Clip:
        """A variation of one song.

        Parameters
        ----------
        audio : path, bytes or np.ndarray
            The song (an array: mono float audio at :attr:`sample_rate`).
        strength : float
            In [0, 1]: the fraction of the sampler's steps re-run (0 = the song's own
            spectrogram, 1 = new music from the same noise as :meth:`generate`).
        offset : float, optional
            Where in the song the window starts, seconds (default: its loudest part).
        input_id : str
            Recorded in ``params["input_ids"]``.
        seed, steps, seconds, eta, progress, sampler
            As :meth:`generate`.
        """
        return self.vary_batch(
            audio,
            strength,
            [seed],
            steps,
            seconds=seconds,
            eta=eta,
            offset=offset,
            input_id=input_id,
            progress=progress,
            sampler=sampler,
        )[0]

    def merge(
        self,
        audios: Sequence[AudioInput],
        weights: Sequence[float] | None = None,
        seed: int = 0,
        steps: int | None = None,
        *,
        seconds: float = 5.9,
        eta: float = 0.0,
        offsets: Sequence[float | None] | None = None,
        input_ids: Sequence[str] = (),
        progress: Progress | None = None,
        strength: float | None = None,
        method: str | None = None,
        sampler: str | None = None,
        loop: bool = False,
    ) -> Clip:
        """One clip from N ≥ 2 songs.

        Without ``strength`` (and ``method`` None or ``"slerp"``): the original merge, DDIM
        inversion of each song all the way to noise, SLERP of the noises, DDIM decoding.
        With ``strength``: a blend that keeps every input (:mod:`encore.diffusion.blend`,
        ``method`` default :data:`~encore.diffusion.blend.DEFAULT_METHOD`): the songs'
        spectrograms mixed in the power domain by ``weights``, then re-made from
        ``strength`` as a variation is.

        Parameters
        ----------
        audios : sequence
            The songs (paths, bytes or arrays).
        weights : sequence of float, optional
            Non-negative weights, not all zero (normalised); equal when omitted.
        offsets : sequence, optional
            Window start per song in seconds (None entries: the loudest part).
        steps : int, optional
            ``"slerp"`` and ``"mix-inverted"``: DDIM steps of the inversion and of the
            decoding each (default ``Settings.merge_steps``); ``"mix"``: the sampler's
            steps (default ``Settings.inference_steps``).
        strength : float, optional
            In [0, 1], as :meth:`vary`; required by the ``"mix"`` methods.
        method : {"slerp", "mix", "mix-inverted"}, optional
        sampler : str, optional
            ``"mix"`` only (default ``Settings.sampler``); the others are DDIM.
        seed, seconds, eta, progress
            As :meth:`generate` (``"slerp"`` and ``"mix-inverted"`` with η = 0 ignore the seed).
        loop : bool
            A piece whose end continues into its beginning (not ``"slerp"``).

        A blend longer than the canvas (:meth:`piece_layout`; not ``"slerp"``, which is one
        canvas of any width) is made window by window as :meth:`piece_batch` makes a
        variation: window ``k`` blends each song's ``k``-th window of its stretch from its
        offset (default: the loudest stretch of the piece's length) with the frames it shares
        with the windows before it fixed (inpainting), seed ``window_seed(seed, k)``.
        """
        from encore.diffusion.blend import DEFAULT_METHOD, blend, check_method
        from encore.diffusion.slerp import validate_weights

        if method is None:
            method = DEFAULT_METHOD if strength is not None else "slerp"
        check_method(method)
        if len(audios) < 2:
            raise InvalidInput(f"merge needs at least 2 songs, got {len(audios)}")
        validate_weights(weights, len(audios))  # before any decoding
        if strength is not None:
            _check_strength(strength)
        if method in ("mix", "splice"):
            steps, solver = self._solver(steps, sampler)
        else:
            steps = int(steps) if steps is not None else self.default_merge_steps
            solver = "ddim"
        offs = list(offsets) if offsets is not None else [None] * len(audios)
        if len(offs) != len(audios):
            raise InvalidInput(f"got {len(offs)} offsets for {len(audios)} songs")
        if method == "slerp":
            if loop:
                raise InvalidInput("a slerp merge cannot loop; give a strength (mix-inverted)")
            lay = None
        else:
            lay = self.piece_layout(seconds, loop=loop)
        if lay is not None:
            return self._merge_piece(
                audios, lay, seconds, seed, weights=weights, steps=steps, strength=strength,
                method=method, sampler=solver, eta=eta, offsets=offs, input_ids=input_ids,
                progress=progress, loop=loop)
        frames, _ = self.canvas(seconds)
        pairs = [self.song_image(a, seconds, offset=o) for a, o in zip(audios, offs, strict=True)]
        result = blend(
            self.model,
            [torch.from_numpy(img[None, None]) for img, _ in pairs],
            method=method,
            weights=weights,
            strength=None if strength is None else float(strength),
            steps=steps,
            seed=seed,
            eta=eta,
            precision=self.precision,
            callback=self._callback(progress),
            input_ids=tuple(input_ids),
            sampler=solver,
            inversions=self.inversions,
        )
        return self._clips(result, seconds, frames, offsets=[o for _, o in pairs])[0]

    def _merge_piece(
        self,
        audios: Sequence[AudioInput],
        lay: Any,
        seconds: float,
        seed: int,
        *,
        weights: Sequence[float] | None,
        steps: int,
        strength: float | None,
        method: str,
        sampler: str,
        eta: float,
        offsets: list[float | None],
        input_ids: Sequence[str],
        progress: Progress | None,
        loop: bool,
    ) -> Clip:
        """A blend longer than the canvas, window by window (see :meth:`merge`)."""
        from encore.diffusion import continuation
        from encore.diffusion.blend import blend

        if strength is None:
            raise InvalidInput(f"the {method} blend needs a strength in [0, 1]")
        stretches = [self._song_windows(a, lay, lay.windows, 1, o)
                     for a, o in zip(audios, offsets, strict=True)]
        k_steps = steps - sampling.start_step_for(float(strength), steps)
        calls_per_window = 2 * k_steps if method == "mix-inverted" else k_steps

        def make(k: int, known: torch.Tensor | None, mask: torch.Tensor | None,
                 callback: ProgressCallback | None) -> SampleResult:
            return blend(self.model, [windows[k] for windows, _ in stretches], method=method,
                         weights=weights, strength=float(strength), steps=steps,
                         seed=continuation.window_seed(seed, k), eta=eta,
                         precision=self.precision, callback=callback,
                         input_ids=tuple(input_ids), sampler=sampler, known=known, mask=mask,
                         inversions=self.inversions)

        # the cut of each window follows the calm moments of every song's stretch
        guides = [torch.cat([windows[k] for windows, _ in stretches]) for k in range(lay.windows)]
        timeline, results, heads = self._continue(lay, lay.windows, 1, make, calls_per_window,
                                                  progress, guides=guides)
        return self._piece_clips(lay, lay.windows, timeline, [int(seed)],
                                 results[0].params.to_dict(), seconds=seconds, loop=loop,
                                 max_windows=None, heads=heads,
                                 offsets=[used for _, used in stretches])[0]

    # -- pieces longer than the canvas (encore.diffusion.continuation) ---------------------

    def piece_layout(self, seconds: float, *, loop: bool = False) -> Any:
        """The windows of a piece of ``seconds`` (None when one canvas holds it).

        A piece up to 1.25 windows long that is not a loop is one (wider) canvas: the UNet
        is convolutional, and a second window for a few frames would cost a whole window.
        """
        from encore.diffusion import continuation

        frames, width = self.canvas(seconds)
        window = self.canvas(self.window_seconds)[1]
        if not loop and frames <= 1.25 * window:
            return None
        hop = self.mel.hop_length
        overlap = int(round(self.overlap_seconds * self.sample_rate / hop))
        overlap = min(max(overlap, 1), window // 2)
        n = int(round(seconds * self.sample_rate / hop)) if loop else frames
        return continuation.layout(n, window, overlap, loop=loop)

    def _stretch(self, song: AudioInput, samples: int, offset: float | None) -> tuple[np.ndarray, float]:
        """``samples`` of the song from ``offset`` (default: its loudest stretch of that
        length), continuing from the song's beginning when it ends first."""
        y = self.load_song(song)
        start = self._window_start(y, min(samples, y.shape[0]), offset)
        parts, have = [y[start:]], y.shape[0] - start
        while have < samples:
            parts.append(y)
            have += y.shape[0]
        return np.concatenate(parts)[:samples], start / self.sample_rate

    def piece_batch(
        self,
        audio: AudioInput | None,
        seconds: float,
        seeds: Sequence[int] = (0,),
        steps: int | None = None,
        *,
        strength: float = 0.7,
        offset: float | None = None,
        loop: bool = False,
        eta: float = 0.0,
        progress: Progress | None = None,
        sampler: str | None = None,
        input_id: str = "",
        first_windows: np.ndarray | None = None,
        max_windows: int | None = None,
    ) -> list[Clip]:
        """Pieces of any length, one per seed, made window by window (continuation).

        Window 0 is a variation of the song's stretch from ``offset`` (``audio`` None: new
        music from noise) exactly as :meth:`vary_batch` makes it at the canvas length; window
        ``k`` varies the song's next stretch with seed ``window_seed(seed, k)`` while the
        frames it shares with the windows before it are fixed to theirs (inpainting, every
        sampler), and a loop's last window also fixes its tail to the first window's head.
        The windows are vocoded one by one and joined with equal-power crossfades
        (:func:`encore.diffusion.continuation.join_windows`). A piece that one canvas holds
        is made by :meth:`vary_batch` / :meth:`generate_batch`.

        Parameters
        ----------
        first_windows : np.ndarray, optional
            uint8 ``(len(seeds), H, window)``: window 0 of each piece as already made (e.g.
            the best-of-n candidate chosen), continued instead of made again.
        max_windows : int, optional
            Make only the first windows (a piece's beginning: best-of-n candidates); the
            clips' images are then all the frames made (a loop's include the tail).

        Returns
        -------
        list of Clip
            ``params`` adds ``windows`` (first frame of each), ``window_frames``,
            ``overlap_frames``, ``crossfade_seconds``, ``loop``, ``seams`` (samples),
            ``cuts`` (the frame where each later window's own frames begin) and
            ``window_seeds``, each piece its own; ``seconds`` is the audio's length.
        """
        from encore.diffusion import continuation

        if audio is not None:
            _check_strength(strength)
        lay = self.piece_layout(seconds, loop=loop)
        if lay is None:
            if audio is None:
                clips = self.generate_batch(seconds, seeds, steps, eta=eta, progress=progress,
                                            sampler=sampler)
            else:
                clips = self.vary_batch(audio, strength, seeds, steps, seconds=seconds, eta=eta,
                                        offset=offset, input_id=input_id, progress=progress,
                                        sampler=sampler)
            return [Clip(c.image, c.audio, c.sample_rate, {**c.params, "loop": False,
                                                           "windows": [0]}) for c in clips]
        steps, sampler = self._solver(steps, sampler)
        seeds = [int(s) for s in seeds]
        batch = len(seeds)
        count = lay.windows if max_windows is None else max(1, min(int(max_windows), lay.windows))
        song_windows: list[torch.Tensor] = []
        used: float | None = None
        if audio is not None:
            song_windows, used = self._song_windows(audio, lay, count, batch, offset)
        calls_per_window = steps if audio is None else steps - sampling.start_step_for(strength, steps)
        ids = (input_id,) if input_id else ()

        def make(k: int, known: torch.Tensor | None, mask: torch.Tensor | None,
                 callback: ProgressCallback | None) -> SampleResult:
            common = dict(seed=[continuation.window_seed(s, k) for s in seeds], steps=steps,
                          eta=eta, precision=self.precision, callback=callback, sampler=sampler)
            if known is not None and mask is not None:
                return sampling.inpaint(
                    self.model, known, mask, images=song_windows[k] if audio is not None else None,
                    strength=float(strength) if audio is not None else 1.0, **common)  # type: ignore[arg-type]
            if audio is None:
                return sampling.generate(self.model, batch=batch, width=lay.window, **common)  # type: ignore[arg-type]
            return sampling.vary(self.model, song_windows[0], strength=float(strength),
                                 input_ids=ids, **common)  # type: ignore[arg-type]

        timeline, results, heads = self._continue(lay, count, batch, make, calls_per_window,
                                                  progress, first_windows, guides=song_windows)
        first_params = results[0].params.to_dict() if results else {
            "kind": "vary" if audio is not None else "generate", "steps": steps, "eta": float(eta),
            "height": self.mel.y_res, "width": lay.window, "sampler": sampler,
            "strength": float(strength) if audio is not None else None,
            "start_step": sampling.start_step_for(strength, steps) if audio is not None else 0,
            "precision": "fp32", "weights": None,
            "input_ids": list(ids), "seeds": seeds,
        }
        return self._piece_clips(lay, count, timeline, seeds, first_params, seconds=seconds,
                                 loop=loop, max_windows=max_windows, heads=heads,
                                 offsets=None if used is None else [used])

    def _song_windows(
        self, audio: AudioInput, lay: Any, count: int, batch: int, offset: float | None
    ) -> tuple[list[torch.Tensor], float]:
        """The first ``count`` windows of a song's stretch from ``offset`` (the loudest
        stretch of the piece's length by default), each ``(batch, 1, H, window)`` uint8, and
        the offset used."""
        from encore.audio.mel import audio_slice_to_image

        hop = self.mel.hop_length
        cfg = self.mel.replace(x_res=lay.window)
        y, used = self._stretch(audio, (lay.timeline - 1) * hop + cfg.slice_samples, offset)
        windows = []
        for k in range(count):
            s = lay.starts[k] * hop
            img = audio_slice_to_image(y[s : s + cfg.slice_samples], cfg)
            windows.append(torch.from_numpy(np.repeat(img[None, None], batch, axis=0)))
        return windows, used

    def _continue(
        self,
        lay: Any,
        count: int,
        batch: int,
        make: Callable[[int, torch.Tensor | None, torch.Tensor | None, ProgressCallback | None],
                       SampleResult],
        calls_per_window: int,
        progress: Progress | None,
        first_windows: np.ndarray | None = None,
        guides: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[SampleResult], list[list[int]]]:
        """The first ``count`` windows of a piece on its timeline of frames: ``make(k, known,
        mask, callback)`` samples window ``k`` (``known``/``mask`` None for window 0; else the
        frames the earlier windows made, fixed where the mask is 1).

        Window ``k``'s fixed head ends at the calmest moment near the end of its overlap
        (:func:`encore.diffusion.continuation.choose_cut`: the flux of the frames made so far
        and of ``guides[k]``, the images window ``k`` follows, when given). Returns the
        timeline, the results and each later window's head length (frames fixed) per item."""
        from encore.audio.mel import images_to_unit
        from encore.diffusion import continuation

        total_calls = max(1, count * calls_per_window)

        def window_progress(k: int) -> ProgressCallback | None:
            if progress is None:
                return None
            return lambda done, _t: progress(min(1.0, (k * calls_per_window + done) / total_calls))

        height, window = self.mel.y_res, lay.window
        timeline = torch.zeros(batch, 1, height, lay.timeline)
        results: list[SampleResult] = []
        heads: list[list[int]] = []
        width = self._crossfade_frames()
        for k in range(count):
            if k == 0 and first_windows is not None:
                first = np.asarray(first_windows, dtype=np.uint8)
                if first.shape != (batch, height, window):
                    raise InvalidInput(
                        f"first_windows must be ({batch}, {height}, {window}), got {first.shape}"
                    )
                out = images_to_unit(torch.from_numpy(first))[:, None]
            else:
                known = mask = None
                if k > 0:
                    # each item its own cut: a piece does not depend on its batch
                    line = timeline.numpy()
                    top_db = self.mel.top_db
                    guide = None if not guides else images_to_unit(guides[k]).numpy()
                    cut = [continuation.choose_cut(
                        lay, k, continuation.frame_flux(line[b], top_db), width,
                        None if guide is None else continuation.frame_flux(
                            guide[b % guide.shape[0]], top_db))
                        for b in range(batch)]
                    heads.append(cut)
                    mask = torch.from_numpy(np.stack(
                        [continuation.window_mask(lay, k, h) for h in cut]))[:, None, None]
                    known = torch.from_numpy(np.stack(
                        [continuation.known_image(lay, k, line[b], h) for b, h in enumerate(cut)]))
                res = make(k, known, mask, window_progress(k))
                results.append(res)
                out = res.images
            continuation.place(lay, k, timeline, out)
        return timeline, results, heads

    def _crossfade_frames(self) -> int:
        """Mel frames of one crossfade (the width over which a boundary's calm is judged)."""
        return max(1, int(round(self.crossfade_seconds * self.sample_rate / self.mel.hop_length)))

    def _piece_clips(
        self,
        lay: Any,
        count: int,
        timeline: torch.Tensor,
        seeds: Sequence[int],
        first_params: dict[str, Any],
        *,
        seconds: float,
        loop: bool,
        max_windows: int | None,
        offsets: list[float] | None,
        heads: list[list[int]],
    ) -> list[Clip]:
        """Vocode a piece's windows one by one, join them (crossfades, each at the calmest
        moment of the frames both windows share: ``continuation.crossfade_centre``) and
        describe it."""
        from encore.audio.mel import unit_to_images
        from encore.diffusion import continuation

        window, height, hop = lay.window, self.mel.y_res, self.mel.hop_length
        batch = len(seeds)
        if count < lay.windows:
            lay = continuation.PieceLayout(
                frames=lay.starts[count - 1] + window, timeline=lay.starts[count - 1] + window,
                window=window, overlap=lay.overlap, starts=lay.starts[:count], loop=False,
            )
        pixels = unit_to_images(timeline).numpy()[:, 0]  # (B, H, timeline)
        windows = np.stack([pixels[..., s : s + window] for s in lay.starts])  # (K, B, H, W)
        audio_w = self.to_audio(windows.reshape(-1, height, window))
        audio_w = audio_w.reshape(len(lay.starts), batch, -1)
        xfade = int(round(self.crossfade_seconds * self.sample_rate))
        width = self._crossfade_frames()
        joins = []
        unit = timeline.numpy()
        for b in range(batch):
            flux = continuation.frame_flux(unit[b], self.mel.top_db)
            centres = [continuation.crossfade_centre(lay, k, heads[k - 1][b], flux, width) * hop
                       for k in range(1, len(lay.starts))]
            joins.append(continuation.join_windows(lay, audio_w[:, b], hop, xfade, centres))
        joined = np.stack([j for j, _ in joins])
        if not loop and count == lay.windows and max_windows is None:
            n = int(round(seconds * self.sample_rate))
            joined = joined[:, :n] if joined.shape[-1] >= n else np.pad(
                joined, ((0, 0), (0, n - joined.shape[-1])))
        first_params = dict(first_params)
        first_params.pop("seeds", None)
        vocoder = self.vocoder()
        base = {
            **first_params,
            "batch_seeds": list(seeds),
            "seconds": float(joined.shape[-1] / self.sample_rate),
            "frames": lay.frames,
            "model": self.model.name,
            "vocoder": {"n_iter": vocoder.n_iter, "seed": vocoder.seed},
            **self._guidance_params(),
            "windows": list(lay.starts),
            "window_frames": window,
            "overlap_frames": lay.overlap,
            "crossfade_seconds": xfade / self.sample_rate,
            "loop": bool(loop),
        }
        if offsets is not None:
            base["offsets"] = list(offsets)
        # a piece's image is its frames; with max_windows, everything made (a loop's
        # timeline includes the tail that repeats its head)
        end = lay.frames if max_windows is None else lay.timeline
        return [
            Clip(
                image=np.ascontiguousarray(pixels[i, :, :end]),
                audio=np.ascontiguousarray(joined[i]),
                sample_rate=self.sample_rate,
                params={"seed": s, **base,
                        "window_seeds": [continuation.window_seed(s, k) for k in range(count)],
                        "seams": joins[i][1],
                        # where each later window's own frames begin (its head ends)
                        "cuts": [lay.starts[k] + heads[k - 1][i] for k in range(1, len(lay.starts))]},
            )
            for i, s in enumerate(seeds)
        ]
