"""TypiClust: label the most typical row of each uncovered cluster (Hacohen et al., 2022).

Strong at cold start and at small budgets: it picks dense, representative rows, not
outliers. Clusters are k-means over labeled and pool rows together; a cluster that holds
fewer labeled (or already picked) rows is served first, larger clusters break ties.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from curation.strategies.base import STRATEGIES, Pool, Ranked, ReviewMode, Strategy


def typicality(X: np.ndarray, knn: int) -> np.ndarray:
    """``1 / mean distance to the knn nearest other rows`` of each row of ``X`` (unit-norm rows)."""
    if len(X) < 2:
        return np.ones(len(X))
    d2 = np.maximum(2.0 - 2.0 * (X @ X.T), 0.0)
    np.fill_diagonal(d2, np.inf)
    k = min(knn, len(X) - 1)
    near = np.partition(d2, k - 1, axis=1)[:, :k]
    return 1.0 / (np.sqrt(near).mean(axis=1) + 1e-8)


def typicality_in(Q: np.ndarray, X: np.ndarray, knn: int, chunk: int = 1024) -> np.ndarray:
    """Typicality of each row of ``Q`` among the rows of ``X`` (Q's rows may be in X)."""
    out = np.empty(len(Q))
    k = min(knn + 1, len(X))
    for i in range(0, len(Q), chunk):
        d2 = np.maximum(2.0 - 2.0 * (Q[i : i + chunk] @ X.T), 0.0)
        near = np.sort(np.partition(d2, k - 1, axis=1)[:, :k], axis=1)[:, 1:]
        out[i : i + chunk] = 1.0 / (np.sqrt(near).mean(axis=1) + 1e-8)
    return out


@STRATEGIES.register
class TypiClust(Strategy):
    """Pick the most typical pool row of the least-covered, largest clusters.

    Parameters
    ----------
    max_clusters : int
        At most this many k-means clusters (``n_labeled + budget`` when smaller).
    knn : int
        Neighbours for the typicality of a row (within its cluster).
    min_cluster_size : int
        Clusters smaller than this are served last (they are often outliers).
    max_per_class, review_share, review
        See :class:`~curation.strategies.base.Strategy`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal([5, 0], 1, (30, 2)), rng.normal([0, 5], 1, (30, 2))].astype(np.float32)
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> pool = Pool(np.arange(60).astype(str), X, np.zeros((0, 2), np.float32))
    >>> sorted(int(i) // 30 for i in TypiClust(min_cluster_size=1).select(pool, 2)["id"])
    [0, 1]
    """

    name: ClassVar[str] = "typiclust"

    def __init__(
        self,
        max_clusters: int = 500,
        knn: int = 20,
        min_cluster_size: int = 5,
        *,
        max_per_class: int | None = None,
        review_share: float = 0.0,
        review: ReviewMode | None = None,
    ) -> None:
        super().__init__(max_per_class=max_per_class, review_share=review_share, review=review)
        self.max_clusters = max_clusters
        self.knn = knn
        self.min_cluster_size = min_cluster_size

    def rank(self, pool: Pool, n: int) -> Ranked:
        """``n`` picks, one at a time from the cluster with fewest labeled rows."""
        n_lab = len(pool.labeled)
        X = np.concatenate([pool.labeled.astype(np.float32), pool.embeddings]) if n_lab else pool.embeddings
        n_clusters = max(1, min(n_lab + n, self.max_clusters, len(X)))
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters, n_init=1, random_state=pool.seed).fit(X)
        cluster = km.labels_
        covered = np.bincount(cluster[:n_lab], minlength=n_clusters).astype(np.int64)
        size = np.bincount(cluster, minlength=n_clusters)
        members = [np.flatnonzero(cluster[n_lab:] == c) for c in range(n_clusters)]
        typ: dict[int, np.ndarray] = {}
        taken = [0] * n_clusters
        idx, score, reason = [], [], []
        for _ in range(n):
            left = np.array([taken[c] < len(members[c]) for c in range(n_clusters)])
            if not left.any():
                break
            small = size < self.min_cluster_size
            key = np.lexsort((-size, covered, small | ~left))
            c = int(key[0])
            if c not in typ:
                rows = np.flatnonzero(cluster == c)
                t = typicality(X[rows], self.knn)[rows >= n_lab]
                order = np.argsort(-t, kind="stable")
                typ[c] = np.c_[members[c][order], t[order]]
            i, t = typ[c][taken[c]]
            taken[c] += 1
            covered[c] += 1
            idx.append(int(i))
            score.append(float(t))
            reason.append(
                f"most typical row (typicality {t:.2f}) of cluster {c}: {size[c]} rows, "
                f"{covered[c] - 1} of them labeled or picked before"
            )
        return Ranked(np.array(idx, dtype=np.int64), np.array(score), reason)
