"""Retrieval metrics, the eval command and the import boundary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from encore import cli
from encore.similarity.evaluate import best_precision_at_5, retrieval_scores
from encore.similarity.training import TrainOptions, train_similarity

from ..boundaries import loaded_by_import
from .similarity_helpers import TINY


def test_perfect_ranking_scores_one() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    sims = (labels[:, None] == labels[None, :]).astype(float)
    r = retrieval_scores(sims, labels)
    assert (r.mrr, r.ndcg_at_10) == (1.0, 1.0)
    # Only 2 relevant items exist per query: P@5 is at most 2/5.
    assert r.precision_at_5 == pytest.approx(2 / 5)


def test_retrieval_figures_by_hand() -> None:
    # Query 0 (label 0) ranks 2 (label 1) above 1 (label 0): RR 1/2, nDCG 1/log2(3), P@5 1/5.
    # Query 1 (label 0) ranks 0 first: RR 1, nDCG 1, P@5 1/5. Query 2 (label 1) has no relevant item.
    sims = np.array([[0, 0.8, 0.9], [0.8, 0, 0.1], [0.9, 0.1, 0]])
    r = retrieval_scores(sims, np.array([0, 0, 1]))
    assert r.mrr == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert r.ndcg_at_10 == pytest.approx((1 / np.log2(3) + 1 + 0) / 3)
    assert r.precision_at_5 == pytest.approx((1 / 5 + 1 / 5 + 0) / 3)


def test_eval_command_prints_the_table_with_baselines(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    opts = TrainOptions(batch_size=8, max_steps=10, head_steps=20, head_batch=16, progress=False)
    train_similarity(tiny_corpus, tmp_path / "m", TINY, opts)
    plot, out = tmp_path / "plot.png", tmp_path / "eval.json"
    code = cli.main(["similarity", "eval", "--model", str(tmp_path / "m"), "--corpus", str(tiny_corpus),
                     "--split", "train", "--plot", str(plot), "--json", str(out), "--card"])
    assert code == 0
    printed = capsys.readouterr().out
    for method in ("mean-mel", "histogram", "metric head alone", "S (alpha=0.7"):
        assert method in printed
    figures = json.loads(out.read_text())
    assert len(figures["rows"]) == 4 and figures["n_pieces"] == 6
    assert all(0 <= row["mrr"] <= 1 for row in figures["rows"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "| method | P@5 | MRR | nDCG@10 |" in card and "codebook usage" in card


def test_similarity_package_does_not_import_web_database_or_queue() -> None:
    modules = ["encore.similarity", "encore.similarity.model", "encore.similarity.training",
               "encore.similarity.evaluate", "encore.similarity.index", "encore.similarity.card"]
    assert loaded_by_import(modules, ("sqlalchemy", "fastapi", "huey", "starlette"), timeout=180) == []


def test_gallery_retrieval_skips_the_query_itself_and_scores_by_hand() -> None:
    # Two queries (labels 0, 1) searched in a gallery of four items; query 0 is item 0.
    gallery = np.array([0, 1, 0, 1])
    sims = np.array([[9.0, 0.7, 0.5, 0.1],   # item 0 is the query: skipped; 1 (wrong), 2 (right)
                     [0.2, 0.1, 0.9, 0.8]])  # not in the gallery: 2 (wrong), 3 (right), 0, 1 (right)
    r = retrieval_scores(sims, np.array([0, 1]), gallery_labels=gallery, query_index=np.array([0, -1]))
    assert r.mrr == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert r.precision_at_5 == pytest.approx((1 / 5 + 2 / 5) / 2)
    ndcg_0 = (1 / np.log2(3)) / 1.0
    ndcg_1 = (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    assert r.ndcg_at_10 == pytest.approx((ndcg_0 + ndcg_1) / 2)


def test_best_attainable_precision_counts_the_other_items_of_each_class() -> None:
    # A class of 3 has 2 others (2/5); a class of 7 has 6 others (capped at 5/5).
    labels = np.array([0] * 3 + [1] * 7)
    assert best_precision_at_5(labels) == pytest.approx((3 * 2 / 5 + 7 * 1.0) / 10)
    perfect = retrieval_scores((labels[:, None] == labels[None, :]).astype(float), labels)
    assert perfect.precision_at_5 == pytest.approx(best_precision_at_5(labels))


def test_eval_searches_the_catalogue_with_held_out_queries(tiny_corpus: Path, tmp_path: Path) -> None:
    from encore.similarity.data import load_corpus
    from encore.similarity.evaluate import evaluate_retrieval
    from encore.similarity.model import SimilarityModel

    torch.set_num_threads(1)
    opts = TrainOptions(batch_size=8, max_steps=5, head_steps=10, head_batch=16, progress=False)
    train_similarity(tiny_corpus, tmp_path / "m", TINY, opts)
    corpus = load_corpus(tiny_corpus)
    report, _ = evaluate_retrieval(SimilarityModel.load(tmp_path / "m"), corpus, split="heldout")
    n_held, n_train = len(corpus.split("heldout")), len(corpus.split("train"))
    assert report.n_pieces == n_held and report.n_catalogue == n_held + n_train
    assert [r.method for r in report.catalogue_rows] == [r.method for r in report.rows]
    assert "against the catalogue" in report.table()
    alone, _ = evaluate_retrieval(SimilarityModel.load(tmp_path / "m"), corpus, split="heldout",
                                  catalogue_split=None)
    assert alone.catalogue_rows == () and alone.rows == report.rows
