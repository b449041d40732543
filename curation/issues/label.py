"""Label errors: cleanlab's ``find_label_issues`` on out-of-sample probabilities."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table

#: The flag rule of each recipe when ``filter_by`` is not set.
FILTER_BY = {"reference": "prune_by_noise_rate", "ensemble": "predicted_neq_given"}


@DETECTORS.register
class LabelIssues(Detector):
    """Flag rows whose given label disagrees with the confident-learning estimate.

    Unlabeled rows (code ``-1``) are the active-learning pool, never flagged. With the
    ensemble recipe ``inputs.pred_probs`` is the combined evidence; with the reference
    recipe it is one cross-validated model on the embeddings (cleanlab's default recipe).

    Parameters
    ----------
    filter_by : str, optional
        cleanlab's ``filter_by`` method. By default the recipe's: ``"prune_by_noise_rate"``
        for the reference recipe (cleanlab's default), ``"predicted_neq_given"`` for the
        ensemble, whose pooled probabilities are sharp enough that disagreeing with the
        given label is itself the flag (measured in docs/label_issues.md).
    rank_by : str
        cleanlab's label-quality score that orders the flags (``"self_confidence"``,
        ``"normalized_margin"`` or ``"confidence_weighted_entropy"``).

    Examples
    --------
    >>> import numpy as np
    >>> from curation.issues.base import IssueInputs
    >>> p = np.array([[.9, .1]] * 9 + [[.05, .95]] * 10 + [[.95, .05]])
    >>> y = np.array([0] * 9 + [1] * 11)
    >>> x = IssueInputs(np.arange(20).astype(str), y, ["a", "b"], np.zeros((20, 2)), p)
    >>> LabelIssues().find(x)["id"].to_list()
    ['19']
    """

    name: ClassVar[str] = "label"

    def __init__(self, filter_by: str | None = None, rank_by: str = "self_confidence") -> None:
        self.filter_by = filter_by
        self.rank_by = rank_by

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Flagged rows, worst first (score = 1 - cleanlab's label-quality score)."""
        rows = inputs.labeled
        labels, probs = inputs.labels[rows], inputs.pred_probs[rows]
        if len(np.unique(labels)) < 2:
            return issue_table(inputs, self.name, np.array([], dtype=int), np.array([]))
        filter_by = self.filter_by or FILTER_BY.get(inputs.recipe, "prune_by_noise_rate")
        from cleanlab.filter import find_label_issues

        mask = find_label_issues(labels, probs, filter_by=filter_by)
        hit = np.flatnonzero(mask)
        quality = label_quality(inputs.labels, inputs.pred_probs, self.rank_by)[rows]
        return issue_table(inputs, self.name, rows[hit], 1.0 - quality[hit])


def label_quality(labels: np.ndarray, probs: np.ndarray, method: str = "self_confidence") -> np.ndarray:
    """cleanlab's label-quality score of every labeled row; ``nan`` on unlabeled ones (code ``-1``).

    Low is suspect: sorting all labeled rows by it ranks them from likeliest label error to
    surest label, whether or not the detector flags them.

    Examples
    --------
    >>> p = np.array([[.9, .1], [.2, .8], [.6, .4]])
    >>> label_quality(np.array([0, 0, -1]), p).round(2).tolist()
    [0.9, 0.2, nan]
    """
    from cleanlab.rank import get_label_quality_scores

    out = np.full(len(labels), np.nan)
    rows = np.flatnonzero(labels >= 0)
    if len(rows):
        out[rows] = get_label_quality_scores(labels[rows], probs[rows], method=method)
    return out
