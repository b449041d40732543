"""Uncertainty sampling: least confidence, margin and entropy of the model's probabilities."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from curation.strategies.base import STRATEGIES, Pool, Ranked, ReviewMode, Strategy, cold_start_fallback


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """``1 - max p``: higher is more uncertain."""
    return 1.0 - probs.max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """``1 - (p1 - p2)`` over the two most likely classes: higher is more uncertain."""
    top2 = np.partition(probs, -2, axis=1)[:, -2:] if probs.shape[1] > 1 else np.c_[probs * 0, probs]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats: higher is more uncertain."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest and the second largest probability of each row.

    Examples
    --------
    >>> p1, p2 = top_two(np.array([[0.2, 0.5, 0.3]]))
    >>> float(p1[0]), float(p2[0])
    (0.5, 0.3)
    """
    if probs.shape[1] < 2:
        return probs[:, 0], np.zeros(len(probs))
    top = np.sort(np.partition(probs, -2, axis=1)[:, -2:], axis=1)
    return top[:, 1], top[:, 0]


def margin_reasons(probs: np.ndarray) -> list[str]:
    """Per row: its two most likely classes' probabilities and the gap between them.

    Examples
    --------
    >>> margin_reasons(np.array([[0.45, 0.4, 0.15]]))
    ['top two classes 0.45 vs 0.40 (margin 0.050)']
    """
    p1, p2 = top_two(probs)
    return [f"top two classes {a:.2f} vs {b:.2f} (margin {a - b:.3f})" for a, b in zip(p1, p2)]


class _Uncertainty(Strategy):
    """Rank pool rows by an uncertainty measure, most uncertain first.

    Parameters
    ----------
    cold_start : str
        The strategy to use while there is no model (``pool.probs is None``).
    max_per_class, review_share, review
        See :class:`~curation.strategies.base.Strategy`.
    """

    measure: ClassVar[str]

    def __init__(
        self,
        cold_start: str = "random",
        *,
        max_per_class: int | None = None,
        review_share: float = 0.0,
        review: ReviewMode | None = None,
    ) -> None:
        super().__init__(max_per_class=max_per_class, review_share=review_share, review=review)
        self.cold_start = cold_start

    def uncertainty(self, probs: np.ndarray) -> np.ndarray:
        """Per-row uncertainty, higher is more uncertain."""
        raise NotImplementedError

    def describe(self, probs: np.ndarray) -> list[str]:
        """Per row, what made it uncertain (the probabilities the measure read)."""
        return margin_reasons(probs)

    def rank(self, pool: Pool, n: int) -> Ranked:
        """The ``n`` most uncertain rows (ties broken at random by the seed)."""
        if pool.probs is None:
            return cold_start_fallback(self.cold_start, pool, n)
        u = self.uncertainty(pool.probs)
        tie = np.random.default_rng(pool.seed).random(len(u))
        idx = np.lexsort((tie, -u))[:n]
        return Ranked(
            idx, u[idx], [f"most uncertain ({self.measure}): {why}" for why in self.describe(pool.probs[idx])]
        )


@STRATEGIES.register
class LeastConfidence(_Uncertainty):
    """Lowest top-class probability first.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    >>> pool = Pool(np.array(["a", "b", "c"]), np.eye(3, 2, dtype=np.float32), np.zeros((0, 2)), p)
    >>> LeastConfidence().select(pool, 2)["id"].to_list()
    ['b', 'c']
    """

    name: ClassVar[str] = "least_confidence"
    measure: ClassVar[str] = "least confidence"

    def uncertainty(self, probs: np.ndarray) -> np.ndarray:
        return least_confidence(probs)

    def describe(self, probs: np.ndarray) -> list[str]:
        return [f"top class only {p:.3f}" for p in probs.max(axis=1)]


@STRATEGIES.register
class Margin(_Uncertainty):
    """Smallest gap between the two most likely classes first.

    Examples
    --------
    >>> p = np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1], [0.45, 0.45, 0.1]])
    >>> pool = Pool(np.array(["a", "b", "c"]), np.eye(3, dtype=np.float32), np.zeros((0, 3)), p)
    >>> Margin().select(pool, 2)["id"].to_list()
    ['c', 'a']
    """

    name: ClassVar[str] = "margin"
    measure: ClassVar[str] = "margin"

    def uncertainty(self, probs: np.ndarray) -> np.ndarray:
        return margin(probs)


@STRATEGIES.register
class Entropy(_Uncertainty):
    """Highest predictive entropy first.

    Examples
    --------
    >>> p = np.array([[0.9, 0.05, 0.05], [0.34, 0.33, 0.33]])
    >>> pool = Pool(np.array(["a", "b"]), np.eye(2, 3, dtype=np.float32), np.zeros((0, 3)), p)
    >>> Entropy().select(pool, 1)["id"].to_list()
    ['b']
    """

    name: ClassVar[str] = "entropy"
    measure: ClassVar[str] = "entropy"

    def uncertainty(self, probs: np.ndarray) -> np.ndarray:
        return entropy(probs)

    def describe(self, probs: np.ndarray) -> list[str]:
        most = np.log(max(probs.shape[1], 2))
        return [
            f"entropy {h:.2f} of at most {most:.2f} nats, top class {p:.2f}"
            for h, p in zip(entropy(probs), probs.max(axis=1))
        ]
