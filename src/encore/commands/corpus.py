"""``encore corpus …``: build the training corpus from the scores music21 ships."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from encore.commands import command_group, options


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "corpus", help="build and inspect the training corpus")

    from encore.corpus.collections import COLLECTIONS

    build = group.add_parser(
        "build",
        help="render music21's scores to audio, mel spectrograms and a manifest",
        description=(
            "Parse scores of the corpus that music21 ships, convert them to MIDI, render them "
            "with the General-MIDI soundfont of pretty_midi (tinysoundfont, offline) with "
            "per-genre instruments, tempo and transposition drawn from the seed, and write "
            "DIR/audio/*.flac, DIR/mel/*.npy, DIR/mel_config.json, DIR/manifest.jsonl and "
            "DIR/build.json. Pieces that fail are skipped and counted by reason. Same seed "
            "and collections give the same manifest."
        ),
    )
    options.add_out(build, help="corpus folder DIR")
    build.add_argument("--hours", type=float, default=10.0,
                       help="cap on the total audio, balanced across genres (default 10; 0 = no cap)")
    options.add_seed(build, help="seed (order, variations, split)")
    build.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 0 = in-process)")
    build.add_argument("--collections", nargs="+", metavar="NAME", choices=sorted(COLLECTIONS),
                       default=None, help=f"collections (default all: {', '.join(COLLECTIONS)})")
    build.add_argument("--max-piece-seconds", type=float, default=120.0,
                       help="cap on one piece's audio (default 120)")
    build.add_argument("--timeout", type=float, default=30.0,
                       help="time limit per piece in seconds (default 30)")
    build.add_argument("--heldout", type=float, default=0.1,
                       help="share of each collection held out, by source file (default 0.1)")
    build.add_argument("--max-items-per-collection", type=int, default=None,
                       help="use only this many (seeded) items per collection (quick builds)")
    build.add_argument("--overwrite", action="store_true", help="replace a corpus already in DIR")
    build.add_argument("--ready", action="store_true", help="write DIR/READY when the build completes")
    options.add_no_progress(build, help="no progress bar")
    build.set_defaults(handler=run_build)

    info = group.add_parser("info", help="print a corpus folder's build figures")
    info.add_argument("dir", type=Path, help="corpus folder")
    info.set_defaults(handler=run_info)

    from encore.corpus.pack import LEVELS

    pack = group.add_parser(
        "pack",
        help="the corpus's spectrograms, manifest and settings in one compact checked file",
        description=(
            "Write the mel spectrograms of a corpus folder (quantised to uint8 and compressed "
            "with xz), its manifest (pieces, genres, splits, slices), mel_config.json and "
            "build.json into one file with a SHA-256 checksum: what training and evaluation "
            "need on a host that cannot build the corpus. The audio is left out."
        ),
    )
    options.add_corpus(pack, help="corpus folder")
    options.add_out(pack, help="pack file to write")
    pack.add_argument("--levels", type=int, default=LEVELS,
                      help=f"quantisation steps over the 100 dB range (2-255; default {LEVELS}: "
                           f"a step of {100 / LEVELS:.2f} dB)")
    pack.add_argument("--overwrite", action="store_true", help="replace an existing pack file")
    pack.set_defaults(handler=run_pack)

    unpack = group.add_parser(
        "unpack",
        help="check a corpus pack and write its corpus folder",
        description=(
            "Verify the pack's checksum, then write a corpus folder (mel/*.npy float16, "
            "manifest.jsonl, mel_config.json, build.json, pack.json, READY) that `encore train "
            "base` and `encore eval` read. A corrupted or truncated pack is refused before "
            "anything is written."
        ),
    )
    unpack.add_argument("pack", type=Path, help="pack file")
    options.add_out(unpack, help="corpus folder to create (new or empty)")
    unpack.set_defaults(handler=run_unpack)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that the build stops its worker pool on the way out."""
    import signal

    def _handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)


def run_build(args: argparse.Namespace) -> int:
    from encore.corpus.builder import BuildOptions, build_corpus
    from encore.corpus.manifest import READY_FILE

    build_options = BuildOptions(
        hours=args.hours if args.hours and args.hours > 0 else None,
        seed=args.seed,
        workers=args.workers,
        collections=tuple(args.collections) if args.collections else None,
        max_piece_seconds=args.max_piece_seconds,
        timeout_seconds=args.timeout,
        heldout_fraction=args.heldout,
        max_items_per_collection=args.max_items_per_collection,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    _exit_on_sigterm()
    summary = build_corpus(args.out, build_options)
    print(_figures(json.loads((args.out / "build.json").read_text())))  # noqa: T201
    if args.ready:
        (args.out / READY_FILE).write_text(f"{summary.pieces} pieces, {summary.hours:.2f} h\n")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from encore.corpus.manifest import load_build_summary

    print(_figures(load_build_summary(args.dir)))  # noqa: T201
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from encore.corpus.pack import pack_corpus

    summary = pack_corpus(args.corpus, args.out, levels=args.levels, overwrite=args.overwrite)
    print(  # noqa: T201
        f"packed {summary.pieces} pieces ({summary.frames} frames) from {args.corpus} into "
        f"{summary.path}: {summary.packed_bytes / 1e6:.1f} MB (mel files {summary.raw_bytes / 1e6:.1f} MB, "
        f"quantised {summary.quantised_bytes / 1e6:.1f} MB) in {summary.seconds:.1f} s\n"
        f"sha256 {summary.sha256}"
    )
    return 0


def run_unpack(args: argparse.Namespace) -> int:
    from encore.corpus.pack import unpack_corpus

    summary = unpack_corpus(args.pack, args.out)
    print(  # noqa: T201
        f"unpacked {summary.pieces} pieces ({summary.frames} frames) from {args.pack} "
        f"(sha256 {summary.sha256} verified) into {summary.path} in {summary.seconds:.1f} s"
    )
    return 0


def _figures(build: dict) -> str:
    lines = [
        f"{build['pieces']} pieces, {build['hours']:.2f} h of audio, {build['slices']} slices "
        f"({build['heldout_pieces']} pieces held out) in {build['wall_seconds'] / 60:.1f} min "
        f"(seed {build['seed']}, {build['items_processed']} of {build['items_total']} items "
        f"processed)"
    ]
    if "cpu_seconds_total" in build:
        lines.append(f"  CPU time {build['cpu_seconds_total'] / 60:.1f} min (all processes)")
    for genre, g in build["per_genre"].items():
        lines.append(
            f"  {genre:<14} {int(g['pieces']):5d} pieces ({int(g['heldout_pieces'])} held out) "
            f"{g['hours']:6.2f} h {int(g['slices']):6d} slices"
        )
    failed = build.get("failed_items", sum(build["failures"].values()))
    lines.append(f"  failures: {failed}" + "".join(
        f"\n    {reason}: {n}" for reason, n in build["failures"].items()))
    return "\n".join(lines)
