"""Class imbalance: the rarest class, when it is far below its fair share (cleanlab Datalab's rule).

The rule is Datalab's ``class_imbalance`` check, computed here from the label counts: Datalab
reads the labels row by row through a ``datasets.Dataset`` (24 s for 1M labels on the
development machine, against milliseconds for the counts); a test holds the two equal.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table


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
        labels = inputs.labels[rows]
        if len(np.unique(labels)) < 2:
            return issue_table(inputs, self.name, np.array([], dtype=int), np.array([]))
        hit, share = rarest_class(labels, self.threshold)
        return issue_table(inputs, self.name, rows[hit], np.full(len(hit), 1.0 - share))


def rarest_class(labels: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """Datalab's rule: the rows of the rarest class, if its share of the rows is under
    ``threshold / K`` (``K`` the classes present; else no rows), and that share.

    Examples
    --------
    >>> hit, share = rarest_class(np.array([0] * 30 + [2] * 30 + [1]), 0.1)
    >>> hit.tolist(), round(share, 3)
    ([60], 0.016)
    """
    values, counts = np.unique(labels, return_counts=True)
    share = counts / len(labels)
    rarest = int(np.argmin(share))
    hit = (
        np.flatnonzero(labels == values[rarest])
        if share[rarest] < threshold / len(values)
        else np.array([], int)
    )
    return hit, float(share[rarest])
