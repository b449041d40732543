"""The selection-strategy contract: one ABC, a fixed output shape.

A strategy ranks pool rows (:meth:`Strategy.rank`); :meth:`Strategy.select` is shared by
all of them and adds what every strategy offers: the budget check, optional class quotas
over the model's predicted classes, and reviews of suspected label errors among the labeled
rows (``review``): none, a fixed share of the budget, or a decision per round that gives each
annotation to the candidate, review or new row, with the highest expected gain
(:func:`expected_gains`, after cleanlab's ActiveLab).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

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

#: How a strategy spends its budget on reviews of suspected label errors (``strategy.review``).
ReviewMode = Literal["decision", "fixed", "none"]
REVIEW_MODES: tuple[str, ...] = ("decision", "fixed", "none")


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
        label-issue detector); a strategy that reviews (``review``) spends part of its
        budget on them.
    suspect_scores : numpy.ndarray or None
        Their label-quality scores (lower is worse), same order; ``None`` for zeros. The
        ``decision`` reads them as cleanlab's ``self_confidence``: the out-of-sample
        probability of the given label.
    verdicts : tuple of int
        Reviews of earlier suspects answered so far, and how many of them changed the
        label: the measured precision of the flags, which ``decision`` reads.
    """

    ids: np.ndarray
    embeddings: np.ndarray
    labeled: np.ndarray
    probs: np.ndarray | None = None
    seed: int = 0
    suspects: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    suspect_scores: np.ndarray | None = None
    verdicts: tuple[int, int] = (0, 0)


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


def activelab_scores(quality: np.ndarray, probs: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """ActiveLab scores, single annotator: lower means another annotation is worth more.

    For a labeled row with one annotation and label quality ``q`` (cleanlab's
    ``self_confidence``, the out-of-sample probability of its label) the score is
    ``(2 q + 1/K) / 3``; for a pool row with class probabilities ``p`` it is
    ``(max p + 1/K) / 2`` (``K`` classes). Both estimate how sure we are of the row's label
    from the model and the annotation so far, so a review and a new label compare in the
    same units. This is what ``cleanlab.multiannotator.get_active_learning_scores`` computes
    with one annotator per labeled row (model and annotator weights 1, no temperature), from
    the label qualities alone, which is all a :class:`Pool` carries for its suspects.

    Parameters
    ----------
    quality : numpy.ndarray
        Label quality of each labeled candidate (0 to 1).
    probs : numpy.ndarray
        ``(n, K)`` class probabilities of each pool candidate.
    n_classes : int
        ``K``.

    Returns
    -------
    tuple of numpy.ndarray
        The labeled candidates' scores and the pool candidates' scores.

    Examples
    --------
    >>> review, new = activelab_scores(np.array([0.01, 0.9]), np.array([[0.5, 0.5], [1.0, 0.0]]), 2)
    >>> review.round(3).tolist(), new.round(3).tolist()
    ([0.173, 0.767], [0.5, 0.75])
    """
    prior = 1.0 / n_classes
    review = (2.0 * np.asarray(quality, dtype=np.float64) + prior) / 3.0
    new = (np.asarray(probs, dtype=np.float64).max(axis=1, initial=0.0) + prior) / 2.0
    return review, new


def label_correct(quality: np.ndarray, noise: float, n_classes: int) -> np.ndarray:
    """The chance a label is right, from its label quality and the rate of label errors.

    Out-of-sample ``p(given label)`` is low for many right labels while the model knows few
    rows per class, so it is not itself the chance the label is right. With a prior error
    rate ``noise`` spread evenly over the other ``K - 1`` classes, Bayes' rule gives
    ``(1 - noise) q / ((1 - noise) q + noise (1 - q) / (K - 1))``.

    Parameters
    ----------
    quality : numpy.ndarray
        Label quality ``q`` (cleanlab's ``self_confidence``).
    noise : float
        The share of labels that are wrong (0 to 1).
    n_classes : int
        ``K``.

    Examples
    --------
    >>> label_correct(np.array([0.001, 0.01, 0.5]), 0.2, 77).round(3).tolist()
    [0.233, 0.754, 0.997]
    """
    right = (1.0 - noise) * quality
    wrong = noise * (1.0 - quality) / max(n_classes - 1, 1)
    out: np.ndarray = right / np.maximum(right + wrong, 1e-300)
    return out


def expected_gains(quality: np.ndarray, probs: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """What one more annotation is worth, in labels, for each suspect and each new row.

    A review that sets a wrong label right takes a harmful label out and puts a right one
    in: two labels, times the chance the label is wrong (:func:`label_correct`). A new row
    is one label when its annotation is right and minus one when it is wrong (at the rate
    ``noise``), so ``1 - 2 noise``, times how informative the row is against the batch's
    average (ActiveLab's score of the row, :func:`activelab_scores`: one minus the model's
    confidence, pulled towards 1/K).

    Parameters
    ----------
    quality : numpy.ndarray
        Label quality of each suspect (cleanlab's ``self_confidence``).
    probs : numpy.ndarray
        ``(n, K)`` class probabilities of each new row of the batch.
    noise : float
        The prior share of wrong labels.

    Returns
    -------
    tuple of numpy.ndarray
        The suspects' gains and the new rows' gains.

    Examples
    --------
    >>> review, new = expected_gains(np.array([1e-4, 0.9]), np.array([[0.5, 0.5], [0.9, 0.1]]), 0.2)
    >>> review.round(2).tolist(), new.round(2).tolist()
    ([2.0, 0.05], [0.75, 0.45])
    """
    k = probs.shape[1]
    _, new = activelab_scores(np.zeros(0), probs, k)
    right = label_correct(quality, noise, k)
    info = 1.0 - new
    worth = (1.0 - 2.0 * noise) * info / max(float(info.mean()), 1e-12) if len(info) else info
    return 2.0 * (1.0 - right), worth


def noise_estimate(flagged: int, labeled: int, reviewed: int = 0, corrected: int = 0) -> float:
    """The share of labels that are wrong: the flagged share times the flags' precision so far.

    The flagged share alone overstates the error rate while the model knows few rows per
    class (0.31 against 0.08 on 200 BANKING77 labels); reviewers' verdicts measure how many
    flags were errors. The precision is ``(corrected + 1) / (reviewed + 1)``: 1 before any
    review (the flagged share), the measured share once there are verdicts. The principled
    alternatives measured were worse (docs/strategies.md): cleanlab's calibrated estimate
    (``num_label_issues(..., "off_diagonal_calibrated") / n``) is higher still (0.35), and the
    rate that matches the suspects' mean posterior (:func:`label_correct`) collapses to about 0.
    At most 0.5.

    Examples
    --------
    >>> noise_estimate(60, 200), noise_estimate(60, 200, reviewed=19, corrected=7)
    (0.3, 0.12)
    """
    precision = (corrected + 1) / (reviewed + 1)
    return min(0.5, flagged / max(labeled, 1) * precision)


def review_count(review: np.ndarray, new: np.ndarray, budget: int) -> int:
    """How many of the ``budget`` highest gains of both candidate lists are reviews (a tie
    goes to the new row).

    Examples
    --------
    >>> review_count(np.array([0.9, 0.7, 0.5]), np.array([0.8, 0.6]), 3)
    2
    """
    gains = np.r_[new, review]
    is_review = np.r_[np.zeros(len(new), bool), np.ones(len(review), bool)]
    order = np.lexsort((is_review, -gains))[:budget]
    return int(is_review[order].sum())


class Strategy(ABC):
    """A selection strategy: ``name``, ``rank(pool, n)``, and the shared ``select``.

    Parameters
    ----------
    max_per_class : int, optional
        At most this many picks per predicted class in one batch (ignored at cold start,
        when there is no model); picks beyond the quota fall to the next in rank.
    review_share : float
        With ``review: fixed``, the fraction of the budget (0 to 1) spent on reviewing the
        worst suspected label errors of ``pool.suspects``; the rest goes to pool rows.
    review : {"decision", "fixed", "none"}, optional
        How the budget is split between reviews of ``pool.suspects`` and new pool rows.
        ``decision``: every round, each suspect and each row of the strategy's batch gets
        its expected gain (:func:`expected_gains`) and the budget goes to the highest
        (no reviews without a model); ``fixed``: ``review_share`` of the budget;
        ``none``: no reviews. Unset: ``fixed`` when ``review_share > 0``, else ``none``
        (what a loop file without ``review`` always did).
    """

    name: ClassVar[str]
    #: How many more candidates than the budget to rank when class quotas apply.
    quota_overdraw: ClassVar[int] = 4

    def __init__(
        self,
        *,
        max_per_class: int | None = None,
        review_share: float = 0.0,
        review: ReviewMode | None = None,
    ) -> None:
        self.max_per_class = max_per_class
        self.review_share = review_share
        self.review = review

    @abstractmethod
    def rank(self, pool: Pool, n: int) -> Ranked:
        """At most ``n`` pool row positions, best first, with scores and reasons."""

    @property
    def review_mode(self) -> str:
        """``review`` as set, or what an unset one means (``fixed`` or ``none``)."""
        if self.review is not None:
            return self.review
        return "fixed" if self.review_share > 0 else "none"

    def select(self, pool: Pool, budget: int) -> pl.DataFrame:
        """At most ``budget`` ids, best first, in the shape of ``SELECTION_COLUMNS``.

        Review rows (``kind == "review"``, labeled ids) come first, then pool rows.
        """
        check_pool(pool, budget)
        self._check_params()
        if self.review_mode == "decision":
            return self._decide(pool, budget)
        n_review = math.floor(self.review_share * budget) if self.review_mode == "fixed" else 0
        review = self._review(pool, np.arange(min(len(pool.suspects), n_review)))
        return _stack(review, self._new_rows(pool, budget - len(review)))

    def _new_rows(self, pool: Pool, n: int) -> pl.DataFrame:
        """The strategy's ``n`` best pool rows (with class quotas), as a selection table."""
        n = min(n, len(pool.ids))
        if n <= 0:
            return selection_table(pool.ids, np.array([], np.int64), np.array([]), [])
        if self.max_per_class is None or pool.probs is None:
            r = self.rank(pool, n)
        else:
            r = self._with_quota(self.rank(pool, min(len(pool.ids), n * self.quota_overdraw)), pool, n)
        return selection_table(pool.ids, r.idx[:n], r.score[:n], r.reason[:n])

    def _decide(self, pool: Pool, budget: int) -> pl.DataFrame:
        """Reviews and new rows by expected gain (:func:`expected_gains`); the pool rows keep
        the strategy's order. The prior noise rate is :func:`noise_estimate`."""
        new = self._new_rows(pool, budget)
        if pool.probs is None or not len(pool.suspects):
            return new
        quality = np.zeros(len(pool.suspects)) if pool.suspect_scores is None else pool.suspect_scores
        pos = {v: i for i, v in enumerate(pool.ids.astype(str))}
        noise = noise_estimate(len(pool.suspects), len(pool.labeled), *pool.verdicts)
        g_review, g_new = expected_gains(
            np.asarray(quality, dtype=np.float64), pool.probs[[pos[i] for i in new["id"]]], noise
        )
        n_review = review_count(g_review, g_new, budget)
        best = np.argsort(-g_review, kind="stable")[:n_review]
        bar = np.sort(g_new)[::-1][budget - n_review] if budget - n_review < len(g_new) else None
        than = f"the best new row left out ({bar:.2f})" if bar is not None else "no new row left"
        why = [f"; expected gain {g:.2f} labels, above {than}" for g in g_review[best]]
        kept = new.head(budget - n_review)
        reasons = [f"{r}; expected gain {g:.2f} labels" for r, g in zip(kept["reason"], g_new[: len(kept)])]
        return _stack(
            self._review(pool, best, why), kept.with_columns(pl.Series("reason", reasons, dtype=pl.String))
        )

    def _check_params(self) -> None:
        if not 0.0 <= self.review_share <= 1.0:
            raise ConfigError(
                f"expected a fraction from 0 to 1, got {self.review_share}", field="strategy.review_share"
            )
        if self.review is not None and self.review not in REVIEW_MODES:
            raise ConfigError(
                f"expected how to spend the budget on reviews, got {self.review!r}",
                field="strategy.review",
                choices=list(REVIEW_MODES),
            )
        if self.review in ("decision", "none") and self.review_share > 0:
            raise ConfigError(
                f"review_share {self.review_share} is read only with `review: fixed`, got `review: "
                f"{self.review}`; drop review_share or set review: fixed",
                field="strategy.review_share",
            )
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ConfigError(
                f"expected a positive count, got {self.max_per_class}", field="strategy.max_per_class"
            )

    def _review(self, pool: Pool, which: np.ndarray, why: Sequence[str] | None = None) -> pl.DataFrame:
        """Review rows for the suspects at positions ``which`` (in that order)."""
        known = pool.suspect_scores is not None
        scores = np.asarray(pool.suspect_scores)[which] if known else np.zeros(len(which))
        reasons = [
            f"review: suspected label error #{i + 1} of {len(pool.suspects)}"
            + (f", label quality {q:.3f}" if known else "")
            + (why[k] if why is not None else "")
            for k, (i, q) in enumerate(zip(which, scores))
        ]
        return selection_table(pool.suspects, which, scores, reasons, kind="review")

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


def _stack(review: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Reviews first, then new rows, ranked 1..n."""
    return pl.concat([review, new]).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank"))


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
