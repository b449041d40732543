"""The selection-strategy contract: one ABC, a fixed output shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

#: Every strategy returns these columns, one row per selected id, in priority order.
SELECTION_COLUMNS: dict[str, Any] = {
    "id": pl.String,
    "score": pl.Float64,
    "rank": pl.Int64,
    "reason": pl.String,
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
    """

    ids: np.ndarray
    embeddings: np.ndarray
    labeled: np.ndarray
    probs: np.ndarray | None = None
    seed: int = 0


def selection_table(ids: np.ndarray, idx: np.ndarray, score: np.ndarray, reason: str) -> pl.DataFrame:
    """The fixed-shape table for pool rows ``idx`` (already in priority order)."""
    return pl.DataFrame(
        {
            "id": ids[idx].astype(str),
            "score": np.asarray(score, dtype=np.float64),
            "rank": np.arange(1, len(idx) + 1, dtype=np.int64),
            "reason": [reason] * len(idx),
        },
        schema=SELECTION_COLUMNS,
    )


class Strategy(ABC):
    """A selection strategy: ``name`` and ``select(pool, budget) -> table``."""

    name: ClassVar[str]

    @abstractmethod
    def select(self, pool: Pool, budget: int) -> pl.DataFrame:
        """At most ``budget`` pool ids, best first, in the shape of ``SELECTION_COLUMNS``."""
