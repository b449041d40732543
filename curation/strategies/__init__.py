"""Selection strategies: one ABC, a registry, one module per strategy."""

from __future__ import annotations

from curation.registry import Registry
from curation.strategies.base import SELECTION_COLUMNS, Pool, Ranked, Strategy

STRATEGIES: Registry[Strategy] = Registry("strategy")

from curation.strategies.hybrid import Hybrid  # noqa: E402
from curation.strategies.kcenter import KCenterGreedy  # noqa: E402
from curation.strategies.random_sampling import RandomSampling  # noqa: E402
from curation.strategies.typiclust import TypiClust  # noqa: E402
from curation.strategies.uncertainty import Entropy, LeastConfidence, Margin  # noqa: E402

for _cls in (RandomSampling, LeastConfidence, Margin, Entropy, KCenterGreedy, TypiClust, Hybrid):
    STRATEGIES.register(_cls)

__all__ = ["SELECTION_COLUMNS", "STRATEGIES", "Pool", "Ranked", "Strategy"]
