"""Data valuation: each labeled row's KNN-Shapley value on the shared kNN graph (cleanlab)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.errors import ConfigError
from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table
from curation.issues.outlier import require_knn


def knn_shapley(knn: object, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Each row's KNN-Shapley value in [0, 1], as cleanlab's ``data_shapley_knn``.

    Every labeled row is a test point for its ``k`` neighbours in the graph: a neighbour at
    rank ``j`` (0 is the nearest) gains ``(match_j - match_{k-1}) / k``, ``match`` being whether
    the neighbour's label is the test point's; a row's value is its mean gain over the
    labeled rows, mapped from [-1, 1] to [0, 1]. Under 0.5: the row's label hurts a kNN
    classifier more than it helps. Pool rows (label ``-1``) are no test points and match no
    label. cleanlab's function fills an ``N x N`` dense matrix; this one touches the ``N x k``
    graph only, and gives the same values on fully labeled data.

    Examples
    --------
    >>> from cleanlab.data_valuation import data_shapley_knn
    >>> from curation.issues.knn import knn_graph
    >>> X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> g = knn_graph(X, 6)
    >>> bool(np.allclose(knn_shapley(g, y, 6), data_shapley_knn(y, knn_graph=g, k=6)))
    True
    """
    n = len(labels)
    idx = knn.indices.reshape(n, -1)[:, :k]  # type: ignore[attr-defined]
    test = labels >= 0
    match = (labels[idx] == labels[:, None]) & test[:, None]
    gain = (match[:, : k - 1].astype(np.float64) - match[:, k - 1 : k]) / k
    total = np.bincount(idx[test, : k - 1].ravel(), weights=gain[test].ravel(), minlength=n)
    return 0.5 * (total / max(int(test.sum()), 1) + 1.0)


@DETECTORS.register
class DataValuationIssues(Detector):
    """Flag labeled rows of low data value: a KNN-Shapley value under ``threshold``.

    A row's value is what its label adds to a kNN classifier over the shared graph
    (cleanlab Datalab's ``data_valuation`` check, :func:`knn_shapley`): a row whose
    neighbours carry other labels is worth little, or less than nothing. Pool rows are
    never flagged.

    Parameters
    ----------
    k : int
        Neighbours per row (the shared graph's ``issues.k`` when that is fewer).
    threshold : float
        Value under which a row is flagged (cleanlab's default, 0.5: a negative Shapley value).

    Examples
    --------
    >>> from curation.issues.knn import knn_graph
    >>> X = np.repeat(np.eye(2, dtype=np.float32), 10, axis=0)
    >>> X += 0.05 * np.random.default_rng(0).normal(size=X.shape).astype(np.float32)
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> y = np.repeat([0, 1], 10)
    >>> y[3] = 1  # a row of the first group labeled as the second
    >>> x = IssueInputs(np.arange(20).astype(str), y, ["a", "b"], X, np.ones((20, 2)) / 2, knn_graph(X, 5))
    >>> DataValuationIssues(k=5).find(x)["id"].to_list()
    ['3']
    """

    name: ClassVar[str] = "data_valuation"
    needs: ClassVar[frozenset[str]] = frozenset({"knn"})

    def __init__(self, k: int = 10, threshold: float = 0.5) -> None:
        self.k = k
        self.threshold = threshold

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Flagged rows, least valuable first (score = 1 - the value)."""
        require_knn(inputs, self.name)
        k = min(self.k, inputs.knn.nnz // max(inputs.knn.shape[0], 1))
        if k < 2:
            raise ConfigError(
                f"data valuation needs at least 2 neighbours per row, found {k}; raise k "
                "(and issues.k, the shared kNN graph's)",
                field="data_valuation.k",
            )
        value = knn_shapley(inputs.knn, inputs.labels, k)
        idx = np.flatnonzero((value < self.threshold) & (inputs.labels >= 0))
        return issue_table(inputs, self.name, idx, np.clip(1.0 - value[idx], 0.0, 1.0))
