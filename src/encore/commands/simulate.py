"""``encore simulate``: the simulated pilot (docs/pilot.md).

Starts a real ``encore serve`` in a work folder, lets simulated listeners with hidden
tastes use it over HTTP for ``--rounds + 1`` rounds (v0; v0+v1; v0+v1+v2 …), does the
operator's steps between rounds, and prints the report's Table 1, the change per iteration
with 95 % intervals, the ratings used, the adversaries detected and where the plots are.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from encore.commands import options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulated pilot: listeners with hidden tastes drive the platform",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--population", default=None,
                        help="population TOML file, or a shipped name (tiny, default, second, "
                             "opposed: src/encore/sim/populations/); "
                             "default: the configuration's")
    parser.add_argument("--rounds", type=int, default=2, help="fine-tuning iterations (default 2)")
    options.add_seed(parser)
    parser.add_argument("--config", choices=("tiny", "full"), default="full",
                        help="scale: tiny (CI, minutes) or full (the documented pilot)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the server's data and the report (default: a temp folder)")
    options.add_corpus(parser, required=False,
                       help="corpus folder for seed songs and replay (full config; default "
                            "ENCORE_CORPUS_DIR)")
    parser.add_argument("--listeners", type=int, default=None, metavar="N",
                        help="override the population's number of listeners")
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help="override the population's requests per listener and round")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra ENCORE_* setting for the pilot's server (repeatable), "
                             "e.g. --set ENCORE_INFERENCE_STEPS=25")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from encore.config import get_settings
    from encore.errors import InvalidInput
    from encore.sim.config import pilot_config
    from encore.sim.pilot import format_summary, run_pilot
    from encore.sim.population import load_population

    corpus = args.corpus
    if args.config == "full" and corpus is None:
        corpus = get_settings().corpus_dir
    cfg = pilot_config(args.config, corpus_dir=Path(corpus) if corpus else None)
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("ENCORE_"):
            raise InvalidInput(f"--set {item!r} must look like ENCORE_NAME=value")
        extra[key] = value
    cfg = cfg.with_settings(**extra)
    population = load_population(args.population or cfg.population)
    for name, value in (("listeners", args.listeners), ("requests_per_round", args.requests)):
        if value is not None:
            if value < 1:
                raise InvalidInput(f"--{name.split('_')[0]} {value} must be at least 1")
            population = dataclasses.replace(population, **{name: value})
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"encore-pilot-{cfg.name}-"))
    if (workdir / "server" / "encore.db").exists():
        raise InvalidInput(f"work folder {workdir} already holds a pilot; choose an empty one")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def log(line: str) -> None:
        print(line, flush=True)  # noqa: T201

    result = run_pilot(population, cfg, rounds=args.rounds, seed=args.seed, workdir=workdir, log=log)
    print()  # noqa: T201
    print(format_summary(result))  # noqa: T201
    print(f"\nwork folder: {workdir} (summary.json, report/)")  # noqa: T201
    return 0
