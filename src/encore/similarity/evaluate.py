"""Genre retrieval on held-out pieces: precision@5, MRR and nDCG@10, with baselines.

Two protocols, both with held-out pieces (never trained on) as queries; a result is relevant
when it has the query's genre:

- **held-out among held-out**: each held-out piece queries the other held-out pieces. With
  few held-out pieces in a genre (4 madrigals: 3 relevant items for a madrigal query) the
  best attainable P@5 is below 1; the report prints that ceiling;
- **held-out against the catalogue**: each held-out piece queries every other piece of the
  corpus (training and held-out). This is how the platform searches: a new clip or song,
  unseen by the model, against the stored dataset (d*, the baseline branch, the purge).

The same run measures, in each protocol:

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
    best_precision_at_5: float = 1.0
    catalogue_rows: tuple[RetrievalScores, ...] = ()
    n_catalogue: int = 0

    @staticmethod
    def _rows_table(rows: tuple[RetrievalScores, ...]) -> list[str]:
        lines = ["| method | P@5 | MRR | nDCG@10 |", "|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.method} | {r.precision_at_5:.3f} | {r.mrr:.3f} | {r.ndcg_at_10:.3f} |")
        return lines

    def table(self) -> str:
        """Markdown tables of both protocols."""
        lines = [
            f"held-out among held-out ({self.n_pieces} pieces; best attainable P@5 "
            f"{self.best_precision_at_5:.3f}):",
            "",
            *self._rows_table(self.rows),
        ]
        if self.catalogue_rows:
            lines += [
                "",
                f"held-out against the catalogue ({self.n_pieces} queries, {self.n_catalogue} "
                "pieces searched):",
                "",
                *self._rows_table(self.catalogue_rows),
            ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def retrieval_scores(
    similarities: np.ndarray,
    labels: np.ndarray,
    method: str = "",
    *,
    gallery_labels: np.ndarray | None = None,
    query_index: np.ndarray | None = None,
) -> RetrievalScores:
    """Retrieval figures from a similarity matrix.

    Parameters
    ----------
    similarities : np.ndarray
        ``(n, n)`` (leave-one-out: row ``i`` scores every item against query ``i``, the
        diagonal is ignored), or ``(q, g)`` when ``gallery_labels`` is given.
    labels : np.ndarray
        ``(n,)`` or ``(q,)`` class labels of the queries; an item is relevant to a query of
        the same label.
    method : str
        Name for the result row.
    gallery_labels : np.ndarray, optional
        ``(g,)`` labels of the searched items, when they are not the queries themselves.
    query_index : np.ndarray, optional
        ``(q,)`` position of each query in the gallery (that item is skipped), ``-1`` when
        the query is not in it. Default: the diagonal when there is no separate gallery.

    Returns
    -------
    RetrievalScores
        Means over queries of precision@5, reciprocal rank of the first relevant item (0
        if none) and nDCG@10 with binary gains (ideal DCG from the query's number of
        relevant items). Ties are broken by item order.
    """
    s = np.asarray(similarities, dtype=np.float64)
    y = np.asarray(labels)
    g = y if gallery_labels is None else np.asarray(gallery_labels)
    q = y.size
    if query_index is None:
        query_index = np.arange(q) if gallery_labels is None else np.full(q, -1)
    if s.shape != (q, g.size) or g.size < 2 or q < 1:
        raise InvalidInput(
            f"need a (queries, items) similarity matrix with ≥ 2 items, got {s.shape} for "
            f"{q} query labels and {g.size} item labels"
        )
    p5, rr, ndcg = [], [], []
    discounts = 1.0 / np.log2(np.arange(2, 12))
    for i in range(q):
        others = np.delete(np.arange(g.size), query_index[i]) if query_index[i] >= 0 else np.arange(g.size)
        order = others[np.argsort(-s[i, others], kind="stable")]
        rel = (g[order] == y[i]).astype(np.float64)
        p5.append(rel[:5].mean() if rel.size >= 5 else rel.sum() / 5.0)
        hits = np.flatnonzero(rel)
        rr.append(1.0 / (hits[0] + 1) if hits.size else 0.0)
        dcg = float((rel[:10] * discounts[: min(10, rel.size)]).sum())
        ideal = float(discounts[: int(min(10, rel.sum()))].sum())
        ndcg.append(dcg / ideal if ideal > 0 else 0.0)
    return RetrievalScores(method, float(np.mean(p5)), float(np.mean(rr)), float(np.mean(ndcg)))


def best_precision_at_5(labels: np.ndarray) -> float:
    """The highest attainable leave-one-out P@5: a query of a class with m items has m − 1."""
    y = np.asarray(labels)
    return float(np.mean([min(5, int((y == c).sum()) - 1) / 5.0 for c in y]))


def evaluate_retrieval(
    model: SimilarityModel,
    corpus: Corpus,
    *,
    split: str = "heldout",
    plot_path: str | Path | None = None,
    max_slices: int | None = None,
    catalogue_split: str | None = "train",
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
    catalogue_split : str, optional
        Also search, for each query, the pieces of this split together with the other
        queries (the catalogue protocol); ``None`` skips it.

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
    top_db = corpus.mel_config.top_db

    def encode(split_pieces: list) -> tuple[list[Representation], np.ndarray, np.ndarray]:
        reps, mean_mel, labels = [], [], []
        for piece in split_pieces:
            reps.append(model.represent(piece_images(corpus, piece, width, max_slices)))
            mel = np.asarray(corpus.mel(piece), dtype=np.float32)
            mean_mel.append(np.maximum(mel, -top_db).mean(axis=1))
            labels.append(corpus.genre_index(piece.genre))
        return reps, np.stack(mean_mel), np.asarray(labels)

    def methods(reps: list[Representation], mean_mel: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """(name, the vectors whose dot products are the method's similarity)."""
        mel = mean_mel.astype(np.float64)
        mel = mel / np.maximum(np.linalg.norm(mel, axis=1, keepdims=True), 1e-12)
        hist = np.stack([r.histogram for r in reps]).astype(np.float64)
        emb = np.stack([r.embedding for r in reps]).astype(np.float64)
        search = np.stack([r.search_vector() for r in reps]).astype(np.float64)
        # Monotone maps ((1 + cos)/2, α/2 + u·v) do not change rankings: dot products suffice.
        return [
            ("mean-mel, cosine (baseline)", mel),
            ("code histogram, Bhattacharyya (baseline)", np.sqrt(hist)),
            ("metric head alone, (1+cos)/2", emb),
            (f"S (alpha={model.config.alpha:g}: metric head + histogram)", search),
        ]

    reps, mean_mel, y = encode(pieces)
    query_vectors = methods(reps, mean_mel)
    rows = tuple(retrieval_scores(v @ v.T, y, name) for name, v in query_vectors)
    catalogue_rows: tuple[RetrievalScores, ...] = ()
    n_catalogue = 0
    if catalogue_split is not None and catalogue_split != split:
        other = corpus.split(catalogue_split)
        if other:
            other_reps, other_mel, other_y = encode(other)
            gallery = methods(reps + other_reps, np.concatenate([mean_mel, other_mel]))
            gallery_y = np.concatenate([y, other_y])
            n_catalogue = gallery_y.size
            catalogue_rows = tuple(
                retrieval_scores(q @ g.T, y, name, gallery_labels=gallery_y,
                                 query_index=np.arange(y.size))
                for (name, q), (_, g) in zip(query_vectors, gallery, strict=True)
            )
    labels = list(y)
    emb = query_vectors[2][1]
    present = sorted(set(labels))
    report = EvalReport(
        rows=rows,
        n_pieces=len(pieces),
        genres=tuple(corpus.genres[g] for g in present),
        pieces_per_genre=tuple(int((y == g).sum()) for g in present),
        split=split,
        best_precision_at_5=best_precision_at_5(y),
        catalogue_rows=catalogue_rows,
        n_catalogue=n_catalogue,
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
