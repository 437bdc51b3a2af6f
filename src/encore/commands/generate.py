"""``encore generate``: a clip from noise, a variation of one song, or a merge of several.

::

    encore generate --out clip.wav                            # from noise, shipped model
    encore generate --from song.mp3 --strength 0.6 --out v.ogg
    encore generate --from song.mp3 --seconds 24 --out piece.ogg   # a long piece
    encore generate --from a.wav --from b.flac --out blend.wav     # = --from a.wav b.flac
    encore generate --from a.wav b.flac --weights 0.7 0.3 --out m.wav --seconds 8
    encore generate --from a.wav b.flac --method slerp --out m.wav   # the original merge

Input songs meet the web upload's rules (:func:`encore.services.songs.validate_song`),
checked before the model loads. Writes the audio (wav, flac or ogg by the extension;
peak-normalised to 0.95; its first and last 30 ms faded in and out, so that it does not
click) and the spectrogram as a PNG beside it (same name, ``.png``; low frequencies at the
bottom).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from encore.commands import options
from encore.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import numpy as np

    from encore.config import Settings

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
#: encore.diffusion.blend.MERGE_METHODS, spelled out so that --help does not load torch
MERGE_METHODS = ("slerp", "mix", "mix-inverted", "splice")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate a clip (from noise, a variation of a song, or a merge of songs)",
        description="No --from: a new clip from noise. One song: a variation. "
        "Several: a blend (by default their spectrograms mixed by --weights and re-made at "
        "--strength as a variation is; --method slerp: DDIM inversion of each, SLERP of the "
        "noises, denoising).",
    )
    options.add_model(p, help="model folder (default: the shipped base model)")
    options.add_out(p, help="output audio file (.wav, .flac, .ogg)")
    p.add_argument(
        "--from", dest="songs", nargs="+", action="extend", type=Path, default=[],
        metavar="SONG",
        help="input songs (wav, flac, ogg, mp3), as for an upload; several blend them: "
        "--from a.wav b.flac or --from a.wav --from b.flac",
    )
    p.add_argument(
        "--strength", type=float, default=None,
        help="strength of a variation or a blend in [0, 1] (default: ENCORE_DEFAULT_STRENGTH)"
    )
    p.add_argument("--weights", type=float, nargs="+",
                   help="blend weights, one per song: non-negative, not all zero (default equal)")
    p.add_argument("--method", choices=MERGE_METHODS, default=None,
                   help="how several songs are blended (default mix-inverted; docs/engine.md, 'Blends')")
    p.add_argument("--seconds", type=float, default=None,
                   help="length in seconds (default: ENCORE_CLIP_SECONDS, one canvas); a "
                        "longer piece (from noise, one song or a blend) is made window by "
                        "window (continuation), up to ENCORE_MAX_PIECE_SECONDS")
    p.add_argument("--loop", action="store_true",
                   help="a piece whose end continues into its beginning (not --method slerp)")
    p.add_argument("--steps", type=int, default=None,
                   help="solver steps (default: ENCORE_INFERENCE_STEPS; merges: ENCORE_MERGE_STEPS)")
    options.add_sampler(p, default=None,
                        help="solver of generation and variation (default: ENCORE_SAMPLER; ddim "
                             "when --eta > 0); the slerp and mix-inverted blends always use DDIM")
    options.add_seed(p, help="random seed (default 0)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1] (default 0)")
    p.add_argument("--offset", type=float, default=None, help="start of the song window (s)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    p.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"), help="autocast"
    )
    options.add_no_progress(p, help="hide the progress bar")
    p.set_defaults(handler=run)


def _check_args(args: argparse.Namespace, settings: Settings) -> None:
    """Validate everything cheap before loading a model."""
    suffix = args.out.suffix.lower()
    if suffix not in AUDIO_FORMATS:
        raise InvalidInput(
            f"--out {args.out}: unknown audio extension {suffix or '(none)'!r}; "
            f"use one of {', '.join(AUDIO_FORMATS)}"
        )
    if not args.out.parent.is_dir():
        raise NotFound(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.strength is not None:
        if not (math.isfinite(args.strength) and 0.0 <= args.strength <= 1.0):
            raise InvalidInput(f"--strength {args.strength} must be in [0, 1]")
        if not args.songs:
            raise InvalidInput(f"--strength {args.strength} needs a --from song (a variation or a blend)")
        if args.method == "slerp":
            raise InvalidInput(f"--strength {args.strength}: the slerp merge has no strength")
    if not (math.isfinite(args.eta) and 0.0 <= args.eta <= 1.0):
        raise InvalidInput(f"--eta {args.eta} must be in [0, 1]")
    most = settings.max_piece_seconds
    if args.seconds is not None and not (math.isfinite(args.seconds) and 0 < args.seconds <= most):
        raise InvalidInput(f"--seconds {args.seconds} must be in (0, {most:g}] "
                           "(ENCORE_MAX_PIECE_SECONDS)")
    if args.loop and len(args.songs) > 1 and args.method == "slerp":
        raise InvalidInput("--loop: a slerp merge is one canvas and cannot loop; use another "
                           "--method (default mix-inverted)")
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise InvalidInput(f"--steps {args.steps} must be in [1, 1000]")
    if args.seed < 0:
        raise InvalidInput(f"--seed {args.seed} must be >= 0")
    if args.weights is not None:
        if len(args.songs) < 2:
            raise InvalidInput(f"--weights {args.weights} needs at least two --from songs")
        if len(args.weights) != len(args.songs):
            raise InvalidInput(
                f"--weights {args.weights}: {len(args.weights)} weights for {len(args.songs)} songs"
            )
        bad = [w for w in args.weights if not (math.isfinite(w) and w >= 0)]
        if bad:
            raise InvalidInput(f"--weights {args.weights}: each must be a number >= 0 (not {bad[0]})")
        if sum(args.weights) <= 0:
            raise InvalidInput(f"--weights {args.weights}: at least one must be above 0")
    if args.method is not None and len(args.songs) < 2:
        raise InvalidInput(f"--method {args.method} needs at least two --from songs")
    if args.model is not None and not args.model.is_dir():
        raise NotFound(f"--model {args.model} does not exist")
    for song in args.songs:
        if song.is_dir():
            raise InvalidInput(f"--from {song}: is a folder, not an audio file")
        if not song.is_file():
            raise NotFound(f"--from {song}: no such file")


def _check_songs(paths: list[Path], settings: Settings) -> list[np.ndarray]:
    """The web upload's rules for each input song (size, format, length, rate, channels,
    not silent: :func:`encore.services.songs.validate_song`), before any model loads.
    Returns each song's audio at the validation rate."""
    from encore.services.songs import check_song_size, validate_song

    audio = []
    for path in paths:
        try:
            check_song_size(settings, path.name, path.stat().st_size)
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"--from {path}: cannot be read ({exc.strerror or exc})") from exc
        audio.append(validate_song(settings, path.name, data)[1])
    return audio


def _save_png(image, path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    Image.fromarray(image[::-1].copy(), mode="L").save(path)


def run(args: argparse.Namespace) -> int:
    from encore.config import get_settings

    settings = get_settings()
    _check_args(args, settings)
    validated = _check_songs(args.songs, settings)  # bad input fails before the model loads

    import soundfile as sf
    from tqdm import tqdm

    from encore.audio.fades import fade_edges
    from encore.diffusion.engine import Engine, peak_normalise
    from encore.services.songs import VALIDATION_SR

    seconds = args.seconds if args.seconds is not None else settings.clip_seconds
    merging = len(args.songs) > 1
    from encore.diffusion.blend import DEFAULT_METHOD

    method = args.method or DEFAULT_METHOD
    # a "mix" or "splice" blend is a variation of its start image: its steps; the others
    # invert with DDIM
    default_steps = (settings.merge_steps if merging and method in ("slerp", "mix-inverted")
                     else settings.inference_steps)
    steps = args.steps if args.steps is not None else default_steps
    sampler = args.sampler or ("ddim" if args.eta > 0 else settings.sampler)
    strength = args.strength if args.strength is not None else settings.default_strength
    engine = Engine(args.model, device=args.device, precision=args.precision)
    songs = [y if engine.sample_rate == VALIDATION_SR else engine.load_song(s)
             for s, y in zip(args.songs, validated, strict=True)]

    from encore.diffusion.sampling import start_step_for

    if not songs:
        kind, total = "generate", steps
    elif len(songs) == 1:
        kind, total = "vary", steps - start_step_for(strength, steps)
    elif method in ("mix", "splice"):
        kind, total = "blend", steps - start_step_for(strength, steps)
    elif method == "mix-inverted":
        kind, total = "blend", 2 * (steps - start_step_for(strength, steps))
    else:
        kind, total = "merge", 2 * steps
    # a long piece (or a loop): window by window (continuation); a slerp merge is one canvas
    layout = engine.piece_layout(seconds, loop=args.loop) if kind != "merge" else None
    if layout is not None:
        kind, total = f"{kind} piece", total * layout.windows
    bar = tqdm(total=total, desc=kind, unit="step", disable=args.no_progress, leave=False)

    def progress(fraction: float) -> None:
        bar.n = round(fraction * total)
        bar.refresh()

    start = time.perf_counter()
    try:
        if layout is not None and len(songs) < 2:
            clip = engine.piece_batch(
                songs[0] if songs else None, seconds, [args.seed], steps, strength=strength,
                offset=args.offset, loop=args.loop, eta=args.eta, progress=progress,
                sampler=sampler, input_id=str(args.songs[0]) if songs else "",
            )[0]
        elif not songs:
            clip = engine.generate(seconds, args.seed, steps, eta=args.eta, progress=progress,
                                   sampler=sampler)
        elif len(songs) == 1:
            clip = engine.vary(
                songs[0],
                strength,
                args.seed,
                steps,
                seconds=seconds,
                eta=args.eta,
                offset=args.offset,
                input_id=str(args.songs[0]),
                progress=progress,
                sampler=sampler,
            )
        else:
            clip = engine.merge(
                songs,
                args.weights,
                args.seed,
                steps,
                seconds=seconds,
                eta=args.eta,
                offsets=[args.offset] * len(songs) if args.offset is not None else None,
                input_ids=[str(s) for s in args.songs],
                progress=progress,
                strength=None if method == "slerp" else strength,
                method=method,
                sampler=sampler,
                loop=args.loop,
            )
    finally:
        bar.close()
    elapsed = time.perf_counter() - start

    out: Path = args.out
    sf.write(
        out,
        peak_normalise(fade_edges(clip.audio, clip.sample_rate)),  # no click at either end
        clip.sample_rate,
        format=AUDIO_FORMATS[out.suffix.lower()],
    )
    png = out.with_suffix(".png")
    _save_png(clip.image, png)
    params = {k: v for k, v in clip.params.items() if k not in ("height",)}
    print(  # noqa: T201
        f"wrote {out} ({clip.seconds:.2f} s at {clip.sample_rate} Hz) and {png} "
        f"in {elapsed:.1f} s with model {clip.params['model']}"
    )
    print(json.dumps(params, sort_keys=True), file=sys.stdout)  # noqa: T201
    return 0
