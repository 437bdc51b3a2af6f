"""The report's "Rating distributions" plot draws what its axis says, the share of ratings
(issue 19: three ratings drew bars of 0.67, a density)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from encore.services.report import RATING_BINS, plot_rating_distributions


def _heights(ax) -> dict[str, np.ndarray]:
    """Bar heights of each bar series, by its label (which matplotlib puts on its first bar)."""
    return {c.patches[0].get_label(): np.array([p.get_height() for p in c.patches])
            for c in ax.containers}


def test_bars_are_shares_that_sum_to_one() -> None:
    fig, ax = plt.subplots()
    try:
        plot_rating_distributions(ax, {"v0 fresh": [3.0, 3.5, 4.0], "v1 fresh": [4.5] * 5,
                                       "v2 fresh": []}, [2.0, 2.0, 5.0, 1.0])
        bars = _heights(ax)
        assert set(bars) == {"v0 fresh (n=3)", "v1 fresh (n=5)"}  # no bars for no ratings
        assert bars["v0 fresh (n=3)"].sum() == pytest.approx(1.0)
        assert bars["v0 fresh (n=3)"].max() == pytest.approx(1 / 3)  # a density drew 0.67
        assert bars["v1 fresh (n=5)"].max() == pytest.approx(1.0)
        # the baselines' outline: its top edge is at the shares too
        handles, labels = ax.get_legend_handles_labels()
        outline = [h for h, label in zip(handles, labels, strict=True)
                   if label == "dataset baselines (n=4)"]
        assert len(outline) == 1
        assert outline[0].get_path().vertices[:, 1].max() == pytest.approx(0.5)
        assert ax.get_ylabel() == "share of ratings"
        assert len(bars["v0 fresh (n=3)"]) == len(RATING_BINS) - 1
    finally:
        plt.close(fig)
