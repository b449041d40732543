"""Random sampling: the baseline every strategy must beat."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from curation.strategies.base import Pool, Strategy, selection_table


class RandomSampling(Strategy):
    """Pick ``budget`` pool rows uniformly at random.

    Examples
    --------
    >>> import numpy as np
    >>> pool = Pool(np.array(["a", "b", "c"]), np.eye(3, dtype=np.float32), np.zeros((0, 3)))
    >>> len(RandomSampling().select(pool, 2))
    2
    """

    name: ClassVar[str] = "random"

    def select(self, pool: Pool, budget: int) -> pl.DataFrame:
        """A uniform random sample, in random order (score 0)."""
        n = min(budget, len(pool.ids))
        idx = np.random.default_rng(pool.seed).permutation(len(pool.ids))[:n]
        return selection_table(pool.ids, idx, np.zeros(n), "random sample")
