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
#: approximate (faiss inverted file), where faiss is installed.
EXACT_MAX_ROWS = 60_000


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
        Above this many rows use faiss's inverted-file index (``pip install curation[scale]``).
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
        dist, idx = _faiss_search(X, k + 1, seed)
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


def _faiss_search(X: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    train = X[np.random.default_rng(seed).choice(n, size=min(n, 40 * nlist), replace=False)]
    index.train(train)
    index.add(X)
    index.nprobe = 8
    log.info("kNN graph: faiss IVF (nlist=%d, nprobe=%d) over %d rows", nlist, index.nprobe, n)
    sim, idx = index.search(X, k)
    idx = idx.astype(np.int64)
    missing = idx < 0
    if missing.any():  # too few rows in the probed lists: pad with a far neighbour
        sim[missing], idx[missing] = -1.0, ((np.arange(n)[:, None] + 1) % n).repeat(k, 1)[missing]
    return (1.0 - sim).astype(np.float32), idx


def _drop_self(dist: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or, where an exact duplicate hid it, the farthest)."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    drop = is_self & (np.cumsum(is_self, axis=1) == 1)
    drop[~is_self.any(axis=1), -1] = True
    d, j = dist[~drop].reshape(n, k), idx[~drop].reshape(n, k)
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(d, order, 1), np.take_along_axis(j, order, 1)
