"""TypiClust: label the most typical row of each uncovered cluster (Hacohen et al., 2022).

Strong at cold start and at small budgets: it picks dense, representative rows, not
outliers. Clusters are k-means over labeled and pool rows together; a cluster that holds
fewer labeled (or already picked) rows is served first, larger clusters break ties.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from curation.strategies.base import STRATEGIES, Pool, Ranked, ReviewMode, Strategy

#: Typicality is measured among at most this many rows (a seeded sample of larger sets):
#: the density ranking it gives is what matters, and a 1M-row pool would cost a matrix
#: product of every query with every row.
TYPICALITY_ROWS = 100_000
#: k-means centres are fitted on at most this many rows; every row is then assigned.
KMEANS_FIT_ROWS = 50_000


def typicality_in(Q: np.ndarray, X: np.ndarray, knn: int, *, seed: int = 0) -> np.ndarray:
    """Typicality of each row of ``Q`` among the rows of ``X`` (Q's rows may be in X).

    Above :data:`TYPICALITY_ROWS` rows of ``X`` a seeded sample of them stands for ``X``.
    """
    if len(X) < 2:
        return np.ones(len(Q))
    if len(X) > TYPICALITY_ROWS:
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), TYPICALITY_ROWS, replace=False))]
    out = np.empty(len(Q))
    k = min(knn + 1, len(X))
    chunk = max(1, (1 << 24) // max(1, len(X)))  # a block of at most 16M distances
    for i in range(0, len(Q), chunk):
        d2 = np.maximum(2.0 - 2.0 * (Q[i : i + chunk] @ X.T), 0.0)
        near = np.sort(np.partition(d2, k - 1, axis=1)[:, :k], axis=1)[:, 1:]
        out[i : i + chunk] = 1.0 / (np.sqrt(near).mean(axis=1) + 1e-8)
    return out


def kmeans_labels(X: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means cluster of each row; the centres fitted on at most :data:`KMEANS_FIT_ROWS` rows.

    Examples
    --------
    >>> X = np.repeat(np.eye(2, dtype=np.float32), 3, axis=0)
    >>> kmeans_labels(X, 2, 0).tolist() in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    True
    """
    from sklearn.cluster import KMeans

    # float64: on float32 rows scikit-learn's k-means++ computes its distances in small
    # upcast blocks, minutes for 500 centres over 20,000 rows instead of a second
    km = KMeans(n_clusters, n_init=1, random_state=seed)
    if len(X) <= KMEANS_FIT_ROWS:
        return np.asarray(km.fit(X.astype(np.float64)).labels_)
    fit = np.random.default_rng(seed).choice(len(X), KMEANS_FIT_ROWS, replace=False)
    km.fit(X[np.sort(fit)].astype(np.float64))
    step = 100_000
    return np.concatenate([km.predict(X[i : i + step].astype(np.float64)) for i in range(0, len(X), step)])


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
        cluster = kmeans_labels(X, n_clusters, pool.seed)
        covered = np.bincount(cluster[:n_lab], minlength=n_clusters).astype(np.int64)
        size = np.bincount(cluster, minlength=n_clusters)
        by_cluster = np.argsort(cluster, kind="stable")  # rows of cluster c: one slice
        starts = np.r_[0, np.cumsum(size)]
        free = np.bincount(cluster[n_lab:], minlength=n_clusters)  # pool rows per cluster
        typ: dict[int, np.ndarray] = {}
        taken = np.zeros(n_clusters, np.int64)
        small = size < self.min_cluster_size
        idx, score, reason = [], [], []
        for _ in range(n):
            left = taken < free
            if not left.any():
                break
            c = int(np.lexsort((-size, covered, small | ~left))[0])
            if c not in typ:
                rows = by_cluster[starts[c] : starts[c + 1]]
                in_pool = rows[rows >= n_lab]
                t = typicality_in(X[in_pool], X[rows], self.knn, seed=pool.seed)
                order = np.argsort(-t, kind="stable")
                typ[c] = np.c_[in_pool[order] - n_lab, t[order]]
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
