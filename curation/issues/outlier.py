"""Outliers: rows far from their nearest neighbours (cleanlab Datalab, shared kNN graph)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.errors import CurationError
from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table
from curation.issues.lab import datalab_issues


def require_knn(inputs: IssueInputs, detector: str) -> None:
    """Raise unless the shared kNN graph is there."""
    if inputs.knn is None:
        raise CurationError(
            f"detector {detector!r} needs the shared kNN graph, found none; run the detectors "
            "through curation.issues.find_issues, which computes it once"
        )


@DETECTORS.register
class OutlierIssues(Detector):
    """Flag rows whose mean distance to their ``k`` neighbours is unusually large.

    Parameters
    ----------
    k : int
        Neighbours to average over (at most the shared graph's ``k``).
    threshold : float, optional
        Datalab's outlier threshold (``None``: its default, an IQR rule).
    """

    name: ClassVar[str] = "outlier"
    needs: ClassVar[frozenset[str]] = frozenset({"knn"})

    def __init__(self, k: int = 10, threshold: float | None = None) -> None:
        self.k = k
        self.threshold = threshold

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Flagged rows, most isolated first (score = 1 - Datalab's outlier score)."""
        require_knn(inputs, self.name)
        params = {"k": self.k, **({"threshold": self.threshold} if self.threshold is not None else {})}
        df = datalab_issues("outlier", params, knn=inputs.knn)
        idx = np.flatnonzero(df["is_outlier_issue"].to_numpy())
        return issue_table(inputs, self.name, idx, 1.0 - df["outlier_score"].to_numpy()[idx])
