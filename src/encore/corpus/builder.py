"""``encore corpus build``: render the music21 corpus into a training corpus folder.

Determinism. The work items are put in one fixed order that depends only on the seed and
the collections: per genre, the items are shuffled by the seed; the genres are then
interleaved round-robin. Results are *accepted in that order* (a worker finishing early
only makes its result wait), and each piece's variation is a function of (seed, piece id).
So the same seed and collections give the same manifest, whatever the number of workers
or the machine's load — except that a per-item timeout depends on the machine's speed.

The hours cap is balanced across genres: each genre takes an equal share of the budget
(its last piece may overshoot it); when a genre runs out of items, the budget it left is
shared by the others. Held-out pieces are spread evenly through each genre's order, so a
capped build holds about the held-out share of every genre. Workers run ahead of the acceptance cursor (speculatively); results that end up
not accepted are deleted.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from encore.audio.mel import MEL_CONFIG_FILE, MelConfig
from encore.corpus.collections import COLLECTIONS, resolve_collections
from encore.corpus.manifest import (
    BUILD_FILE,
    MANIFEST_FILE,
    READY_FILE,
    PieceRecord,
    write_manifest,
)
from encore.corpus.pipeline import (
    AUDIO_DIR,
    MEL_DIR,
    PieceResult,
    audio_relpath,
    mel_relpath,
    render_piece,
)
from encore.corpus.sources import WorkItem, collection_items, dedupe_ids
from encore.corpus.variation import HELDOUT, assign_splits, rng_for
from encore.errors import Conflict, InvalidInput

logger = logging.getLogger(__name__)

#: The corpus's spectrogram format: 128 mel bands, 128-frame (2.97 s) training crops.
CORPUS_MEL_CONFIG = MelConfig(x_res=128, y_res=128)


@dataclass(frozen=True)
class BuildOptions:
    """Settings of a corpus build.

    Attributes
    ----------
    hours : float or None
        Cap on the total audio (balanced across genres); None renders everything.
    seed : int
        Orders the items, draws the variations and the held-out split.
    workers : int
        Worker processes; 0 renders in this process (tests, debugging).
    collections : tuple of str or None
        Collection names (default: all of :data:`COLLECTIONS`).
    max_piece_seconds : float
        Cap on one piece's audio.
    timeout_seconds : float
        Time limit per item (parse, MIDI, render, mel, write).
    heldout_fraction : float
        Share of each collection's pieces held out (by source file).
    max_items_per_collection : int or None
        Use only this many (seeded) items of each collection (small test builds).
    overwrite : bool
        Replace an existing corpus in the output folder.
    progress : bool
        Show a tqdm progress bar.
    """

    hours: float | None = 10.0
    seed: int = 0
    workers: int = 2
    collections: tuple[str, ...] | None = None
    max_piece_seconds: float = 120.0
    timeout_seconds: float = 30.0
    heldout_fraction: float = 0.1
    max_items_per_collection: int | None = None
    overwrite: bool = False
    progress: bool = True
    mel_config: MelConfig = CORPUS_MEL_CONFIG

    def __post_init__(self) -> None:
        if self.hours is not None and not self.hours > 0:
            raise InvalidInput(f"hours={self.hours!r} must be > 0")
        if self.workers < 0:
            raise InvalidInput(f"workers={self.workers!r} must be >= 0")
        if not 0 <= self.heldout_fraction < 1:
            raise InvalidInput(f"heldout_fraction={self.heldout_fraction!r} must be in [0, 1)")
        if not self.max_piece_seconds > 0:
            raise InvalidInput(f"max_piece_seconds={self.max_piece_seconds!r} must be > 0")

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d["mel_config"] = self.mel_config.to_dict()
        d.pop("progress")
        d.pop("overwrite")
        return d


@dataclass(frozen=True)
class BuildSummary:
    """Totals of a build (also written to ``build.json``)."""

    out_dir: Path
    pieces: int
    seconds: float
    slices: int
    per_genre: dict[str, dict[str, float]]
    failures: dict[str, int]
    items_total: int
    items_processed: int
    wall_seconds: float
    records: tuple[PieceRecord, ...] = field(repr=False, default=())

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


# --- ordering and the balanced cap --------------------------------------------------------


def ordered_items(
    items: Sequence[WorkItem],
    seed: int,
    max_items_per_collection: int | None = None,
    splits: dict[str, str] | None = None,
) -> list[WorkItem]:
    """The fixed processing order: per genre shuffled by the seed, genres interleaved.

    With ``max_items_per_collection`` each collection is first cut to that many items of
    its own seeded shuffle. With ``splits`` (source → split) the held-out items of each
    genre are spread evenly through its shuffled list, so that any prefix of it (what an
    hours cap keeps) holds about the genre's held-out share.
    """
    by_collection: dict[str, list[WorkItem]] = defaultdict(list)
    for item in items:
        by_collection[item.collection].append(item)
    by_genre: dict[str, list[WorkItem]] = defaultdict(list)
    for collection in sorted(by_collection):
        group = by_collection[collection]
        if max_items_per_collection is not None:
            perm = rng_for(seed, "subset", collection).permutation(len(group))
            group = [group[i] for i in sorted(perm[:max_items_per_collection])]
        by_genre[group[0].genre].extend(group)
    queues = []
    for genre in sorted(by_genre):
        group = by_genre[genre]
        perm = rng_for(seed, "order", genre).permutation(len(group))
        shuffled = [group[i] for i in perm]
        if splits:
            shuffled = _spread_heldout(shuffled, splits)
        queues.append(shuffled)
    order = []
    for rank in range(max((len(q) for q in queues), default=0)):
        order.extend(q[rank] for q in queues if rank < len(q))
    return order


def _spread_heldout(items: list[WorkItem], splits: dict[str, str]) -> list[WorkItem]:
    held = [i for i in items if splits.get(i.source) == HELDOUT]
    train = [i for i in items if splits.get(i.source) != HELDOUT]
    share = len(held) / max(1, len(items))
    out: list[WorkItem] = []
    h = t = 0
    for k in range(len(items)):
        take_held = h < len(held) and (t >= len(train) or h < int(share * (k + 1) + 0.5))
        if take_held:
            out.append(held[h])
            h += 1
        else:
            out.append(train[t])
            t += 1
    return out


class HourBalancer:
    """Accept/reject decisions for the balanced hours cap, fed in processing order.

    Parameters
    ----------
    order : sequence of WorkItem
        The processing order (to know where each genre runs out of items).
    budget_seconds : float or None
        Total audio to collect; None accepts everything.
    """

    def __init__(self, order: Sequence[WorkItem], budget_seconds: float | None) -> None:
        self.budget = budget_seconds
        self.last_index = {item.genre: i for i, item in enumerate(order)}
        self.used: dict[str, float] = {g: 0.0 for g in self.last_index}
        self.exhausted: set[str] = set()

    @property
    def total(self) -> float:
        return sum(self.used.values())

    def done(self) -> bool:
        """Every genre has its share (or has run out of items)."""
        if self.budget is None:
            return False
        return all(g in self.exhausted or self.used[g] >= self.quota(g) for g in self.used)

    def quota(self, genre: str) -> float:
        if self.budget is None:
            return float("inf")
        active = [g for g in self.used if g not in self.exhausted]
        spent = sum(self.used[g] for g in self.exhausted)
        return max(0.0, self.budget - spent) / max(1, len(active))

    def full(self, genre: str) -> bool:
        return self.used[genre] >= self.quota(genre)

    def add(self, genre: str, seconds: float) -> None:
        self.used[genre] += seconds

    def passed(self, index: int, genre: str) -> None:
        """The cursor has dealt with item ``index`` (accepted, failed or skipped)."""
        if self.last_index.get(genre) == index:
            self.exhausted.add(genre)


# --- the build ------------------------------------------------------------------------------


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    existing = [n for n in (MANIFEST_FILE, BUILD_FILE, READY_FILE) if (out / n).exists()]
    if existing and not overwrite:
        raise Conflict(f"{out} already holds a corpus ({', '.join(existing)}); pass --overwrite")
    for name in existing:
        (out / name).unlink()
    for sub in (AUDIO_DIR, MEL_DIR):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True)


def _sweep(out: Path, keep: set[str]) -> None:
    """Delete audio/mel files (and partial files) of pieces not in ``keep``."""
    for sub, suffix in ((AUDIO_DIR, ".flac"), (MEL_DIR, ".npy")):
        for path in (out / sub).iterdir():
            name = path.name
            pid = name[: -len(suffix)] if name.endswith(suffix) else None
            if pid is None or pid not in keep:
                path.unlink(missing_ok=True)


def _quiet() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("music21").setLevel(logging.ERROR)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # pool.terminate() must end workers
    _quiet()


def warm_up(mel_config: MelConfig) -> None:
    """Import and exercise the pipeline once (music21, MIDI, soundfont, librosa).

    Done in the parent before the workers are forked, so that first-use costs (imports,
    librosa's JIT compilation, loading the soundfont) are paid once and are not charged to
    the first piece's time limit.
    """
    from encore.corpus.features import piece_mel_db
    from encore.corpus.render import midi_parts, score_to_midi, synthesize

    _quiet()
    from music21 import converter

    score = converter.parseData("X:1\nT:warm-up\nM:4/4\nL:1/4\nK:C\nCDEF|G4|]\n", format="abc")
    parts = midi_parts(score_to_midi(score))
    audio, _ = synthesize(parts, (0,) * len(parts), sample_rate=mel_config.sample_rate)
    piece_mel_db(audio, mel_config)


def _run_task(args: tuple[WorkItem, dict[str, Any]]) -> PieceResult:
    item, kwargs = args
    return render_piece(item, **kwargs)


class _Inline:
    """The pool interface, run in this process (``workers=0``)."""

    class _Done:
        def __init__(self, value: PieceResult) -> None:
            self.value = value

        def get(self, timeout: float | None = None) -> PieceResult:
            return self.value

    def apply_async(self, fn: Callable[..., PieceResult], args: tuple) -> _Inline._Done:
        return self._Done(fn(*args))

    def terminate(self) -> None:
        pass

    def join(self) -> None:
        pass


def all_items(collections: Sequence[str] | None) -> list[WorkItem]:
    """Work items of the named collections (all when None), books split into tunes."""
    items: list[WorkItem] = []
    for spec in resolve_collections(list(collections) if collections else None):
        items.extend(collection_items(spec))
    return dedupe_ids(items)


def build_corpus(
    out_dir: str | Path,
    options: BuildOptions = BuildOptions(),
    *,
    items: Sequence[WorkItem] | None = None,
) -> BuildSummary:
    """Render a corpus into ``out_dir``.

    Writes ``audio/``, ``mel/``, ``mel_config.json``, ``manifest.jsonl`` and
    ``build.json`` (see :mod:`encore.corpus.manifest`). A piece that fails is skipped and
    counted by reason in ``build.json``; it never stops the build.

    Parameters
    ----------
    out_dir : path
        The corpus folder (created if missing).
    options : BuildOptions
    items : sequence of WorkItem, optional
        Render these instead of the collections' items (tests, custom sources). Their
        ``genre`` must be a known genre.

    Returns
    -------
    BuildSummary

    Raises
    ------
    Conflict
        If ``out_dir`` already holds a corpus and ``options.overwrite`` is false.
    """
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _prepare_out_dir(out, options.overwrite)
    mel_config = options.mel_config
    mel_config.save(out)

    order, splits = _plan(list(items) if items is not None else all_items(options.collections),
                          options)
    balancer = HourBalancer(order, None if options.hours is None else options.hours * 3600.0)
    logger.info("corpus build: %d items in %d genres, budget %s h, %d workers, seed %d",
                len(order), len(balancer.used), options.hours, options.workers, options.seed)

    task_kwargs = {
        "out_dir": str(out),
        "seed": options.seed,
        "mel_config": mel_config,
        "max_seconds": options.max_piece_seconds,
        "timeout": options.timeout_seconds,
    }
    # The CPU-time limit inside the worker is the real one; this wall-clock limit only
    # catches a worker stuck in C code, so it is generous (the machine may be busy).
    hard_timeout = options.timeout_seconds * 20 + 300
    warm_up(mel_config)
    if options.workers > 0:
        ctx = multiprocessing.get_context("fork")
        pool: Any = ctx.Pool(options.workers, initializer=_worker_init, maxtasksperchild=200)
    else:
        pool = _Inline()
    # Workers run this far ahead of the in-order acceptance, so that one slow piece does
    # not leave the other workers idle.
    window = 32 * options.workers if options.workers > 0 else 0

    tally = _Tally()
    pending: dict[int, Any] = {}
    next_submit = 0
    bar = _progress_bar(options, len(order))

    def submit(index: int) -> None:
        pending[index] = pool.apply_async(_run_task, ((order[index], task_kwargs),))

    try:
        for cursor, item in enumerate(order):
            if balancer.done():
                break
            if balancer.full(item.genre):
                pending.pop(cursor, None)
                balancer.passed(cursor, item.genre)
                continue
            # The cursor's item first (the pool runs tasks in submission order), then the
            # look-ahead.
            if cursor not in pending:
                submit(cursor)
            next_submit = max(next_submit, cursor + 1)
            while len(pending) < window and next_submit < len(order):
                j = next_submit
                next_submit += 1
                if not balancer.full(order[j].genre):
                    submit(j)
            try:
                result: PieceResult = pending.pop(cursor).get(timeout=hard_timeout)
            except multiprocessing.TimeoutError:
                result = PieceResult(item.piece_id, False, "timeout:hard", f"over {hard_timeout} s")
            balancer.passed(cursor, item.genre)
            tally.take(item, result, splits[item.source], balancer, started)
            _update_bar(bar, options, result, balancer, len(tally.records),
                        sum(tally.failures.values()))
    finally:
        pool.terminate()
        pool.join()
        if bar is not None:
            bar.close()
    _sweep(out, {r.piece_id for r in tally.records})
    write_manifest(out / MANIFEST_FILE, tally.records)
    wall = time.perf_counter() - started
    summary = _summary(out, tally.records, tally.failures, len(order), tally.processed, wall)
    _write_build_json(out, summary, options, tally.examples, tally.cpu,
                      _cpu_seconds() - cpu_started)
    return summary


def _plan(source_items: list[WorkItem],
          options: BuildOptions) -> tuple[list[WorkItem], dict[str, str]]:
    """The items in the order they are tried, and each source's split (whole sources go
    to one split, so no held-out tune shares a book with a training one)."""
    if not source_items:
        raise InvalidInput("no work items: the collections hold no score files")
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for item in source_items:
        counts[item.collection][item.source] += 1
    splits = assign_splits(counts, options.seed, options.heldout_fraction)
    return ordered_items(source_items, options.seed, options.max_items_per_collection,
                         splits), splits


@dataclass
class _Tally:
    """What the build accepted and skipped so far, in the order the pieces were tried."""

    records: list[PieceRecord] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    processed: int = 0

    def take(self, item: WorkItem, result: PieceResult, split: str, balancer: HourBalancer,
             started: float) -> None:
        """Count one rendered (or failed) piece; an accepted one fills its genre's hours."""
        self.processed += 1
        if not result.ok:
            reason = result.reason or "unknown"
            self.failures[reason] += 1
            if len(self.examples[reason]) < 3:
                self.examples[reason].append(f"{item.piece_id}: {result.detail}")
            logger.debug("skipped %s: %s %s", item.piece_id, result.reason, result.detail)
            return
        self.records.append(_record(item, result, split))
        logger.debug("accepted %s (%.1f s of audio, CPU %s) at %.1f s", item.piece_id,
                     result.seconds, result.timings, time.perf_counter() - started)
        self.cpu[item.genre].update(result.timings)
        balancer.add(item.genre, result.seconds)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _record(item: WorkItem, result: PieceResult, split: str) -> PieceRecord:
    return PieceRecord(
        piece_id=item.piece_id,
        collection=item.collection,
        genre=item.genre,
        source=item.source,
        tune=item.tune,
        programs=tuple(result.programs),
        tempo_scale=result.tempo_scale,
        transpose=result.transpose,
        seconds=result.seconds,
        n_frames=result.n_frames,
        split=split,
        audio=audio_relpath(item.piece_id),
        mel=mel_relpath(item.piece_id),
        slices=tuple(result.slices),
    )


def _progress_bar(options: BuildOptions, n_items: int) -> Any:
    if not options.progress:
        return None
    import sys

    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: workers may be forked later
    interval = 0.5 if sys.stderr.isatty() else 15.0
    if options.hours is not None:
        return tqdm(total=round(options.hours * 60, 1), unit="min", desc="audio",
                    mininterval=interval, bar_format="{l_bar}{bar}| {n:.1f}/{total} min "
                    "[{elapsed}<{remaining}{postfix}]")
    return tqdm(total=n_items, unit="item", desc="items", mininterval=interval)


def _update_bar(bar: Any, options: BuildOptions, result: PieceResult, balancer: HourBalancer,
                pieces: int, failed: int) -> None:
    if bar is None:
        return
    if options.hours is not None:
        bar.n = round(min(balancer.total / 60.0, bar.total), 2)
    else:
        bar.n += 1
    bar.set_postfix(pieces=pieces, failed=failed, refresh=False)
    bar.refresh() if bar.n >= bar.total else bar.update(0)


def _summary(out: Path, records: list[PieceRecord], failures: Counter[str], n_items: int,
             processed: int, wall: float) -> BuildSummary:
    per_genre: dict[str, dict[str, float]] = {}
    for r in records:
        g = per_genre.setdefault(r.genre, {"pieces": 0, "heldout_pieces": 0, "hours": 0.0,
                                           "slices": 0, "heldout_slices": 0})
        g["pieces"] += 1
        g["hours"] += r.seconds / 3600.0
        g["slices"] += len(r.slices)
        if r.split == HELDOUT:
            g["heldout_pieces"] += 1
            g["heldout_slices"] += len(r.slices)
    for g in per_genre.values():
        g["hours"] = round(g["hours"], 4)
    return BuildSummary(
        out_dir=out,
        pieces=len(records),
        seconds=round(sum(r.seconds for r in records), 4),
        slices=sum(len(r.slices) for r in records),
        per_genre=dict(sorted(per_genre.items())),
        failures=dict(sorted(failures.items())),
        items_total=n_items,
        items_processed=processed,
        wall_seconds=round(wall, 2),
        records=tuple(records),
    )


def _write_build_json(out: Path, summary: BuildSummary, options: BuildOptions,
                      examples: dict[str, list[str]], cpu: dict[str, Counter[str]],
                      cpu_total: float) -> None:
    data = {
        "pieces": summary.pieces,
        "hours": round(summary.hours, 4),
        "slices": summary.slices,
        "heldout_pieces": sum(1 for r in summary.records if r.split == HELDOUT),
        "per_genre": summary.per_genre,
        "failures": summary.failures,
        "failed_items": sum(summary.failures.values()),
        "failure_examples": dict(sorted(examples.items())),
        "cpu_seconds_total": round(cpu_total, 1),
        "cpu_seconds_per_stage": {
            g: {k: round(v, 1) for k, v in sorted(c.items())} for g, c in sorted(cpu.items())
        },
        "items_total": summary.items_total,
        "items_processed": summary.items_processed,
        "wall_seconds": summary.wall_seconds,
        "seed": options.seed,
        "settings": options.settings(),
        "collections": {
            name: COLLECTIONS[name].genre
            for name in sorted({r.collection for r in summary.records})
            if name in COLLECTIONS
        },
        "mel_config": MEL_CONFIG_FILE,
    }
    (out / BUILD_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
