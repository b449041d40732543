"""Near-duplicates: rows much closer to a neighbour than is typical (cleanlab Datalab)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from curation.errors import ConfigError
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
        Datalab's relative radius: a row is flagged when a neighbour is closer than
        ``threshold`` x the median nearest-neighbour distance (0.13 by default; higher
        flags looser paraphrases, 0 only rows at distance 0).

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
        if self.threshold < 0:
            raise ConfigError(
                f"threshold is a multiple of the median nearest-neighbour distance, at least 0, "
                f"found {self.threshold}",
                field="near_duplicate.threshold",
            )
        df = datalab_issues("near_duplicate", {"threshold": self.threshold}, knn=inputs.knn)
        idx = np.flatnonzero(df["is_near_duplicate_issue"].to_numpy())
        nearest = inputs.knn.indices[inputs.knn.indptr[idx]]  # each row's neighbours come nearest first
        partner = pl.Series("partner", inputs.ids[nearest].astype(str), dtype=pl.String)
        return issue_table(
            inputs, self.name, idx, 1.0 - df["near_duplicate_score"].to_numpy()[idx], {"partner": partner}
        )


@DETECTORS.register
class ExactDuplicateIssues(Detector):
    """Flag every row of a set of rows with the same text (or, without texts, the same vector).

    With texts (``curation.find_issues(texts, ...)``, the round, the sweep) rows are exact
    duplicates when their texts are equal, character for character; without them, when
    their embeddings are equal bit for bit (the embedding cache gives one text one vector).
    ``group`` numbers the sets by their first row; ``partner`` is the set's first row (the
    second, on the first row itself). The score is ``1 - 1 / size``: bigger sets first.

    Examples
    --------
    >>> X = np.eye(4, dtype=np.float32)
    >>> texts = np.array(["hi", "yo", "hi", "hi"], dtype=object)
    >>> x = IssueInputs(np.array(["a", "b", "c", "d"]), np.zeros(4, int), ["z"], X, np.ones((4, 1)), texts=texts)
    >>> ExactDuplicateIssues().find(x).select("id", "partner", "group").sort("id").rows()
    [('a', 'c', 0), ('c', 'a', 0), ('d', 'a', 0)]
    """

    name: ClassVar[str] = "exact_duplicate"
    columns: ClassVar[dict[str, Any]] = {"partner": pl.String, "group": pl.Int64}

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """The rows of every duplicate set, the biggest sets first, each with its ``partner``
        and ``group``."""
        if inputs.texts is not None:
            keys = np.asarray(inputs.texts, dtype=str)
        else:
            X = np.ascontiguousarray(inputs.embeddings)
            keys = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
        _, first, inverse, size = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        idx = np.flatnonzero(size[inverse] > 1)
        idx = idx[np.argsort(first[inverse[idx]], kind="stable")]  # set by set
        head = first[inverse[idx]]  # each flagged row's set's first row
        second = np.full(len(first), len(keys))
        rest = idx[idx != head]
        np.minimum.at(second, inverse[rest], rest)  # the set's second row
        partner = np.where(idx == head, second[inverse[idx]], head)
        group = np.unique(head, return_inverse=True)[1]  # numbered by their first row
        extra = {
            "partner": pl.Series("partner", inputs.ids[partner].astype(str), dtype=pl.String),
            "group": pl.Series("group", group, dtype=pl.Int64),
        }
        return issue_table(inputs, self.name, idx, 1.0 - 1.0 / size[inverse[idx]], extra)
