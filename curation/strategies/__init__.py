"""Selection strategies: one ABC, a registry, one module per strategy."""

from __future__ import annotations

from curation.registry import Registry
from curation.strategies.base import SELECTION_COLUMNS, Pool, Strategy

STRATEGIES: Registry[Strategy] = Registry("strategy")

from curation.strategies.kcenter import KCenterGreedy  # noqa: E402
from curation.strategies.random_sampling import RandomSampling  # noqa: E402

for _cls in (RandomSampling, KCenterGreedy):
    STRATEGIES.register(_cls)

__all__ = ["SELECTION_COLUMNS", "STRATEGIES", "Pool", "Strategy"]
