"""The k-nearest-neighbour graph, computed once per round and shared by the detectors.

The graph is in cleanlab's ``knn_graph`` format (what ``Datalab.find_issues`` accepts): an
``N x N`` CSR matrix whose row ``i`` holds the ``k`` nearest other rows, nearest first, with
their cosine distances as values.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.sparse import csr_matrix

from curation.errors import ConfigError

log = logging.getLogger(__name__)

#: Up to this many rows the graph is exact (scikit-learn, brute force); above, it is
#: approximate (blocked matrix products over faiss k-means lists), where faiss is installed.
EXACT_MAX_ROWS = 60_000
#: Lists each list of the approximate search is compared with (its own included).
PROBE = 16


def knn_graph(
    X: np.ndarray, k: int = 10, *, exact_max_rows: int = EXACT_MAX_ROWS, seed: int = 0
) -> csr_matrix:
    """The ``k`` nearest neighbours of every row of ``X`` by cosine distance, self excluded.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, d)`` unit-norm vectors.
    k : int
        Neighbours per row (``min(k, n - 1)`` when there are fewer rows).
    exact_max_rows : int
        Above this many rows search approximately: k-means lists, each list's rows against
        the rows of its nearest lists, one matrix product a list (``pip install curation[scale]``).
    seed : int
        Seed of the approximate index's clustering.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n, n)``; row ``i`` holds ``k`` distances in ``[0, 2]``, nearest first.

    Examples
    --------
    >>> X = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]
    >>> g = knn_graph(X, k=1)
    >>> g.indices.tolist(), g.data.round(3).tolist()
    ([1, 0, 0, 0], [0.0, 0.0, 1.0, 1.0])
    """
    n = X.shape[0]
    k = min(k, n - 1)
    if k < 1:
        raise ConfigError(f"a kNN graph needs at least 2 rows, found {n}", field="issues.k")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if n > exact_max_rows:
        dist, idx = _blocked_search(X, k + 1, seed)
    else:
        dist, idx = _exact_search(X, k + 1)
    dist, idx = _drop_self(dist, idx, k)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return csr_matrix((np.clip(dist, 0.0, 2.0).ravel(), idx.ravel(), indptr), shape=(n, n))


def _exact_search(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(X)
    dist, idx = nn.kneighbors(X)
    return dist.astype(np.float32), idx.astype(np.int64)


def _blocked_search(X: np.ndarray, k: int, seed: int, probe: int = PROBE) -> tuple[np.ndarray, np.ndarray]:
    """Approximate search as blocked matrix products over k-means lists.

    The rows are split into about ``sqrt(n)`` lists by spherical k-means (an IVF coarse
    quantizer); the rows of each list are compared with the rows of the ``probe`` lists whose
    centres are nearest its centre (its own first) by one ``faiss.knn`` call: an SGEMM and a
    top-``k`` selection, instead of a scan of the probed lists per query row.
    """
    try:
        import faiss
    except ImportError as e:
        raise ConfigError(
            f"a kNN graph over {X.shape[0]} rows needs faiss (above {EXACT_MAX_ROWS} rows the "
            "exact search is too slow); install it with `pip install curation[scale]`",
            field="issues.k",
        ) from e
    n, d = X.shape
    nlist = max(1, int(min(math.sqrt(n), n // 40)))
    km = faiss.Kmeans(
        d, nlist, niter=10, seed=seed, spherical=True, max_points_per_centroid=64, min_points_per_centroid=1
    )
    km.train(X)  # on a seeded sample of at most 64 rows per list
    lists = km.index.search(X, 1)[1][:, 0]
    order = np.argsort(lists, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(lists, minlength=nlist))]
    centres = np.asarray(km.centroids, dtype=np.float32)
    near = faiss.knn(centres, centres, min(probe, nlist), faiss.METRIC_INNER_PRODUCT)[1]
    log.info("kNN graph: %d k-means lists, each against its %d nearest, over %d rows", nlist, probe, n)
    sim = np.full((n, k), -1.0, np.float32)
    idx = ((np.arange(n)[:, None] + 1) % n).repeat(k, 1)  # a far neighbour where a list is short
    for c in range(nlist):
        rows = order[starts[c] : starts[c + 1]]
        if len(rows) == 0:
            continue
        cand = np.concatenate([order[starts[j] : starts[j + 1]] for j in near[c] if j >= 0])
        m = min(k, len(cand))
        s, j = faiss.knn(X[rows], X[cand], m, faiss.METRIC_INNER_PRODUCT)
        sim[rows, :m], idx[rows, :m] = s, cand[j]
    return (1.0 - sim).astype(np.float32), idx.astype(np.int64)


def _drop_self(dist: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or, where an exact duplicate hid it, the farthest)."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    drop = is_self & (np.cumsum(is_self, axis=1) == 1)
    drop[~is_self.any(axis=1), -1] = True
    d, j = dist[~drop].reshape(n, k), idx[~drop].reshape(n, k)
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(d, order, 1), np.take_along_axis(j, order, 1)
