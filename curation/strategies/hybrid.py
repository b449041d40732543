"""Hybrid: shortlist the most uncertain rows, then diversify inside the shortlist.

Cluster-Margin style (Citovsky et al., 2021): take the ``shortlist * budget`` pool rows with
the smallest margin, split them into ``budget`` k-means clusters, and take the most typical
row of each cluster (TypiClust's density, Hacohen et al., 2022), so a batch is uncertain,
not redundant, and not made of outliers. While there is no model (cold start), or while the
model does not yet trust itself (its mean top-class probability over the pool is below
``trust``: it expects to be wrong on most rows, so its margins do not locate the class
boundaries), it uses ``cold_start`` (TypiClust by default). In the three regimes of
``benchmarks/active_learning.py`` this is within 0.005 AULC of the best strategy and never
below random (docs/strategies.md).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from curation.errors import ConfigError
from curation.strategies.base import STRATEGIES, Pool, Ranked, ReviewMode, Strategy, cold_start_fallback
from curation.strategies.kcenter import far_reason, kcenter_greedy
from curation.strategies.typiclust import kmeans_labels, typicality_in
from curation.strategies.uncertainty import margin, margin_reasons


@STRATEGIES.register
class Hybrid(Strategy):
    """Uncertainty shortlist, diversity inside it.

    Parameters
    ----------
    shortlist : int
        The shortlist holds ``shortlist * budget`` rows (the most uncertain by margin).
    diversify : {"kmeans", "kcenter"}
        ``kmeans``: ``budget`` k-means clusters of the shortlist, one row of each (see
        ``pick``); ``kcenter``: greedy k-center inside the shortlist, away from the labeled rows.
    pick : {"typical", "uncertain"}
        Which row of a cluster: the most typical (densest among all pool rows, so not an
        outlier), or the most uncertain.
    knn : int
        Neighbours for typicality.
    cold_start : str
        The strategy to use while there is no model, or one not trusted yet.
    trust : float
        Switch from ``cold_start`` to the margin shortlist once the model's mean top-class
        probability over the pool reaches this; 0 switches as soon as there is a model.
    max_per_class, review_share, review
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
    >>> Hybrid(trust=0.9).select(pool, 5)["reason"][0].startswith("cold start")
    True
    """

    name: ClassVar[str] = "hybrid"

    def __init__(
        self,
        shortlist: int = 5,
        diversify: Literal["kmeans", "kcenter"] = "kmeans",
        pick: Literal["typical", "uncertain"] = "typical",
        knn: int = 20,
        cold_start: str = "typiclust",
        trust: float = 0.5,
        *,
        max_per_class: int | None = None,
        review_share: float = 0.0,
        review: ReviewMode | None = None,
    ) -> None:
        super().__init__(max_per_class=max_per_class, review_share=review_share, review=review)
        self.shortlist = shortlist
        self.diversify = diversify
        self.cold_start = cold_start
        if not 0.0 <= trust <= 1.0:
            raise ConfigError(f"strategy.trust must be a probability in [0, 1], got {trust}")
        self.trust = trust
        self.pick = pick
        self.knn = knn

    def rank(self, pool: Pool, n: int) -> Ranked:
        """``n`` diverse rows from the margin shortlist; each reason gives the row's margin and
        how it was picked (its cluster and the cluster's size, or its distance)."""
        if pool.probs is None:
            return cold_start_fallback(self.cold_start, pool, n)
        confidence = float(pool.probs.max(axis=1).mean()) if len(pool.probs) else 1.0
        if confidence < self.trust:
            r = cold_start_fallback(self.cold_start, pool, n)
            note = (
                f"; the model is not trusted yet (mean top-class probability {confidence:.2f} < {self.trust})"
            )
            return Ranked(r.idx, r.score, [why + note for why in r.reason])
        u = margin(pool.probs)
        why = margin_reasons(pool.probs)
        tie = np.random.default_rng(pool.seed).random(len(u))
        short = np.lexsort((tie, -u))[: max(n, self.shortlist * n)]
        if len(short) <= n:
            return Ranked(short, u[short], [f"uncertain, {why[i]}; shortlist exhausted" for i in short])
        X = pool.embeddings[short]
        if self.diversify == "kcenter":
            pick, dist = kcenter_greedy(X, n, pool.labeled, first=0, precision="float32")
            return Ranked(
                short[pick],
                u[short[pick]],
                [
                    f"uncertain, {why[short[i]]}; in the shortlist of {len(short)}, {far_reason(d)}"
                    for i, d in zip(pick, dist)
                ],
            )
        cluster = kmeans_labels(X, n, pool.seed)
        if self.pick == "typical":
            key, how = typicality_in(X, pool.embeddings, self.knn, seed=pool.seed), "most typical"
        else:
            key, how = u[short], "most uncertain"
        best: dict[int, int] = {}
        for i, c in enumerate(cluster):
            if c not in best or key[i] > key[best[c]]:
                best[c] = i
        pick = np.array(sorted(best.values(), key=lambda i: -u[short[i]]), dtype=np.int64)
        size = np.bincount(cluster, minlength=n)
        idx = short[pick]
        reasons = [
            f"uncertain, {why[short[i]]}; {how} of shortlist cluster {cluster[i]}, "
            f"which holds {size[cluster[i]]} of the {len(short)} shortlisted rows"
            for i in pick
        ]
        return Ranked(idx, u[idx], reasons)
