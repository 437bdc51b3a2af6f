"""Score → MIDI → audio: music21 parsing, ``music21.midi.translate``, ``pretty_midi`` and
offline ``tinysoundfont`` synthesis with the General-MIDI soundfont pretty_midi ships.

Everything here runs inside a worker process; the soundfont file is read once per process
and each piece gets a fresh synthesiser. No audio device is opened.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encore.corpus.sources import WorkItem
from encore.errors import EncoreError

logger = logging.getLogger(__name__)

#: Seconds rendered after the last note ends (release tails).
TAIL_SECONDS = 1.0
#: Output peak after normalisation (-1 dBFS).
PEAK = 0.891
_DRUM_CHANNEL = 9
_MELODIC_CHANNELS = tuple(c for c in range(16) if c != _DRUM_CHANNEL)


class PieceFailed(EncoreError):
    """A piece could not be turned into audio; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def soundfont_path() -> Path:
    """``TimGM6mb.sf2``, the General-MIDI soundfont inside the ``pretty_midi`` package."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


# --- parsing -----------------------------------------------------------------------------


def parse_item(item: WorkItem) -> Any:
    """Parse a work item into a music21 ``Score``.

    Book tunes are parsed from their ABC text; files with ``converter.parseFile`` without
    music21's pickle cache. An ``Opus`` (a file with several works) yields its first score.

    Raises
    ------
    PieceFailed
        ``parse:empty`` when the result holds no notes.
    """
    from music21 import converter, stream

    if item.text is not None:
        parsed = converter.parseData(item.text, format="abc")
    else:
        parsed = converter.parseFile(item.path, forceSource=True, storePickle=False)
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if not scores:
            raise PieceFailed("parse:empty", f"{item.source} holds no score")
        parsed = scores[0]
    if not parsed.recurse().notes.first():
        raise PieceFailed("parse:empty", f"{item.source} tune {item.tune} has no notes")
    return parsed


def score_seconds(score: Any) -> tuple[float, list[tuple[float, float, float]]]:
    """Approximate duration (s) of a score at its metronome marks (120 bpm when none).

    Returns the duration and the tempo regions as ``(start quarter, start second,
    seconds per quarter)``, for :func:`quarters_at`.
    """
    try:
        regions = score.metronomeMarkBoundaries()
    except Exception:
        regions = []
    if not regions:
        return float(score.highestTime) * 0.5, [(0.0, 0.0, 0.5)]
    table = []
    seconds = 0.0
    for start, end, mark in regions:
        per_quarter = 60.0 / (mark.getQuarterBPM() or 120.0)
        table.append((float(start), seconds, per_quarter))
        seconds += (float(end) - float(start)) * per_quarter
    return seconds, table


def quarters_at(table: list[tuple[float, float, float]], seconds: float) -> float:
    """The quarter offset reached after ``seconds`` (inverse of the tempo table)."""
    start_q, start_s, per_q = table[0]
    for row in table:
        if row[1] > seconds:
            break
        start_q, start_s, per_q = row
    return start_q + (seconds - start_s) / per_q


def truncate_score(score: Any, max_seconds: float) -> Any:
    """The score cut to its first measures covering about ``max_seconds``.

    music21's MIDI translation (repeat expansion, tie stripping, channel assignment) costs
    time roughly in proportion to the score's length, and the renderer keeps at most the cap
    anyway. Scores that are short enough, or cannot be cut by measure, come back unchanged.
    """
    seconds, table = score_seconds(score)
    if seconds <= max_seconds:
        return score
    quarters = quarters_at(table, max_seconds)
    try:
        part = score.parts[0] if score.parts else score
        numbers = [m.number for m in part.getElementsByClass("Measure") if m.offset < quarters]
        if len(numbers) < 2:
            return score
        cut = score.measures(numbers[0], numbers[-1])
        if cut.recurse().notes.first() is None:
            return score
        return cut
    except Exception as exc:
        logger.debug("cannot truncate score: %s", exc)
        return score


def _strip_repeats(score: Any) -> Any:
    """Remove repeat barlines and repeat expressions in place (for badly formed repeats)."""
    from music21 import bar, repeat

    s = score
    for m in s.recurse().getElementsByClass("Measure"):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(m, side), bar.Repeat):
                setattr(m, side, bar.Barline("regular"))
    for el in list(s.recurse().getElementsByClass(repeat.RepeatExpression)):
        el.activeSite.remove(el)
    return s


def _unshare_context_objects(score: Any) -> None:
    """Give each measure its own time/key signature and tempo objects (in place).

    music21's ABC reader sometimes puts one ``TimeSignature`` object into several measures;
    the MIDI translation's conductor track then refuses to insert it twice
    (``StreamException: ... is already found in this Stream``).
    """
    import copy

    classes = ("TimeSignature", "KeySignature", "MetronomeMark")
    seen: set[int] = set()
    for container in list(score.recurse(streamsOnly=True, includeSelf=True)):
        for el in list(container.getElementsByClass(classes)):
            if id(el) in seen:
                container.replace(el, copy.deepcopy(el))
            else:
                seen.add(id(el))


def score_to_midi(score: Any) -> Any:
    """music21 score → ``pretty_midi.PrettyMIDI`` through ``music21.midi.translate``.

    Time signatures shared between measures are copied first; badly formed repeats
    (``ExpanderException``) are retried once with the repeats removed.
    """
    import pretty_midi
    from music21 import repeat
    from music21.midi import translate

    _unshare_context_objects(score)

    try:
        midi_file = translate.streamToMidiFile(score)
    except repeat.ExpanderException:
        midi_file = translate.streamToMidiFile(_strip_repeats(score))
    return pretty_midi.PrettyMIDI(io.BytesIO(midi_file.writestr()))


# --- synthesis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """Notes of one part: ``(start_s, end_s, pitch, velocity)`` rows, ascending start."""

    notes: np.ndarray


def midi_parts(pm: Any) -> list[Part]:
    """Melodic instruments with notes, in track order (drum tracks dropped)."""
    parts = []
    for inst in pm.instruments:
        if inst.is_drum or not inst.notes:
            continue
        rows = np.array(
            [(n.start, n.end, n.pitch, n.velocity) for n in inst.notes], dtype=np.float64
        )
        rows = rows[np.argsort(rows[:, 0], kind="stable")]
        parts.append(Part(rows))
    return parts


_SOUNDFONT_BYTES: dict[str, bytes] = {}


def _synth(sample_rate: int) -> tuple[Any, int]:
    """A fresh synthesiser and its soundfont id (the file is read once per process).

    A new synthesiser per piece (about 50 ms) keeps the output independent of what the
    process rendered before: tinysoundfont's ``sounds_off`` and ``reset`` only start quick
    releases, whose tails would leak into the next piece.
    """
    import tinysoundfont

    path = str(soundfont_path())
    if path not in _SOUNDFONT_BYTES:
        _SOUNDFONT_BYTES[path] = Path(path).read_bytes()
    synth = tinysoundfont.Synth(gain=-6.0, samplerate=int(sample_rate))
    return synth, synth.sfload(_SOUNDFONT_BYTES[path])


def synthesize(
    parts: list[Part],
    programs: tuple[int, ...],
    *,
    sample_rate: int,
    tempo_scale: float = 1.0,
    transpose: int = 0,
    max_seconds: float = 120.0,
    tail_seconds: float = TAIL_SECONDS,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Render parts offline with tinysoundfont.

    Parameters
    ----------
    parts : list of Part
        Notes in seconds (as in the MIDI file).
    programs : tuple of int
        General-MIDI program per part (0-based).
    sample_rate : int
        Output rate (Hz).
    tempo_scale : float
        Speed factor: times are divided by it.
    transpose : int
        Semitones added to every pitch; notes leaving 0..127 are dropped.
    max_seconds : float
        Cap on the output length; later notes are dropped, sounding ones cut.
    tail_seconds : float
        Rendered after the last note-off (release tails), within the cap.

    Returns
    -------
    audio : np.ndarray
        float32 mono, shape ``(n_samples,)``, peak-normalised to :data:`PEAK`. The first
        note starts at time 0.
    programs : tuple of int
        The program each part actually played (parts beyond 15 share channels).

    Raises
    ------
    PieceFailed
        ``render:no_notes`` when nothing is left to play, ``render:silent`` when the
        output is all zeros.
    """
    if len(parts) != len(programs):
        raise ValueError(f"{len(parts)} parts but {len(programs)} programs")
    events: list[tuple[float, int, int, int, int]] = []
    channel_program: dict[int, int] = {}
    played: list[int] = []
    t0 = min((float(p.notes[0, 0]) for p in parts if len(p.notes)), default=0.0)
    last_end = 0.0
    for i, (part, program) in enumerate(zip(parts, programs, strict=True)):
        # Parts share a channel when they share a program; beyond 15 programs, wrap around.
        ch = next((c for c, prog in channel_program.items() if prog == program), None)
        if ch is None:
            if len(channel_program) < len(_MELODIC_CHANNELS):
                ch = _MELODIC_CHANNELS[len(channel_program)]
                channel_program[ch] = int(program)
            else:
                ch = _MELODIC_CHANNELS[i % len(_MELODIC_CHANNELS)]
        played.append(channel_program[ch])
        for start, end, pitch, velocity in part.notes:
            key = int(pitch) + int(transpose)
            if not 0 <= key <= 127:
                continue
            on = (float(start) - t0) / tempo_scale
            if on >= max_seconds:
                continue
            off = min(max((float(end) - t0) / tempo_scale, on + 0.02), max_seconds)
            vel = int(min(127, max(1, velocity)))
            events.append((on, 1, ch, key, vel))
            events.append((off, 0, ch, key, 0))
            last_end = max(last_end, off)
    if not events:
        raise PieceFailed("render:no_notes", "no playable notes")
    events.sort(key=lambda e: (e[0], e[1], e[2], e[3]))

    synth, sfid = _synth(sample_rate)
    for ch, program in channel_program.items():
        synth.program_select(ch, sfid, 0, int(program))

    total = int(round(min(max_seconds, last_end + tail_seconds) * sample_rate))
    stereo = np.zeros(2 * total, dtype=np.float32)
    raw = memoryview(stereo).cast("B")
    pos = 0
    for time_s, kind, ch, key, vel in events:
        at = min(int(round(time_s * sample_rate)), total)
        if at > pos:
            synth.generate_simple(at - pos, buffer=raw[8 * pos : 8 * at])
            pos = at
        if kind == 1:
            synth.noteon(ch, key, vel)
        else:
            synth.noteoff(ch, key)
    if total > pos:
        synth.generate_simple(total - pos, buffer=raw[8 * pos : 8 * total])
    mono = stereo.reshape(-1, 2).mean(axis=1)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if not np.isfinite(peak) or peak <= 1e-6:
        raise PieceFailed("render:silent", "the synthesiser produced silence")
    return (mono * (PEAK / peak)).astype(np.float32), tuple(played)
