"""``encore similarity …``: evaluate the similarity model, compare audio files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from encore.commands import command_group, options
from encore.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "similarity", help="evaluate the similarity model, compare songs")

    ev = group.add_parser(
        "eval",
        help="genre retrieval on held-out pieces (P@5, MRR, nDCG@10) with baselines",
        description=(
            "Each held-out piece's representation queries the other held-out pieces; a result "
            "is relevant when it has the same genre. Prints P@5, MRR and nDCG@10 for the model's "
            "S, the metric head alone, and two baselines measured in the same run (mean-mel "
            "features with cosine; code histograms with the Bhattacharyya coefficient)."
        ),
    )
    options.add_model(ev, help="model folder (default: the configured one)")
    options.add_corpus(ev, help="corpus folder")
    ev.add_argument("--split", default="heldout", help="manifest split to evaluate (default heldout)")
    ev.add_argument("--max-slices", type=int, default=None, help="at most this many slices per piece")
    ev.add_argument("--plot", type=Path, default=None, help="write the 2-D t-SNE plot here (PNG)")
    ev.add_argument("--json", type=Path, default=None, help="write the figures here (JSON)")
    ev.add_argument("--card", action="store_true",
                    help="write eval.json, the plot and MODEL_CARD.md into the model folder")
    options.add_threads(ev, default=1, help="torch threads (default 1)")
    ev.set_defaults(handler=run_eval)

    cmp_ = group.add_parser("compare", help="print S between audio files (and of the whole set)")
    cmp_.add_argument("files", nargs="+", type=Path, help="audio files")
    options.add_model(cmp_, help="model folder (default: the configured one)")
    cmp_.set_defaults(handler=run_compare)


def _load_model(path: Path | None):
    from encore.similarity.model import SimilarityModel

    return SimilarityModel.load(path) if path is not None else SimilarityModel.default()


def run_eval(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.similarity.card import write_model_card
    from encore.similarity.data import load_corpus
    from encore.similarity.evaluate import evaluate_retrieval

    options.set_threads(args.threads)
    options.corpus_folder(args.corpus)
    model = _load_model(args.model)
    model_dir = args.model or get_settings().similarity_model_dir
    plot = args.plot
    if args.card and plot is None:
        plot = Path(model_dir) / "heldout_embeddings.png"
    corpus = load_corpus(args.corpus)
    missing = set(corpus.genres) - set(model.config.genres)
    if model.config.genres and missing:
        raise InvalidInput(f"corpus genres {sorted(missing)} are unknown to the model")
    report, _ = evaluate_retrieval(model, corpus, split=args.split, plot_path=plot,
                                   max_slices=args.max_slices)
    print(f"genre retrieval on {report.n_pieces} '{report.split}' pieces, "  # noqa: T201
          f"{len(report.genres)} genres ({', '.join(f'{g}: {n}' for g, n in zip(report.genres, report.pieces_per_genre, strict=True))})")
    print(report.table())  # noqa: T201
    if plot is not None:
        print(f"plot: {plot}")  # noqa: T201
    payload = {**report.to_dict(), "corpus": str(args.corpus), "model": str(model_dir)}
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    if args.card:
        (Path(model_dir) / "eval.json").write_text(json.dumps(payload, indent=2) + "\n")
        card = write_model_card(Path(model_dir))
        print(f"model card: {card}")  # noqa: T201
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from encore.audio.decode import load_audio

    model = _load_model(args.model)
    reps = []
    for path in args.files:
        sr = model.mel_config.sample_rate
        reps.append(model.represent_audio(load_audio(path, sr=sr), sr))
    names = [p.name for p in args.files]
    width = max(len(n) for n in names)
    print(" " * width + "  " + "  ".join(f"{i:>6d}" for i in range(len(names))))  # noqa: T201
    for i, (name, a) in enumerate(zip(names, reps, strict=True)):
        row = "  ".join(f"{model.similarity(a, b):6.3f}" for b in reps)
        print(f"{name:>{width}}  {row}   [{i}]")  # noqa: T201
    if len(reps) > 1:
        whole = model.represent_set(reps)
        sims = ", ".join(f"{model.similarity(whole, r):.3f}" for r in reps)
        print(f"S(set of all, each): {sims}")  # noqa: T201
    return 0
