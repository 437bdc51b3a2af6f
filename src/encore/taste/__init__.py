"""The listeners' taste model (pure: numpy, scipy; no database, web or queue).

- :mod:`encore.taste.features`: what the model reads (descriptors, embeddings, history).
- :mod:`encore.taste.model`: global + per-listener ridge model, its storage.
- :mod:`encore.taste.groups`: listeners clustered into taste groups.
- :mod:`encore.taste.evaluate`: time-ordered held-out evaluation against baselines.
- :mod:`encore.taste.selection`: best-of-n with ε-exploration and propensities.

The services (:mod:`encore.services.taste`) feed it from the database; docs/taste.md says why
it is built this way and how it measured.
"""

from __future__ import annotations

from encore.taste.evaluate import Evaluation, Scores, evaluate, pairwise_accuracy, time_split
from encore.taste.features import ClipFeatures, ListenerProfile
from encore.taste.groups import TasteGroups, fit_taste_groups
from encore.taste.model import TasteConfig, TasteModel, TasteRatings
from encore.taste.selection import Selection, select

__all__ = [
    "ClipFeatures",
    "Evaluation",
    "ListenerProfile",
    "Scores",
    "Selection",
    "TasteConfig",
    "TasteGroups",
    "TasteModel",
    "TasteRatings",
    "evaluate",
    "fit_taste_groups",
    "pairwise_accuracy",
    "select",
    "time_split",
]
