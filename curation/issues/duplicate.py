"""Near-duplicates: rows much closer to a neighbour than is typical (cleanlab Datalab)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table
from curation.issues.lab import datalab_issues
from curation.issues.outlier import require_knn


@DETECTORS.register
class NearDuplicateIssues(Detector):
    """Flag rows whose nearest neighbour is within ``threshold`` x the median nearest distance.

    Parameters
    ----------
    threshold : float
        Datalab's relative radius (0.13 by default).
    """

    name: ClassVar[str] = "near_duplicate"
    needs: ClassVar[frozenset[str]] = frozenset({"knn"})

    def __init__(self, threshold: float = 0.13) -> None:
        self.threshold = threshold

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Flagged rows, closest pairs first (score = 1 - Datalab's near-duplicate score)."""
        require_knn(inputs, self.name)
        df = datalab_issues("near_duplicate", {"threshold": self.threshold}, knn=inputs.knn)
        idx = np.flatnonzero(df["is_near_duplicate_issue"].to_numpy())
        return issue_table(inputs, self.name, idx, 1.0 - df["near_duplicate_score"].to_numpy()[idx])
