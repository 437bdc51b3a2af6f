"""Genre retrieval on held-out pieces: precision@5, MRR and nDCG@10, with baselines.

Each held-out piece's representation queries all the other held-out pieces; a result is
relevant when it has the query's genre. The same run measures:

- ``mean-mel``: the mean over time of the piece's dB mel spectrogram (clipped at
  ``-top_db``), cosine similarity (the raw-feature baseline);
- ``histogram``: the Bhattacharyya coefficient of the code histograms (the VQ-VAE without
  the metric head);
- ``metric head``: ``(1 + cos)/2`` of the metric embeddings alone;
- ``S``: the model's similarity (embedding and histogram combined).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from encore.errors import InvalidInput
from encore.similarity.data import Corpus, piece_images
from encore.similarity.model import SimilarityModel
from encore.similarity.representation import Representation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalScores:
    """Mean retrieval figures of one method over all queries."""

    method: str
    precision_at_5: float
    mrr: float
    ndcg_at_10: float


@dataclass(frozen=True)
class EvalReport:
    """Result of :func:`evaluate_retrieval`."""

    rows: tuple[RetrievalScores, ...]
    n_pieces: int
    genres: tuple[str, ...]
    pieces_per_genre: tuple[int, ...]
    split: str

    def table(self) -> str:
        """A Markdown table of the rows."""
        lines = ["| method | P@5 | MRR | nDCG@10 |", "|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.method} | {r.precision_at_5:.3f} | {r.mrr:.3f} | {r.ndcg_at_10:.3f} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def retrieval_scores(similarities: np.ndarray, labels: np.ndarray, method: str = "") -> RetrievalScores:
    """Leave-one-out retrieval figures from a similarity matrix.

    Parameters
    ----------
    similarities : np.ndarray
        ``(n, n)``; row ``i`` scores every item against query ``i`` (the diagonal is ignored).
    labels : np.ndarray
        ``(n,)`` class labels; an item is relevant to a query of the same label.
    method : str
        Name for the result row.

    Returns
    -------
    RetrievalScores
        Means over queries of precision@5, reciprocal rank of the first relevant item (0
        if none) and nDCG@10 with binary gains (ideal DCG from the query's number of
        relevant items). Ties are broken by item order.
    """
    s = np.asarray(similarities, dtype=np.float64)
    y = np.asarray(labels)
    n = y.size
    if s.shape != (n, n) or n < 2:
        raise InvalidInput(f"need an (n, n) similarity matrix with n ≥ 2, got {s.shape} for {n} labels")
    p5, rr, ndcg = [], [], []
    discounts = 1.0 / np.log2(np.arange(2, 12))
    for i in range(n):
        others = np.delete(np.arange(n), i)
        order = others[np.argsort(-s[i, others], kind="stable")]
        rel = (y[order] == y[i]).astype(np.float64)
        p5.append(rel[:5].mean() if rel.size >= 5 else rel.sum() / 5.0)
        hits = np.flatnonzero(rel)
        rr.append(1.0 / (hits[0] + 1) if hits.size else 0.0)
        dcg = float((rel[:10] * discounts[: min(10, rel.size)]).sum())
        ideal = float(discounts[: int(min(10, rel.sum()))].sum())
        ndcg.append(dcg / ideal if ideal > 0 else 0.0)
    return RetrievalScores(method, float(np.mean(p5)), float(np.mean(rr)), float(np.mean(ndcg)))


def _cosine_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def evaluate_retrieval(
    model: SimilarityModel,
    corpus: Corpus,
    *,
    split: str = "heldout",
    plot_path: str | Path | None = None,
    max_slices: int | None = None,
) -> tuple[EvalReport, list[Representation]]:
    """Genre retrieval among the pieces of ``split`` for the model and the baselines.

    Parameters
    ----------
    model : SimilarityModel
    corpus : Corpus
    split : str
        Manifest split to evaluate (the model must not have trained on it).
    plot_path : path, optional
        Where to write a 2-D t-SNE projection (PNG) of the pieces' metric embeddings,
        coloured by genre.
    max_slices : int, optional
        Use at most this many (evenly spaced) slices per piece.

    Returns
    -------
    report : EvalReport
    representations : list of Representation
        One per piece of the split, in manifest order.
    """
    pieces = corpus.split(split)
    if len(pieces) < 2:
        raise InvalidInput(f"corpus {corpus.root} has {len(pieces)} pieces in split {split!r}; need ≥ 2")
    width = model.config.image_width
    reps, mean_mel, labels = [], [], []
    top_db = corpus.mel_config.top_db
    for piece in pieces:
        reps.append(model.represent(piece_images(corpus, piece, width, max_slices)))
        mel = np.asarray(corpus.mel(piece), dtype=np.float32)
        mean_mel.append(np.maximum(mel, -top_db).mean(axis=1))
        labels.append(corpus.genre_index(piece.genre))
    y = np.asarray(labels)
    hist = np.stack([r.histogram for r in reps]).astype(np.float64)
    emb = np.stack([r.embedding for r in reps]).astype(np.float64)
    search = np.stack([r.search_vector() for r in reps]).astype(np.float64)
    rows = (
        retrieval_scores(_cosine_matrix(np.stack(mean_mel)), y, "mean-mel, cosine (baseline)"),
        retrieval_scores(np.sqrt(hist) @ np.sqrt(hist).T, y, "code histogram, Bhattacharyya (baseline)"),
        retrieval_scores((1 + emb @ emb.T) / 2, y, "metric head alone, (1+cos)/2"),
        retrieval_scores(model.config.alpha / 2 + search @ search.T, y,
                         f"S (alpha={model.config.alpha:g}: metric head + histogram)"),
    )
    present = sorted(set(labels))
    report = EvalReport(
        rows=rows,
        n_pieces=len(pieces),
        genres=tuple(corpus.genres[g] for g in present),
        pieces_per_genre=tuple(int((y == g).sum()) for g in present),
        split=split,
    )
    if plot_path is not None:
        plot_embeddings(emb, [corpus.genres[g] for g in y], plot_path)
    return report, reps


def plot_embeddings(embeddings: np.ndarray, genres: list[str], path: str | Path,
                    title: str = "held-out pieces: metric embeddings (t-SNE)") -> Path:
    """Write a 2-D t-SNE scatter of ``embeddings`` ``(n, E)`` coloured by ``genres`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float64)
    if x.shape[0] >= 5:
        xy = TSNE(n_components=2, perplexity=min(30.0, (x.shape[0] - 1) / 3), init="pca",
                  random_state=0).fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2).fit_transform(x)
    names = sorted(set(genres))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
    for i, name in enumerate(names):
        sel = np.array([g == name for g in genres])
        ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(i % cmap.N), label=name, alpha=0.85)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
