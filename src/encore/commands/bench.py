"""``encore bench <what>``: benchmarks that print their figures.

A tiny dispatcher: each area adds one line to :data:`BENCHMARKS` mapping a name to
``"module:function"``; the function takes the parsed ``args`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from encore.commands import options

BENCHMARKS: dict[str, str] = {
    "similarity": "encore.similarity.bench:run_bench",
    "vocoder": "encore.audio.bench:run_bench",
    "generate": "encore.diffusion.bench:run_bench",
    "finetune": "encore.diffusion.finetune_bench:run_bench",
    "web": "encore.web.bench:run_bench",
    "media": "encore.web.media_bench:run_bench",
    "blend": "encore.diffusion.blend_bench:run_bench",
    "piece": "encore.diffusion.piece_bench:run_bench",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark and print its figures")
    parser.add_argument("what", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (vocoder); piece length (piece, default 24)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (vocoder)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda (vocoder, generate)")
    parser.add_argument("--n-iter", type=int, default=None, help="Griffin-Lim iterations (vocoder)")
    options.add_threads(parser, default=1, help="CPU threads for both vocoders, 0 = default")
    options.add_model(parser, help="model folder (generate)")
    parser.add_argument("--steps", type=int, default=None,
                        help="solver steps of the chosen setting (generate; default: settings)")
    options.add_sampler(parser, default=None,
                        help="the chosen setting's solver (generate; default: settings)")
    parser.add_argument("--merge-steps", type=int, default=None,
                        help="DDIM steps of the chosen setting's merges (generate)")
    parser.add_argument("--workers", action="store_true",
                        help="also time one 2-thread process against two 1-thread ones (generate)")
    parser.add_argument("--legacy", action="store_true",
                        help="also our DDIM loop against diffusers' and by precision (generate)")
    parser.add_argument("--method", choices=("paper", "dpo", "kto", "all"), default=None,
                        help="fine-tuning method(s) to time (finetune; default paper)")
    parser.add_argument("--conditioned", action="store_true",
                        help="finetune --method dpo: a taste-conditioned run on two hidden listeners with "
                             "opposite tastes, each a taste group; prints what each group's label does")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (web)")
    parser.add_argument("--heartbeats", type=int, default=None, metavar="N",
                        help="listening heartbeats per client and phase (web; default 60, 20 with --quick)")
    parser.add_argument("--web-workers", type=int, default=1, metavar="N",
                        help="uvicorn processes of the server under test (web)")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="an empty PostgreSQL database for the server under test (web)")
    parser.add_argument("--queue-url", default=None, metavar="URL",
                        help="e.g. redis://127.0.0.1:6379/13 for the server under test (web)")
    parser.add_argument("--size-mb", type=float, default=None,
                        help="size of the song served from S3 (media; default 100)")
    parser.add_argument("--ranges", type=int, default=None,
                        help="1 MB range requests at random offsets (media; default 40)")
    options.add_corpus(parser, required=False,
                       help="blend the held-out pieces of this corpus folder (blend)")
    parser.add_argument("--songs", type=Path, default=None,
                        help="blend the audio files of this folder (blend); make pieces of them (piece)")
    parser.add_argument("--n", type=int, default=None,
                        help="blends of two songs (blend; default 20, 8 with --quick); pieces whose seams are measured (piece; default 20, 6 with --quick)")
    parser.add_argument("--strength", type=float, default=None,
                        help="strength of the blends and of the reference variations "
                             "(blend; default: settings)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="merge methods to measure: slerp, mix, mix-inverted (blend; default all)")
    parser.add_argument("--weights", type=float, nargs=2, default=None, metavar="W",
                        help="the two inputs' weights (blend; default equal)")
    options.add_seed(parser, help="draw of the songs and seeds (blend)")
    parser.add_argument("--verbose", action="store_true", help="progress lines (blend)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    module_name, func_name = BENCHMARKS[args.what].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args) or 0)
