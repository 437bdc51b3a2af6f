"""``encore taste fit | eval | listeners``: the listeners' taste model of this installation.

``fit`` fits a snapshot on every counted rating and stores it (the generation workers serve
with the newest); ``eval`` fits on the earlier ratings and scores the later ones, against
three baselines measured in the same run; ``listeners`` prints each listener's predicted
against given ratings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from encore.commands import options
from encore.commands._context import service_context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("taste", help="fit or evaluate the listeners' taste model")
    sub = parser.add_subparsers(dest="taste_command", metavar="ACTION", required=True)
    fit = sub.add_parser("fit", help="fit a snapshot on every counted rating and store it")
    fit.set_defaults(handler=run_fit)
    ev = sub.add_parser("eval", help="held-out evaluation (time-ordered split) with baselines")
    ev.add_argument("--test-share", type=float, default=0.2,
                    help="share of the latest ratings held out (default 0.2)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(handler=run_eval)
    ls = sub.add_parser("listeners", help="per-listener predicted vs given (latest snapshot)")
    ls.set_defaults(handler=run_listeners)
    bn = sub.add_parser("bench", help="time a fit on N synthetic ratings (random features)")
    bn.add_argument("--ratings", type=int, default=10_000)
    bn.add_argument("--listeners", type=int, default=100)
    bn.set_defaults(handler=run_bench)
    st = sub.add_parser("study", help="offline study against simulated listeners (corpus "
                        "excerpts as candidates; no server)")
    options.add_corpus(st, help="a corpus built by encore corpus")
    st.add_argument("--population", default="default", help="a shipped population or a path")
    options.add_seed(st)
    st.add_argument("--songs", type=int, default=40, help="seed songs drawn from the corpus")
    st.add_argument("--json", type=Path, help="also write the figures here")
    st.set_defaults(handler=run_study)


def format_evaluation(result: dict[str, Any]) -> str:
    """The evaluation as a table (also used by the pilot)."""
    lines = [
        f"taste model, held out: {result['n_test']} later ratings "
        f"(fitted on {result['n_train']} earlier ones, {result['n_listeners']} listeners)",
        f"{'method':<28} {'pairwise acc.':>13} {'pairs':>7} {'Spearman':>9} {'per-listener':>13}",
    ]
    for s in result["scores"]:
        lines.append(
            f"{s['method']:<28} {s['pairwise_accuracy']:>13.3f} {s['n_pairs']:>7d} "
            f"{s['spearman']:>9.3f} {s['listener_spearman']:>13.3f}"
        )
    return "\n".join(lines)


def run_fit(args: argparse.Namespace) -> int:
    from encore.services import taste

    ctx = service_context(queues=False)
    row = taste.fit_snapshot(ctx, reason="manual")
    print(f"taste model {row.id}: {row.n_ratings} ratings, {row.n_listeners} listeners")  # noqa: T201
    if row.metrics.get("scores"):
        print(format_evaluation(row.metrics))  # noqa: T201
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from encore import taste as pure
    from encore.services import taste

    ctx = service_context(queues=False)
    with ctx.reading() as session:
        data = taste.taste_data(session)
    result = pure.evaluate(data.ratings, data.clips, data.profiles,
                           test_share=args.test_share).as_dict()
    print(json.dumps(result, indent=2) if args.json else format_evaluation(result))  # noqa: T201
    return 0


def run_study(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.sim.population import load_population
    from encore.sim.taste_study import format_study
    from encore.sim.taste_study import run_study as study

    population = load_population(args.population)
    result = study(population, args.corpus, get_settings().similarity_model_dir, seed=args.seed,
                   n_songs=args.songs)
    print(format_study(result))  # noqa: T201
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from encore import taste as pure
    from encore.errors import InvalidInput
    from encore.taste.features import N_DESCRIPTORS

    if args.ratings < 10 or args.listeners < 1:
        raise InvalidInput("--ratings must be >= 10 and --listeners >= 1")
    rng = np.random.default_rng(0)
    clips = {i: pure.ClipFeatures(rng.normal(size=N_DESCRIPTORS), rng.normal(size=64))
             for i in range(args.ratings)}
    profiles = {u: pure.ListenerProfile(rng.normal(size=N_DESCRIPTORS), rng.normal(size=64))
                for u in range(args.listeners)}
    ratings = pure.TasteRatings(rng.integers(0, args.listeners, args.ratings),
                                np.arange(args.ratings), rng.integers(2, 11, args.ratings) / 2,
                                rng.uniform(0, 1, args.ratings))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        pure.TasteModel.fit(ratings, clips, profiles)
        times.append(time.perf_counter() - t0)
    print(f"taste model fit on {args.ratings} ratings of {args.listeners} listeners: "  # noqa: T201
          f"best {min(times):.2f} s, median {sorted(times)[1]:.2f} s (3 runs)")
    return 0


def run_listeners(args: argparse.Namespace) -> int:
    from encore.services import taste

    ctx = service_context(queues=False)
    row, fits = taste.listener_fits(ctx)
    if row is None:
        print("no taste model yet: run `encore taste fit`")  # noqa: T201
        return 0
    print(f"taste model {row.id} ({row.reason}, {row.n_ratings} ratings); in-sample figures")  # noqa: T201
    print(f"{'rater':<14} {'ratings':>7} {'given':>6} {'predicted':>9} {'pairwise':>8}")  # noqa: T201
    for f in fits:
        flag = "  flagged" if f.flagged else ""
        print(f"{f.rater_id:<14} {f.n_ratings:>7d} {f.mean_given:>6.2f} "  # noqa: T201
              f"{f.mean_predicted:>9.2f} {f.pairwise_accuracy:>8.3f}{flag}")
    return 0
