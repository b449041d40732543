"""Non-IID ordering: neighbours in embedding space that sit close in row order (cleanlab Datalab)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from curation.errors import ConfigError
from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table
from curation.issues.lab import datalab_check
from curation.issues.outlier import require_knn


@DETECTORS.register
class NonIIDIssues(Detector):
    """Flag rows whose neighbours are suspiciously close to them in row order, when the order
    as a whole is not IID.

    Datalab's ``non_iid`` check compares the row-order distances between each row and its
    neighbours in the shared kNN graph with those of random orders (a permutation test of a
    KS statistic): a small p-value means the rows are sorted or drift (by label, by source, by
    time), and a random train/test split or cross-validation of them is not what it seems.
    When the p-value is under ``significance_threshold`` it flags the rows whose own non-IID
    score is under ``threshold`` (at least the worst one, as Datalab does); each flagged row
    carries the dataset's ``p_value``. An IID order flags nothing.

    Every row's neighbours in the shared graph are compared (``issues.k`` of them).

    Parameters
    ----------
    num_permutations : int
        Random orders of the permutation test.
    significance_threshold : float
        The p-value under which the order is non-IID.
    threshold : float
        Datalab's per-row non-IID score (in [0, 1], low: neighbours close in row order)
        under which a row is flagged. Measured on 3,000 BANKING77 rows (``issues.k`` = 10): in their
        label-sorted order the median row scores 0.61; shuffled, 99% of rows score above 0.77.
    seed : int
        Seed of the permutations.

    Examples
    --------
    >>> from curation.issues.knn import knn_graph
    >>> X = np.repeat(np.eye(4, dtype=np.float32), 30, axis=0)  # 4 groups, one after the other
    >>> X += 0.05 * np.random.default_rng(0).normal(size=X.shape).astype(np.float32)
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> x = IssueInputs(np.arange(120).astype(str), np.zeros(120, int), ["a"], X, np.ones((120, 1)),
    ...                 knn_graph(X, 5))
    >>> t = NonIIDIssues().find(x)
    >>> len(t) > 0, bool(t["p_value"][0] < 0.05)
    (True, True)
    >>> rng = np.random.default_rng(1).permutation(120)  # the same rows, shuffled
    >>> y = IssueInputs(x.ids, x.labels, ["a"], X[rng], x.pred_probs, knn_graph(X[rng], 5))
    >>> len(NonIIDIssues().find(y))
    0
    """

    name: ClassVar[str] = "non_iid"
    needs: ClassVar[frozenset[str]] = frozenset({"knn"})
    columns: ClassVar[dict[str, Any]] = {"p_value": pl.Float64}

    def __init__(
        self,
        num_permutations: int = 25,
        significance_threshold: float = 0.05,
        threshold: float = 0.7,
        seed: int = 0,
    ) -> None:
        self.num_permutations = num_permutations
        self.significance_threshold = significance_threshold
        self.threshold = threshold
        self.seed = seed

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Flagged rows, closest in row order first (score = 1 - Datalab's non-IID score),
        each with the order's ``p_value``; none when the order passes as IID."""
        require_knn(inputs, self.name)
        if self.num_permutations < 2:
            raise ConfigError(
                f"a permutation test needs at least 2 permutations, found {self.num_permutations}",
                field="non_iid.num_permutations",
            )
        params = {"num_permutations": self.num_permutations, "seed": self.seed}
        df, info = datalab_check("non_iid", params, knn=inputs.knn)
        p_value = float(info["p-value"])
        scores = df["non_iid_score"].to_numpy()
        idx = np.array([], dtype=int)
        if p_value < self.significance_threshold:
            idx = np.union1d(np.flatnonzero(scores < self.threshold), [int(scores.argmin())])
        p = pl.Series("p_value", np.full(len(idx), p_value), dtype=pl.Float64)
        return issue_table(inputs, self.name, idx, np.clip(1.0 - scores[idx], 0.0, 1.0), {"p_value": p})
