"""The strategy contract: one suite (a class every strategy's test class inherits), every
registered strategy (tests/contracts/test_meta.py checks that none is missing)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from curation.errors import ConfigError, DataError
from curation.strategies.base import SELECTION_COLUMNS, STRATEGIES, Strategy
from tests.support.pools import make_pool


class StrategyContract:
    """What every strategy promises. A test class sets ``name`` and ``params``."""

    name: str
    params: dict = {}
    #: Whether each pick's reason says something about that row (random's cannot).
    per_row_reasons: bool = True

    def make(self, **extra: object) -> Strategy:
        return STRATEGIES.create(self.name, {**self.params, **extra})

    @pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold-start"])
    def test_shape_budget_unique_pool_ids(self, cold: bool) -> None:
        pool = make_pool(cold=cold)
        sel = self.make().select(pool, 17)
        assert sel.schema == pl.Schema(SELECTION_COLUMNS)
        assert len(sel) == 17
        assert sel["id"].n_unique() == 17
        assert set(sel["id"]) <= set(pool.ids)
        assert sel["rank"].to_list() == list(range(1, 18))
        assert (sel["kind"] == "label").all()
        assert sel["score"].is_finite().all()
        assert all(isinstance(r, str) and len(r) > 3 for r in sel["reason"])

    def test_each_pick_has_its_own_reason(self) -> None:
        sel = self.make().select(make_pool(), 12)
        assert sel["reason"].n_unique() > (6 if self.per_row_reasons else 0), sel["reason"].to_list()

    def test_deterministic_with_seed(self) -> None:
        a = self.make().select(make_pool(), 12)
        b = self.make().select(make_pool(), 12)
        assert a.equals(b)

    def test_budget_above_pool_size_takes_the_whole_pool(self) -> None:
        pool = make_pool(n=20)
        sel = self.make().select(pool, 50)
        assert sorted(sel["id"]) == sorted(pool.ids)

    def test_no_labeled_rows_and_no_model(self) -> None:
        pool = make_pool(n_labeled=0, cold=True)
        pool.labeled = np.zeros((0, pool.embeddings.shape[1]), np.float32)
        assert self.make().select(pool, 8)["id"].n_unique() == 8

    def test_review_share_goes_first_to_worst_suspects(self) -> None:
        pool = make_pool()
        pool.suspects = np.array(["lab-3", "lab-7", "lab-1"])
        pool.suspect_scores = np.array([0.01, 0.02, 0.05])
        sel = self.make(review_share=0.2).select(pool, 10)
        assert sel["kind"].to_list() == ["review"] * 2 + ["label"] * 8
        assert sel["id"].head(2).to_list() == ["lab-3", "lab-7"]
        assert set(sel["id"].tail(8)) <= set(pool.ids)

    def test_review_decision_reviews_surely_wrong_labels_first(self) -> None:
        pool = make_pool()
        pool.suspects = np.array(["lab-3", "lab-7", "lab-1"])
        pool.suspect_scores = np.array([1e-4, 2e-4, 0.99])  # two surely wrong, one surely right
        sel = self.make(review="decision").select(pool, 10)
        assert sel["kind"].to_list() == ["review"] * 2 + ["label"] * 8
        assert sel["id"].head(2).to_list() == ["lab-3", "lab-7"]
        assert set(sel["id"].tail(8)) <= set(pool.ids)
        assert sel["rank"].to_list() == list(range(1, 11))

    def test_class_quota_caps_each_predicted_class(self) -> None:
        pool = make_pool()
        pred = dict(zip(pool.ids, pool.probs.argmax(1)))
        sel = self.make(max_per_class=3).select(pool, 12)
        counts = np.bincount([pred[i] for i in sel["id"]], minlength=4)
        assert len(sel) == 12 and counts.max() <= 3

    def test_bad_budget_and_bad_params_raise(self) -> None:
        with pytest.raises(DataError, match="budget"):
            self.make().select(make_pool(), 0)
        with pytest.raises(ConfigError, match="review_share"):
            self.make(review_share=1.5).select(make_pool(), 5)
        with pytest.raises(ConfigError, match=r"strategy\.review.*valid choices: decision, fixed, none"):
            STRATEGIES.get(self.name)(**self.params, review="sometimes").select(make_pool(), 5)


class TestRandom(StrategyContract):
    name = "random"
    per_row_reasons = False


class TestLeastConfidence(StrategyContract):
    name = "least_confidence"


class TestMargin(StrategyContract):
    name = "margin"


class TestEntropy(StrategyContract):
    name = "entropy"


class TestKCenter(StrategyContract):
    name = "kcenter"


class TestKCenterFloat32(StrategyContract):
    name = "kcenter"
    params = {"precision": "float32"}


class TestTypiClust(StrategyContract):
    name = "typiclust"
    params = {"min_cluster_size": 2}


class TestHybrid(StrategyContract):
    name = "hybrid"
    params = {"shortlist": 3}


class TestHybridKCenter(StrategyContract):
    name = "hybrid"
    params = {"shortlist": 3, "diversify": "kcenter"}
