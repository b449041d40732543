"""Class imbalance: the rarest class, when it is far below its fair share (cleanlab Datalab)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table
from curation.issues.lab import datalab_issues


@DETECTORS.register
class ClassImbalanceIssues(Detector):
    """Flag the rows of the rarest class when it holds under ``threshold / n_classes`` of the rows.

    Parameters
    ----------
    threshold : float
        Datalab's fraction of a fair share (0.1 by default).
    """

    name: ClassVar[str] = "class_imbalance"

    def __init__(self, threshold: float = 0.1) -> None:
        self.threshold = threshold

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """The rows of the rarest class if it is imbalanced (score = 1 - its share)."""
        rows = inputs.labeled
        if len(np.unique(inputs.labels[rows])) < 2:
            return issue_table(inputs, self.name, np.array([], dtype=int), np.array([]))
        df = datalab_issues("class_imbalance", {"threshold": self.threshold}, labels=inputs.labels[rows])
        hit = np.flatnonzero(df["is_class_imbalance_issue"].to_numpy())
        return issue_table(inputs, self.name, rows[hit], 1.0 - df["class_imbalance_score"].to_numpy()[hit])
