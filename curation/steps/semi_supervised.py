"""What the models that also learn from unlabeled rows share: how such a row is marked, and
which of them a model keeps.
"""

from __future__ import annotations

import numpy as np

#: The label of an unlabeled row in a semi-supervised model's ``fit(X, y)`` (scikit-learn's
#: convention).
UNLABELED = -1


def unlabeled_sample(rows: np.ndarray, cap: int, seed: int | None) -> np.ndarray:
    """At most ``cap`` of ``rows``, a seeded uniform sample kept in order: the unlabeled rows
    a model of :data:`curation.steps.model.SEMI_SUPERVISED` learns from (it draws them so itself).

    Examples
    --------
    >>> unlabeled_sample(np.arange(3), 5, 0).tolist(), len(unlabeled_sample(np.arange(9), 4, 0))
    ([0, 1, 2], 4)
    """
    if len(rows) <= cap:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=cap, replace=False))
