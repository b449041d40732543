"""The selection-strategy contract: one ABC, a fixed output shape.

A strategy ranks pool rows (:meth:`Strategy.rank`); :meth:`Strategy.select` is shared by
all of them and adds what every strategy offers: the budget check, optional class quotas
over the model's predicted classes, and a share of the budget spent on reviewing the worst
suspected label errors among the labeled rows.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import polars as pl

from curation.errors import ConfigError, DataError
from curation.support.registry import Registry

#: Every strategy returns these columns, one row per selected id, in priority order.
#: ``kind`` is ``label`` for a pool row to label and ``review`` for a labeled row whose
#: label is a suspected error. ``id`` is a String here; :func:`curation.select` gives it back
#: in the dtype of the ids it was given.
SELECTION_COLUMNS: dict[str, Any] = {
    "id": pl.String,
    "score": pl.Float64,
    "rank": pl.Int64,
    "reason": pl.String,
    "kind": pl.String,
}


@dataclass
class Pool:
    """What a strategy sees.

    Attributes
    ----------
    ids : numpy.ndarray
        Ids (strings) of the unlabeled rows that may be selected.
    embeddings : numpy.ndarray
        Their unit-norm float32 vectors, ``(len(ids), dim)``.
    labeled : numpy.ndarray
        Unit-norm vectors of the rows already labeled, ``(n_labeled, dim)``.
    probs : numpy.ndarray or None
        Class probabilities of the pool rows from a model fitted on the labeled rows
        (``None`` at cold start).
    seed : int
        Seed for any randomness.
    suspects : numpy.ndarray
        Ids of labeled rows whose label is a suspected error, worst first (from the
        label-issue detector); a strategy with ``review_share > 0`` spends part of its
        budget on them.
    suspect_scores : numpy.ndarray or None
        Their label-quality scores (lower is worse), same order; ``None`` for zeros.
    """

    ids: np.ndarray
    embeddings: np.ndarray
    labeled: np.ndarray
    probs: np.ndarray | None = None
    seed: int = 0
    suspects: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    suspect_scores: np.ndarray | None = None


@dataclass
class Ranked:
    """A strategy's ranking: pool row positions best first, each with its score and reason."""

    idx: np.ndarray
    score: np.ndarray
    reason: list[str]


def selection_table(
    ids: np.ndarray, idx: np.ndarray, score: np.ndarray, reason: str | Sequence[str], kind: str = "label"
) -> pl.DataFrame:
    """The fixed-shape table for rows ``idx`` of ``ids`` (already in priority order)."""
    reasons = [reason] * len(idx) if isinstance(reason, str) else list(reason)
    return pl.DataFrame(
        {
            "id": np.asarray(ids)[np.asarray(idx, dtype=np.int64)].astype(str),
            "score": np.asarray(score, dtype=np.float64),
            "rank": np.arange(1, len(idx) + 1, dtype=np.int64),
            "reason": reasons,
            "kind": [kind] * len(idx),
        },
        schema=SELECTION_COLUMNS,
    )


def check_pool(pool: Pool, budget: int) -> None:
    """Raise :class:`DataError` when the pool's parts disagree or the budget is not positive."""
    if budget < 1:
        raise DataError(
            f"budget must be a positive number of rows, got {budget}; set `budget` in the loop file"
        )
    X = pool.embeddings
    if X.ndim != 2 or len(X) != len(pool.ids):
        raise DataError(
            f"pool embeddings must be (len(ids), dim) = ({len(pool.ids)}, dim), "
            f"got {X.shape}; embed exactly the pool rows"
        )
    if len(pool.labeled) and pool.labeled.shape[1] != X.shape[1]:
        raise DataError(
            f"labeled embeddings have dim {pool.labeled.shape[1]}, the pool {X.shape[1]}; "
            "embed both with the same model"
        )
    if pool.probs is not None and len(pool.probs) != len(pool.ids):
        raise DataError(
            f"pool probabilities have {len(pool.probs)} rows for {len(pool.ids)} ids; "
            "predict exactly the pool rows"
        )


class Strategy(ABC):
    """A selection strategy: ``name``, ``rank(pool, n)``, and the shared ``select``.

    Parameters
    ----------
    max_per_class : int, optional
        At most this many picks per predicted class in one batch (ignored at cold start,
        when there is no model); picks beyond the quota fall to the next in rank.
    review_share : float
        The fraction of the budget (0 to 1) spent on reviewing the worst suspected label
        errors of ``pool.suspects``; the rest goes to pool rows.
    """

    name: ClassVar[str]
    #: How many more candidates than the budget to rank when class quotas apply.
    quota_overdraw: ClassVar[int] = 4

    def __init__(self, *, max_per_class: int | None = None, review_share: float = 0.0) -> None:
        self.max_per_class = max_per_class
        self.review_share = review_share

    @abstractmethod
    def rank(self, pool: Pool, n: int) -> Ranked:
        """At most ``n`` pool row positions, best first, with scores and reasons."""

    def select(self, pool: Pool, budget: int) -> pl.DataFrame:
        """At most ``budget`` ids, best first, in the shape of ``SELECTION_COLUMNS``.

        Review rows (``kind == "review"``, labeled ids) come first, then pool rows.
        """
        check_pool(pool, budget)
        self._check_params()
        n_review = min(len(pool.suspects), math.floor(self.review_share * budget))
        review = self._review(pool, n_review)
        n = min(budget - len(review), len(pool.ids))
        if n <= 0:
            return review
        if self.max_per_class is None or pool.probs is None:
            r = self.rank(pool, n)
        else:
            r = self._with_quota(self.rank(pool, min(len(pool.ids), n * self.quota_overdraw)), pool, n)
        table = selection_table(pool.ids, r.idx[:n], r.score[:n], r.reason[:n])
        return pl.concat([review, table]).with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank")
        )

    def _check_params(self) -> None:
        if not 0.0 <= self.review_share <= 1.0:
            raise ConfigError(
                f"expected a fraction from 0 to 1, got {self.review_share}", field="strategy.review_share"
            )
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ConfigError(
                f"expected a positive count, got {self.max_per_class}", field="strategy.max_per_class"
            )

    def _review(self, pool: Pool, n: int) -> pl.DataFrame:
        scores = np.zeros(n) if pool.suspect_scores is None else np.asarray(pool.suspect_scores)[:n]
        known = pool.suspect_scores is not None
        reasons = [
            f"review: suspected label error #{i + 1} of {len(pool.suspects)}"
            + (f", label quality {q:.3f}" if known else "")
            for i, q in enumerate(scores)
        ]
        return selection_table(pool.suspects, np.arange(n), scores, reasons, kind="review")

    def _with_quota(self, r: Ranked, pool: Pool, n: int) -> Ranked:
        """Keep rank order but at most ``max_per_class`` per predicted class; fill up after."""
        assert pool.probs is not None and self.max_per_class is not None
        pred = pool.probs[r.idx].argmax(1)
        counts: dict[int, int] = {}
        keep = np.zeros(len(r.idx), dtype=bool)
        for i, c in enumerate(pred):
            if counts.get(int(c), 0) < self.max_per_class:
                counts[int(c)] = counts.get(int(c), 0) + 1
                keep[i] = True
            if keep.sum() == n:
                break
        order = np.r_[np.flatnonzero(keep), np.flatnonzero(~keep)]
        reasons = [r.reason[i] + ("" if keep[i] else " (over class quota)") for i in order]
        return Ranked(r.idx[order], r.score[order], reasons)


def cold_start_fallback(name: str, pool: Pool, n: int) -> Ranked:
    """Rank with strategy ``name`` (default parameters) when there is no model yet."""
    r = STRATEGIES.create(name, {}, field="strategy.cold_start").rank(pool, n)
    return Ranked(r.idx, r.score, [f"cold start: {why}" for why in r.reason])


#: The strategies, by name (``strategy.name`` in a loop file).
STRATEGIES: Registry[Strategy] = Registry(
    "strategy",
    builtins=(
        "curation.strategies.random_sampling",
        "curation.strategies.uncertainty",
        "curation.strategies.kcenter",
        "curation.strategies.typiclust",
        "curation.strategies.hybrid",
    ),
)
