"""One work item end to end, inside a worker: parse → MIDI → audio → mel → files.

:func:`render_piece` never raises for a bad piece: it returns a :class:`PieceResult` whose
``reason`` says which stage failed (``parse:StreamException``, ``timeout:midi``,
``render:silent``, ``no_slices`` …). The whole item runs under a per-item time limit
(CPU time, ``SIGPROF``, when called in a process's main thread).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encore.audio.mel import MelConfig
from encore.corpus.collections import GENRES
from encore.corpus.features import piece_mel_db, select_slices
from encore.corpus.render import (
    PieceFailed,
    midi_parts,
    parse_item,
    score_to_midi,
    synthesize,
    truncate_score,
)
from encore.corpus.sources import WorkItem
from encore.corpus.variation import choose_tempo_transpose, choose_variation, rng_for

logger = logging.getLogger(__name__)

AUDIO_DIR = "audio"
MEL_DIR = "mel"


class PieceTimeout(BaseException):
    """Raised by the alarm handler (a BaseException so music21's broad excepts pass it on)."""


@dataclass(frozen=True)
class PieceResult:
    """What a worker reports for one item (files are already written when ``ok``)."""

    piece_id: str
    ok: bool
    reason: str | None = None
    detail: str = ""
    programs: tuple[int, ...] = ()
    tempo_scale: float = 1.0
    transpose: int = 0
    mode: str = ""
    seconds: float = 0.0
    n_frames: int = 0
    slices: tuple[int, ...] = ()
    #: CPU seconds per stage (parse, midi, render, mel, write).
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`PieceTimeout` after ``seconds`` of this process's CPU time.

    CPU time (``ITIMER_PROF``) rather than wall time, so that the limit, and therefore which
    pieces time out, does not depend on how busy the machine is. A no-op outside the main
    thread or without ``setitimer``.
    """
    usable = (
        seconds is not None
        and seconds > 0
        and threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
    )
    if not usable:
        yield
        return

    def _on_alarm(signum: int, frame: object) -> None:
        raise PieceTimeout()

    previous = signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0.0)
        signal.signal(signal.SIGPROF, previous)


def audio_relpath(piece_id: str) -> str:
    return f"{AUDIO_DIR}/{piece_id}.flac"


def mel_relpath(piece_id: str) -> str:
    return f"{MEL_DIR}/{piece_id}.npy"


def _write_outputs(out_dir: Path, piece_id: str, audio: np.ndarray, db: np.ndarray,
                   sample_rate: int) -> None:
    import soundfile as sf

    audio_path = out_dir / audio_relpath(piece_id)
    mel_path = out_dir / mel_relpath(piece_id)
    audio_tmp = audio_path.with_name(audio_path.name + ".part")
    mel_tmp = mel_path.with_name(piece_id + ".part.npy")
    sf.write(audio_tmp, audio, sample_rate, format="FLAC", subtype="PCM_16")
    np.save(mel_tmp, db)
    audio_tmp.replace(audio_path)
    mel_tmp.replace(mel_path)


def render_piece(
    item: WorkItem,
    *,
    out_dir: str | Path,
    seed: int,
    mel_config: MelConfig,
    max_seconds: float = 120.0,
    timeout: float | None = 30.0,
) -> PieceResult:
    """Render one work item and write ``audio/<id>.flac`` and ``mel/<id>.npy``.

    Parameters
    ----------
    item : WorkItem
    out_dir : path
        The corpus folder (``audio/`` and ``mel/`` must exist).
    seed : int
        Build seed; the variation is drawn from (seed, piece id).
    mel_config : MelConfig
        Sample rate, mel bands and the slice width (``x_res``).
    max_seconds : float
        Cap on the rendered length.
    timeout : float or None
        Time limit for the whole item (s).

    Returns
    -------
    PieceResult
        ``ok`` with the variation, duration, frames and slices, or the failure reason.
    """
    out = Path(out_dir)
    genre = GENRES[item.genre]
    stage = "parse"
    timings: dict[str, float] = {}
    clock = time.process_time()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.process_time()
        timings[name] = round(now - clock, 4)
        clock = now

    try:
        with time_limit(timeout):
            score = parse_item(item)
            lap("parse")
            stage = "midi"
            # Cut long scores before the (slow) MIDI translation, with a margin for the
            # approximate duration estimate; the renderer applies the exact cap.
            tempo, _ = choose_tempo_transpose(genre, rng_for(seed, "tempo", item.piece_id))
            score = truncate_score(score, max_seconds * tempo * 1.05 + 4.0)
            pm = score_to_midi(score)
            parts = midi_parts(pm)
            if not parts:
                raise PieceFailed("midi:no_notes", "the MIDI file has no melodic notes")
            lap("midi")
            stage = "render"
            variation = choose_variation(genre, len(parts), seed, item.piece_id)
            audio, programs = synthesize(
                parts,
                variation.programs,
                sample_rate=mel_config.sample_rate,
                tempo_scale=variation.tempo_scale,
                transpose=variation.transpose,
                max_seconds=max_seconds,
            )
            lap("render")
            stage = "mel"
            db = piece_mel_db(audio, mel_config)
            slices = select_slices(db, mel_config.x_res)
            if not slices:
                raise PieceFailed("no_slices", f"{len(audio) / mel_config.sample_rate:.1f} s, "
                                  f"no non-silent {mel_config.x_res}-frame window")
            lap("mel")
            stage = "write"
            _write_outputs(out, item.piece_id, audio, db, mel_config.sample_rate)
            lap("write")
    except PieceTimeout:
        return PieceResult(item.piece_id, False, f"timeout:{stage}", f"over {timeout} s of CPU")
    except PieceFailed as exc:
        return PieceResult(item.piece_id, False, exc.reason, str(exc))
    except Exception as exc:
        return PieceResult(item.piece_id, False, f"{stage}:{type(exc).__name__}", str(exc)[:200])
    return PieceResult(
        piece_id=item.piece_id,
        ok=True,
        programs=programs,
        tempo_scale=variation.tempo_scale,
        transpose=variation.transpose,
        mode=variation.mode,
        seconds=round(len(audio) / mel_config.sample_rate, 4),
        n_frames=int(db.shape[1]),
        slices=tuple(slices),
        timings=timings,
    )
