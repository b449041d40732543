"""Hybrid: shortlist the most uncertain rows, then diversify inside the shortlist.

Cluster-Margin style (Citovsky et al., 2021): take the ``shortlist * budget`` pool rows with
the smallest margin, split them into ``budget`` k-means clusters, and take the most
uncertain row of each cluster, so a batch is uncertain but not redundant. With no model
yet (cold start) it uses ``cold_start`` (TypiClust by default).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from sklearn.cluster import KMeans

from curation.strategies.base import Pool, Ranked, Strategy, cold_start_fallback
from curation.strategies.kcenter import kcenter_greedy
from curation.strategies.uncertainty import margin


class Hybrid(Strategy):
    """Uncertainty shortlist, diversity inside it.

    Parameters
    ----------
    shortlist : int
        The shortlist holds ``shortlist * budget`` rows (the most uncertain by margin).
    diversify : {"kmeans", "kcenter"}
        ``kmeans``: ``budget`` clusters of the shortlist, the most uncertain row of each;
        ``kcenter``: greedy k-center inside the shortlist, away from the labeled rows.
    cold_start : str
        The strategy to use while there is no model.
    max_per_class, review_share
        See :class:`~curation.strategies.base.Strategy`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 8)).astype(np.float32)
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> p = rng.dirichlet(np.ones(3), 40)
    >>> pool = Pool(np.arange(40).astype(str), X, X[:0], p)
    >>> len(Hybrid(shortlist=3).select(pool, 5))
    5
    """

    name: ClassVar[str] = "hybrid"

    def __init__(self, shortlist: int = 10, diversify: Literal["kmeans", "kcenter"] = "kmeans",
                 cold_start: str = "typiclust", pick: str = "uncertain", *, max_per_class: int | None = None,
                 review_share: float = 0.0) -> None:
        super().__init__(max_per_class=max_per_class, review_share=review_share)
        self.shortlist = shortlist
        self.diversify = diversify
        self.cold_start = cold_start
        self.pick = pick

    def rank(self, pool: Pool, n: int) -> Ranked:
        """``n`` diverse rows from the margin shortlist."""
        if pool.probs is None:
            return cold_start_fallback(self.cold_start, pool, n)
        u = margin(pool.probs)
        tie = np.random.default_rng(pool.seed).random(len(u))
        short = np.lexsort((tie, -u))[:max(n, self.shortlist * n)]
        if len(short) <= n:
            return Ranked(short, u[short], ["most uncertain (margin), shortlist exhausted"] * len(short))
        X = pool.embeddings[short]
        if self.diversify == "kcenter":
            pick, _ = kcenter_greedy(X, n, pool.labeled, first=0, precision="float32")
            why = "uncertain (margin shortlist), farthest from labeled and selected"
        else:
            km = KMeans(n, n_init=1, random_state=pool.seed).fit(X)
            # the most uncertain member of each cluster; clusters ordered by that uncertainty
            best = {}
            if self.pick == "typical":
                from curation.strategies.typiclust import typicality_in
                dc = -typicality_in(X, pool.embeddings, 20)
                for i, c in enumerate(km.labels_):
                    if c not in best or dc[i] < dc[best[c]]:
                        best[c] = i
            if self.pick == "centroid":
                dc = ((X - km.cluster_centers_[km.labels_]) ** 2).sum(1)
                for i, c in enumerate(km.labels_):
                    if c not in best or dc[i] < dc[best[c]]:
                        best[c] = i
            for i, c in enumerate(km.labels_):
                if self.pick in ("centroid", "typical"):
                    break
                if c not in best or u[short[i]] > u[short[best[c]]]:
                    best[c] = i
            pick = np.array(sorted(best.values(), key=lambda i: -u[short[i]]), dtype=np.int64)
            why = "uncertain (margin shortlist), most uncertain of its cluster"
        idx = short[pick]
        return Ranked(idx, u[idx], [why] * len(idx))
