"""Random sampling: the baseline every strategy must beat."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from curation.strategies.base import STRATEGIES, Pool, Ranked, Strategy


@STRATEGIES.register
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

    def rank(self, pool: Pool, n: int) -> Ranked:
        """A uniform random sample, in random order (score 0)."""
        idx = np.random.default_rng(pool.seed).permutation(len(pool.ids))[:n]
        return Ranked(idx, np.zeros(len(idx)), ["random sample"] * len(idx))
