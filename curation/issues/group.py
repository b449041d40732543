"""Underperforming groups: clusters of the embedding space where the labels fit the model worst."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from curation.errors import ConfigError
from curation.issues.base import DETECTORS, Detector, IssueInputs, issue_table

#: Rows the cluster centres are fitted on, at most (the other rows are then assigned).
FIT_ROWS = 20_000


def spherical_kmeans(X: np.ndarray, n_clusters: int, *, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Cluster unit-norm rows by cosine similarity (k-means++ start, Lloyd steps); each row's cluster.

    The centres are fitted on a seeded sample of at most :data:`FIT_ROWS` rows, then every
    row goes to its most similar centre. One matrix product per step: no pairwise matrix.

    Examples
    --------
    >>> X = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
    >>> spherical_kmeans(X, 3).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    """
    rng = np.random.default_rng(seed)
    X = np.ascontiguousarray(X, dtype=np.float32)
    fit = X if len(X) <= FIT_ROWS else X[np.sort(rng.choice(len(X), FIT_ROWS, replace=False))]
    centres = _kmeans_pp(fit, n_clusters, rng)
    for _ in range(iterations):
        assign = (fit @ centres.T).argmax(1)
        members = csr_matrix(
            (np.ones(len(fit), np.float32), (assign, np.arange(len(fit)))), (n_clusters, len(fit))
        )
        sums = np.asarray(members @ fit)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        moved = np.where(
            norms > 0, sums / np.maximum(norms, 1e-12), centres
        )  # an empty cluster keeps its centre
        if np.allclose(moved, centres, atol=1e-6):
            break
        centres = moved
    _, first, inverse = np.unique((X @ centres.T).argmax(1), return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse].astype(np.int64)  # numbered by their first row


def _kmeans_pp(X: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on cosine distance: each next centre drawn by its squared distance."""
    centres = [X[rng.integers(len(X))]]
    dist = np.maximum(1.0 - X @ centres[0], 0.0)
    for _ in range(1, n_clusters):
        w = dist**2
        pick = rng.choice(len(X), p=w / w.sum()) if w.sum() > 0 else rng.integers(len(X))
        centres.append(X[pick])
        dist = np.minimum(dist, np.maximum(1.0 - X @ X[pick], 0.0))
    return np.stack(centres)


@DETECTORS.register
class UnderperformingGroupIssues(Detector):
    """Flag the clusters of labeled rows whose label quality is far below the rest's.

    The labeled rows are clustered by their embeddings (spherical k-means, seeded); each
    cluster's mean label quality (cleanlab's self-confidence: the out-of-sample probability
    of the given label) is divided by that of all the other labeled rows. A cluster under
    ``threshold`` is an underperforming group (cleanlab Datalab's ``underperforming_group``
    idea): a slice of the data the model does not learn, or whose labels are inconsistent.
    Every row of such a cluster is flagged and ``cluster`` names it; the score is
    ``1 - ratio``, the same for the cluster's rows, the worst cluster first.

    Datalab's own check clusters the kNN graph with DBSCAN at a fixed radius, which on
    sentence embeddings merges most rows into one cluster, and flags one cluster only: here
    the clusters are k-means' and every cluster under the threshold is flagged.

    Parameters
    ----------
    n_clusters : int, optional
        Clusters; by default ``round(sqrt(labeled rows / 2))`` (32 for 2,000 rows).
    threshold : float
        Largest ratio of a cluster's mean label quality to the rest's that is flagged.
        Measured on 2,001 BANKING77 train rows (32 clusters, kNN-label evidence): with the
        published labels one cluster of 8 rows of 7 confusable top-up and card intents has
        0.41, the next 0.79; a cluster whose labels are shuffled falls to 0.2-0.4.
    min_cluster_size : int
        Clusters with fewer labeled rows are not scored (Datalab's ``min_cluster_samples``).
    seed : int
        Seed of the clustering.

    Examples
    --------
    >>> X = np.repeat(np.eye(4, dtype=np.float32), 10, axis=0)
    >>> y = np.repeat([0, 1, 0, 1], 10)
    >>> p = np.eye(2)[y] * 0.9 + 0.05
    >>> p[20:30] = p[20:30, ::-1]  # the model disagrees with the third group's labels
    >>> x = IssueInputs(np.arange(40).astype(str), y, ["a", "b"], X, p)
    >>> t = UnderperformingGroupIssues(n_clusters=4).find(x)
    >>> sorted(set(t["id"].cast(int).to_list())) == list(range(20, 30)), t["cluster"].unique().to_list()
    (True, [2])
    """

    name: ClassVar[str] = "underperforming_group"
    columns: ClassVar[dict[str, Any]] = {"cluster": pl.Int64}

    def __init__(
        self,
        n_clusters: int | None = None,
        threshold: float = 0.5,
        min_cluster_size: int = 5,
        seed: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.threshold = threshold
        self.min_cluster_size = min_cluster_size
        self.seed = seed

    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """Rows of the underperforming clusters, worst cluster first, each with its ``cluster``."""
        rows = inputs.labeled
        n = self.n_clusters or max(2, round(math.sqrt(len(rows) / 2)))
        if n < 2:
            raise ConfigError(
                f"n_clusters must be at least 2, found {n}", field="underperforming_group.n_clusters"
            )
        empty = issue_table(
            inputs, self.name, rows[:0], np.array([]), {"cluster": pl.Series([], dtype=pl.Int64)}
        )
        if len(rows) < 2 * self.min_cluster_size or len(rows) < n:
            return empty
        # cleanlab's self-confidence (cleanlab.rank.get_self_confidence_for_each_label), inline:
        # importing cleanlab for one indexing costs seconds
        quality = inputs.pred_probs[rows, inputs.labels[rows]]
        cluster = spherical_kmeans(inputs.embeddings[rows], n, seed=self.seed)
        ratio = group_ratios(quality, cluster, self.min_cluster_size)
        bad = np.flatnonzero(ratio < self.threshold)
        hit = np.flatnonzero(np.isin(cluster, bad))
        named = pl.Series("cluster", cluster[hit], dtype=pl.Int64)
        return issue_table(
            inputs, self.name, rows[hit], np.clip(1.0 - ratio[cluster[hit]], 0.0, 1.0), {"cluster": named}
        )


def group_ratios(quality: np.ndarray, cluster: np.ndarray, min_size: int) -> np.ndarray:
    """Each cluster's mean ``quality`` over the other rows' (``inf`` when not scored).

    Examples
    --------
    >>> group_ratios(np.array([1.0, 1.0, 0.5, 0.5]), np.array([0, 0, 1, 1]), 2).tolist()
    [2.0, 0.5]
    """
    size = np.bincount(cluster)
    total = np.bincount(cluster, weights=quality)
    rest_size = len(quality) - size
    rest_mean = (quality.sum() - total) / np.maximum(rest_size, 1)
    ratio = np.full(len(size), np.inf)
    ok = (size >= min_size) & (rest_size > 0) & (rest_mean > 0)
    ratio[ok] = (total[ok] / size[ok]) / rest_mean[ok]
    return ratio
