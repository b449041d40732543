"""Near-duplicates: rows much closer to a neighbour than is typical (cleanlab Datalab)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table
from curation.issues.lab import datalab_issues
from curation.issues.outlier import require_knn


@DETECTORS.register
class NearDuplicateIssues(Detector):
    """Flag rows whose nearest neighbour is within ``threshold`` x the median nearest distance.

    Each flagged row names its ``partner``: the id of its nearest neighbour in the shared
    kNN graph (the row it nearly duplicates).

    Parameters
    ----------
    threshold : float
        Datalab's relative radius (0.13 by default).

    Examples
    --------
    >>> import numpy as np
    >>> from curation.issues.knn import knn_graph
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 8)).astype(np.float32)
    >>> X[7] = X[3] + 1e-4
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> ids = np.array([f"r{i}" for i in range(30)], dtype=object)
    >>> x = IssueInputs(ids, np.zeros(30, int), ["a"], X, np.ones((30, 1)), knn_graph(X, 5))
    >>> NearDuplicateIssues().find(x).select("id", "partner").sort("id").rows()
    [('r3', 'r7'), ('r7', 'r3')]
    """

    name: ClassVar[str] = "near_duplicate"
    needs: ClassVar[frozenset[str]] = frozenset({"knn"})
    columns: ClassVar[dict[str, Any]] = {"partner": pl.String}

    def __init__(self, threshold: float = 0.13) -> None:
        self.threshold = threshold

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Flagged rows, closest pairs first (score = 1 - Datalab's near-duplicate score),
        each with its ``partner``."""
        require_knn(inputs, self.name)
        df = datalab_issues("near_duplicate", {"threshold": self.threshold}, knn=inputs.knn)
        idx = np.flatnonzero(df["is_near_duplicate_issue"].to_numpy())
        nearest = inputs.knn.indices[inputs.knn.indptr[idx]]  # each row's neighbours come nearest first
        partner = pl.Series("partner", inputs.ids[nearest].astype(str), dtype=pl.String)
        return issue_table(
            inputs, self.name, idx, 1.0 - df["near_duplicate_score"].to_numpy()[idx], {"partner": partner}
        )
