"""The k-nearest-neighbour graph, computed once per round and shared by the detectors.

The graph is in cleanlab's ``knn_graph`` format (what ``Datalab.find_issues`` accepts): an
``N x N`` CSR matrix whose row ``i`` holds the ``k`` nearest other rows, nearest first, with
their cosine distances as values.

A round in which few rows are new does not search again: :func:`update_graph` searches for
the new rows only, and offers each kept row the new rows its search would have seen, over the
same :class:`KnnIndex`; the result is the graph :func:`knn_graph` gives with that index.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from curation.errors import ConfigError
from curation.support.similarity import top_k

log = logging.getLogger(__name__)

#: Up to this many rows the graph is exact (scikit-learn, brute force); above, it is
#: approximate (blocked matrix products over k-means lists).
EXACT_MAX_ROWS = 60_000
#: Lists each list of the approximate search is compared with (its own included).
PROBE = 16


@dataclass
class KnnIndex:
    """The approximate search's partition of the rows: k-means lists and who meets whom.

    Attributes
    ----------
    centres : numpy.ndarray
        ``(nlist, d)`` unit-norm centres of the lists (spherical k-means).
    near : numpy.ndarray
        ``(nlist, probe)``: the lists each list's rows are compared with, its own first.
    lists : numpy.ndarray
        The list of each row the index was last used for.
    """

    centres: np.ndarray
    near: np.ndarray
    lists: np.ndarray

    def assign(self, X: np.ndarray) -> np.ndarray:
        """The list of each row of ``X``: the one with the nearest centre."""
        if len(self.centres) == 1:
            return np.zeros(len(X), np.int32)
        return top_k(X, self.centres, 1)[1][:, 0].astype(np.int32)


def knn_graph(
    X: np.ndarray,
    k: int = 10,
    *,
    exact_max_rows: int = EXACT_MAX_ROWS,
    seed: int = 0,
    index: KnnIndex | None = None,
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
        the rows of its nearest lists, one matrix product a list.
    seed : int
        Seed of the approximate index's clustering.
    index : KnnIndex, optional
        Search over this partition (its ``lists`` are each row's) instead of clustering anew.

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
    return knn_search(X, k, exact_max_rows=exact_max_rows, seed=seed, index=index)[0]


def knn_search(
    X: np.ndarray,
    k: int = 10,
    *,
    exact_max_rows: int = EXACT_MAX_ROWS,
    seed: int = 0,
    index: KnnIndex | None = None,
) -> tuple[csr_matrix, KnnIndex | None]:
    """:func:`knn_graph` and the index it searched over (``None`` when the search was exact)."""
    n = X.shape[0]
    k = _k(k, n)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if index is None and n > exact_max_rows:
        index = build_index(X, seed)
    if index is not None:
        dist, idx = _blocked_search(X, k + 1, index, np.arange(n))
    else:
        dist, idx = _exact_search(X, X, k + 1)
    return to_graph(*_drop_self(dist, idx, np.arange(n), k)), index


def build_index(X: np.ndarray, seed: int = 0, probe: int = PROBE, iterations: int = 10) -> KnnIndex:
    """About ``sqrt(n)`` lists of ``X``'s rows by spherical k-means (:func:`nlist_for`), each
    with its ``probe`` nearest lists.

    The centres start at distinct random rows and take ``iterations`` Lloyd steps on a seeded
    sample of at most 64 rows per list (as faiss's k-means trains); every step is one matrix
    product (:func:`top_k`). An empty list keeps its centre.
    """
    rows, rng = index_sample(X.shape[0], seed)
    index = train_index(X[rows], nlist_for(X.shape[0]), rng, probe, iterations)
    index.lists = index.assign(X)
    log.info(
        "kNN index: %d k-means lists, each against its %d nearest, over %d rows",
        len(index.centres),
        probe,
        len(X),
    )
    return index


def nlist_for(n: int) -> int:
    """The lists of :func:`build_index` for ``n`` rows: about ``sqrt(n)`` up to a million rows
    (at least 40 rows each), then 1,000 rows each (the search's cost grows with ``n`` times
    a list's rows: linearly from there).

    Examples
    --------
    >>> nlist_for(100), nlist_for(1_000_000), nlist_for(10_000_000)
    (2, 1000, 10000)
    """
    return max(1, int(min(max(math.sqrt(n), n / 1000), n // 40)))


def index_sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.random.Generator]:
    """The rows :func:`build_index` trains on (at most 64 per list, seeded, sorted), and the
    generator that then picks the first centres among them.

    Examples
    --------
    >>> rows, _ = index_sample(100_000)
    >>> len(rows), bool((np.diff(rows) > 0).all())
    (20224, True)
    """
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, 64 * nlist_for(n)), replace=False)), rng


def train_index(
    fit: np.ndarray, nlist: int, rng: np.random.Generator, probe: int = PROBE, iterations: int = 10
) -> KnnIndex:
    """The k-means lists of :func:`build_index` from its training rows ``fit``
    (:func:`index_sample`); the index's ``lists`` are empty until rows are assigned."""
    centres = fit[rng.choice(len(fit), size=nlist, replace=False)].copy()
    for _ in range(iterations):
        near = top_k(fit, centres, 1)[1][:, 0]
        members = csr_matrix((np.ones(len(fit), np.float32), (near, np.arange(len(fit)))), (nlist, len(fit)))
        sums = np.asarray(members @ fit)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centres = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centres).astype(np.float32)
    return KnnIndex(centres, top_k(centres, centres, min(probe, nlist))[1], np.zeros(0, np.int32))


def update_graph(
    X: np.ndarray,
    previous: csr_matrix,
    kept: np.ndarray,
    k: int,
    index: KnnIndex | None = None,
) -> csr_matrix:
    """The graph of ``X`` from the graph of an earlier version of its rows.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, d)`` unit-norm vectors of the rows now.
    previous : scipy.sparse.csr_matrix
        The earlier rows' graph (:func:`knn_graph`, same ``k``).
    kept : numpy.ndarray
        ``(n,)``: each row's position among the earlier rows, ``-1`` for a new row (or one
        whose vector changed). Earlier rows that no row maps to are gone.
    k : int
        Neighbours per row.
    index : KnnIndex, optional
        The partition the earlier graph was searched over, its ``lists`` the earlier rows'
        (``None``: the earlier search was exact, and so is this one). Its ``lists`` become the
        rows' of ``X``.

    Returns
    -------
    scipy.sparse.csr_matrix
        The graph :func:`knn_graph` gives for ``X`` with ``index`` (ties aside): new rows, and
        kept rows that lost a neighbour, are searched; every other row keeps its neighbours
        and is offered the new rows it would have been compared with.

    Examples
    --------
    >>> X = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]
    >>> old = knn_graph(X[:3], k=1)
    >>> update_graph(X, old, np.array([0, 1, 2, -1]), k=1).indices.tolist()
    [1, 0, 0, 0]
    """
    n, k = X.shape[0], _k(k, X.shape[0])
    X = np.ascontiguousarray(X, dtype=np.float32)
    now = np.full(previous.shape[0], -1, np.int64)  # earlier position -> position now
    now[kept[kept >= 0]] = np.flatnonzero(kept >= 0)
    old = kept >= 0
    k_old = previous.nnz // max(previous.shape[0], 1)
    idx = np.full((n, k), -1, np.int64)
    dist = np.full((n, k), np.inf, np.float32)
    kk = min(k, k_old)
    idx[old, :kk] = now[previous.indices.reshape(-1, k_old)[kept[old], :kk]]
    dist[old, :kk] = previous.data.reshape(-1, k_old)[kept[old], :kk]
    search = ~old | (idx < 0).any(axis=1)  # new rows, and kept rows that lost a neighbour
    rows, fresh = np.flatnonzero(search), np.flatnonzero(~old)
    if index is not None:
        lists = np.empty(n, np.int32)
        lists[old] = index.lists[kept[old]]
        lists[fresh] = index.assign(X[fresh])
        index.lists = lists
        d, j = _search_few(X, k + 1, index, rows)
        offer = _blocked_offers(X, k, index, np.flatnonzero(~search), fresh)
    else:
        d, j = _exact_search(X[rows], X, k + 1)
        offer = _exact_search(X[~search], X[fresh], min(k, len(fresh)))
        offer = (offer[0], fresh[offer[1]])
    dist[rows], idx[rows] = _drop_self(d, j, rows, k)
    stay = np.flatnonzero(~search)
    dist[stay], idx[stay] = _merge(dist[stay], idx[stay], *offer, k)
    log.info("kNN graph updated: %d of %d rows searched, %d new", len(rows), n, len(fresh))
    return to_graph(dist, idx)


def to_graph(dist: np.ndarray, idx: np.ndarray) -> csr_matrix:
    """The ``(n, n)`` CSR graph of each row's ``k`` neighbours ``idx`` at distances ``dist``."""
    n, k = idx.shape
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return csr_matrix((np.clip(dist, 0.0, 2.0).ravel(), idx.ravel(), indptr), shape=(n, n))


def _k(k: int, n: int) -> int:
    k = min(k, n - 1)
    if k < 1:
        raise ConfigError(f"a kNN graph needs at least 2 rows, found {n}", field="issues.k")
    return k


def _exact_search(Q: np.ndarray, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``X`` nearest each row of ``Q`` (cosine distance, brute force)."""
    from sklearn.neighbors import NearestNeighbors

    if len(Q) == 0 or k < 1:
        return np.zeros((len(Q), max(k, 0)), np.float32), np.zeros((len(Q), max(k, 0)), np.int64)
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(X)
    dist, idx = nn.kneighbors(Q)
    return dist.astype(np.float32), idx.astype(np.int64)


def _members(index: KnnIndex) -> tuple[np.ndarray, np.ndarray]:
    """The rows sorted by list, and where each list starts in that order."""
    order = np.argsort(index.lists, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(index.lists, minlength=len(index.centres)))]
    return order, starts


def _blocked_search(
    X: np.ndarray, k: int, index: KnnIndex, queries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate search as blocked matrix products over the index's lists.

    The ``queries`` of each list are compared with the rows of its ``near`` lists by one
    matrix product and a top-``k`` selection (:func:`top_k`), instead of a scan of the probed
    lists per query row. Returns ``(len(queries), k)`` distances and row indices.
    """
    n = X.shape[0]
    order, starts = _members(index)
    pos = np.full(n, -1, np.int64)
    pos[queries] = np.arange(len(queries))
    sim = np.full((len(queries), k), -1.0, np.float32)
    idx = ((queries[:, None] + 1) % n).repeat(k, 1)  # a far neighbour where a list is short
    for c in np.unique(index.lists[queries]):
        rows = order[starts[c] : starts[c + 1]]
        rows = rows[pos[rows] >= 0]
        cand = np.concatenate([order[starts[j] : starts[j + 1]] for j in index.near[c] if j >= 0])
        m = min(k, len(cand))
        s, j = top_k(X[rows], X[cand], m)
        sim[pos[rows], :m], idx[pos[rows], :m] = s, cand[j]
    return (1.0 - sim).astype(np.float32), idx.astype(np.int64)


def _search_few(X: np.ndarray, k: int, index: KnnIndex, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_blocked_search` for a few query rows: each list is compared once with the queries
    that probe it, and each query keeps the best ``k`` it has met so far.

    :func:`_blocked_search` gathers every probed list once per query list, which costs as
    much for one query row in a list as for a thousand; here every list is read once.
    """
    order, starts = _members(index)
    probe = index.near.shape[1]
    asker = np.repeat(np.arange(len(queries)), probe)  # (query, probed list) pairs
    probed = index.near[index.lists[queries]].ravel()
    keep = probed >= 0
    asker, probed = asker[keep], probed[keep]
    by_list = np.argsort(probed, kind="stable")
    asker, probed = asker[by_list], probed[by_list]
    bounds = np.r_[0, np.flatnonzero(np.diff(probed)) + 1, len(probed)]
    sim = np.full((len(queries), k), -np.inf, np.float32)
    idx = np.full((len(queries), k), -1, np.int64)
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        c, who = probed[a], asker[a:b]
        rows = order[starts[c] : starts[c + 1]]
        if not len(rows):
            continue
        s, j = top_k(X[queries[who]], X[rows], min(k, len(rows)))
        both_s, both_j = np.concatenate([sim[who], s], 1), np.concatenate([idx[who], rows[j]], 1)
        best = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
        sim[who], idx[who] = np.take_along_axis(both_s, best, 1), np.take_along_axis(both_j, best, 1)
    short = idx < 0  # fewer than k rows in the probed lists: a far neighbour, as the full search gives
    idx[short] = ((queries[:, None] + 1) % X.shape[0]).repeat(k, 1)[short]
    return (1.0 - np.where(short, -1.0, sim)).astype(np.float32), idx


def _blocked_offers(
    X: np.ndarray, k: int, index: KnnIndex, stay: np.ndarray, fresh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``stay``, its ``k`` nearest among the ``fresh`` rows its list meets."""
    n = X.shape[0]
    order, starts = _members(index)
    is_stay, is_fresh = np.zeros(n, bool), np.zeros(n, bool)
    is_stay[stay], is_fresh[fresh] = True, True
    pos = np.full(n, -1, np.int64)
    pos[stay] = np.arange(len(stay))
    dist = np.full((len(stay), k), np.inf, np.float32)
    idx = np.full((len(stay), k), -1, np.int64)
    for r in np.unique(index.lists[stay]) if len(stay) else []:
        cand = np.concatenate([order[starts[j] : starts[j + 1]] for j in index.near[r] if j >= 0])
        cand = cand[is_fresh[cand]]
        if not len(cand):
            continue
        rows = order[starts[r] : starts[r + 1]]
        rows = rows[is_stay[rows]]
        m = min(k, len(cand))
        s, j = top_k(X[rows], X[cand], m)
        dist[pos[rows], :m], idx[pos[rows], :m] = 1.0 - s, cand[j]
    return dist, idx


def _merge(
    dist: np.ndarray, idx: np.ndarray, new_dist: np.ndarray, new_idx: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest of its current neighbours and the offered ones."""
    d = np.concatenate([dist, new_dist], axis=1)
    j = np.concatenate([idx, new_idx], axis=1)
    d = np.where(j < 0, np.inf, d)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), np.take_along_axis(j, order, 1)


def _drop_self(dist: np.ndarray, idx: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or, where an exact duplicate hid it, the farthest)."""
    n = idx.shape[0]
    is_self = idx == rows[:, None]
    drop = is_self & (np.cumsum(is_self, axis=1) == 1)
    drop[~is_self.any(axis=1), -1] = True
    d, j = dist[~drop].reshape(n, k), idx[~drop].reshape(n, k)
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(d, order, 1), np.take_along_axis(j, order, 1)
