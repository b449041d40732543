"""Label errors: cleanlab's ``find_label_issues`` on out-of-sample probabilities."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
from cleanlab.filter import find_label_issues

from curation.issues.base import Detector, IssueInputs, issue_table


class LabelIssues(Detector):
    """Flag rows whose given label disagrees with the confident-learning estimate.

    Parameters
    ----------
    filter_by : str
        cleanlab's ``filter_by`` method (``"prune_by_noise_rate"`` by default).

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

    def __init__(self, filter_by: str = "prune_by_noise_rate") -> None:
        self.filter_by = filter_by

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Flagged rows ranked by self-confidence (score = 1 - p(given label))."""
        present = np.unique(inputs.labels)
        if len(present) < 2:
            return issue_table(inputs, self.name, np.array([], dtype=int), np.array([]))
        mask = find_label_issues(inputs.labels, inputs.pred_probs, filter_by=self.filter_by)
        idx = np.flatnonzero(mask)
        self_conf = inputs.pred_probs[idx, inputs.labels[idx]]
        return issue_table(inputs, self.name, idx, 1.0 - self_conf)
