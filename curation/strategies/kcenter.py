"""k-center greedy (coreset): cover the embedding space, one matrix-vector pass per pick."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.strategies.base import Pool, Strategy, selection_table


def kcenter_greedy(X: np.ndarray, k: int, centers: np.ndarray | None = None,
                   first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center over unit-norm rows of ``X``.

    Keeps each row's squared distance to its nearest chosen center and updates it with
    one matrix-vector product per pick; never builds a pairwise matrix.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, d)`` unit-norm float32 rows.
    k : int
        How many to pick.
    centers : numpy.ndarray, optional
        Already-chosen centers (for example the labeled rows).
    first : int
        The first pick when there are no centers.

    Returns
    -------
    (idx, dist) : tuple of numpy.ndarray
        The picked rows in order, and each one's squared distance to the centers
        chosen before it.

    Examples
    --------
    >>> X = np.array([[1, 0], [0.99, 0.141], [0, 1], [-1, 0]], dtype=np.float32)
    >>> kcenter_greedy(X, 3)[0].tolist()
    [0, 3, 2]
    """
    n = len(X)
    k = min(k, n)
    mind = np.full(n, np.inf, dtype=np.float32)
    if centers is not None and len(centers):
        for i in range(0, len(centers), 4096):
            sims = X @ centers[i:i + 4096].T
            np.minimum(mind, (2.0 - 2.0 * sims).min(axis=1), out=mind)
    idx = np.empty(k, dtype=np.int64)
    dist = np.empty(k, dtype=np.float32)
    for j in range(k):
        p = int(np.argmax(mind)) if np.isfinite(mind).any() else first
        idx[j], dist[j] = p, mind[p] if np.isfinite(mind[p]) else 4.0
        np.minimum(mind, 2.0 - 2.0 * (X @ X[p]), out=mind)
        mind[p] = -1.0
    return idx, dist


class KCenterGreedy(Strategy):
    """Select the pool rows farthest from everything labeled or selected so far.

    Examples
    --------
    >>> X = np.eye(3, dtype=np.float32)
    >>> pool = Pool(np.array(["a", "b", "c"]), X, X[:1])
    >>> KCenterGreedy().select(pool, 2)["id"].to_list()
    ['b', 'c']
    """

    name: ClassVar[str] = "kcenter"

    def select(self, pool: Pool, budget: int) -> pl.DataFrame:
        """Greedy picks; score is the squared distance to the nearest center at pick time."""
        first = int(np.random.default_rng(pool.seed).integers(len(pool.ids))) if len(pool.ids) else 0
        idx, dist = kcenter_greedy(pool.embeddings, budget, pool.labeled, first=first)
        return selection_table(pool.ids, idx, dist, "farthest from labeled and selected (k-center)")
