"""Selection strategies: what each one promises beyond the shared contract (tests/contracts)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import polars as pl
import pytest

from curation.errors import ConfigError, RegistryError
from curation.strategies.base import STRATEGIES, Pool
from curation.strategies.hybrid import Hybrid
from curation.strategies.kcenter import covering_radius, kcenter_greedy, min_sq_dist
from curation.strategies.typiclust import TypiClust
from curation.strategies.uncertainty import entropy, least_confidence, margin
from tests.support.pools import blobs, make_pool, unit


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(RegistryError, match="hybrid"):
        STRATEGIES.create("nope")


def test_uncertainty_measures_order_rows() -> None:
    p = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])
    assert np.argsort(-least_confidence(p)).tolist() == [1, 2, 0]
    assert np.argsort(-margin(p)).tolist() == [2, 1, 0]
    assert np.argsort(-entropy(p)).tolist() == [1, 2, 0]


def test_cold_start_fallback_says_so() -> None:
    sel = STRATEGIES.create("margin").select(make_pool(cold=True), 5)
    assert all(r.startswith("cold start: ") for r in sel["reason"])


def brute_greedy(X: np.ndarray, k: int, first: int) -> list[int]:
    """Textbook greedy farthest-point with the full pairwise distance matrix."""
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    picks = [first]
    for _ in range(k - 1):
        picks.append(int(np.argmax(D[:, picks].min(axis=1))))
    return picks


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_kcenter_matches_brute_force_greedy(precision: str) -> None:
    X = unit(np.random.default_rng(1).normal(size=(300, 24)))
    idx, dist = kcenter_greedy(X, 25, first=7, precision=precision)
    assert idx.tolist() == brute_greedy(X, 25, 7)
    exact = min_sq_dist(X[idx[1:]], X[idx[:1]])
    assert dist[1] == pytest.approx(exact[0], abs=0.01)


def plain_greedy(X: np.ndarray, k: int, first: int, mind: np.ndarray | None = None) -> list[int]:
    """One matrix-vector product per pick: the definition the batched picks must equal."""
    mind = np.full(len(X), np.inf) if mind is None else mind.astype(np.float64)
    picks = []
    for _ in range(k):
        p = first if not np.isfinite(mind).any() else int(np.argmax(mind))
        picks.append(p)
        mind = np.minimum(mind, 2.0 - 2.0 * (X.astype(np.float64) @ X[p].astype(np.float64)))
        mind[p] = -1.0
    return picks


@pytest.mark.parametrize("candidates", [1, 7, 64, 5000])
def test_batched_kcenter_picks_exactly_the_plain_greedy_ones(candidates: int) -> None:
    rng = np.random.default_rng(5)
    X = unit(rng.normal(size=(3000, 16)))
    labeled = unit(rng.normal(size=(5, 16)))
    idx, dist = kcenter_greedy(X, 120, first=11, candidates=candidates)
    assert idx.tolist() == plain_greedy(X, 120, 11)
    assert dist[0] == 4.0 and np.all(np.diff(dist[1:]) <= 1e-6)  # greedy distances never grow
    idx, _ = kcenter_greedy(X, 60, centers=labeled, candidates=candidates)
    assert idx.tolist() == plain_greedy(X, 60, 0, min_sq_dist(X, labeled))


@pytest.mark.parametrize("candidates", [1, 8, 512])
def test_batched_kcenter_takes_the_whole_pool_without_repeats(candidates: int) -> None:
    X = unit(np.random.default_rng(6).normal(size=(40, 8)))
    idx, _ = kcenter_greedy(X, 40, candidates=candidates)
    assert sorted(idx.tolist()) == list(range(40))
    dup = np.repeat(X[:10], 5, axis=0)  # 10 distinct rows, 5 copies each: distances of 0 (or -1e-7)
    idx, dist = kcenter_greedy(dup, 50, candidates=candidates)
    assert sorted(idx.tolist()) == list(range(50))
    assert len({i // 5 for i in idx[:10]}) == 10 and np.all(dist[10:] < 1e-5)


def test_kcenter_radius_within_twice_optimal() -> None:
    X = unit(np.random.default_rng(2).normal(size=(14, 3)))
    opt = min(covering_radius(X, X[list(c)]) for c in itertools.combinations(range(14), 3))
    idx, _ = kcenter_greedy(X, 3)
    assert opt <= covering_radius(X, X[idx]) <= 2 * opt


def test_kcenter_int8_radius_close_to_exact() -> None:
    X = unit(np.random.default_rng(3).normal(size=(20_000, 64)))
    exact, _ = kcenter_greedy(X, 100, precision="float32")
    fast, _ = kcenter_greedy(X, 100, precision="int8")
    assert covering_radius(X, X[fast]) <= 1.01 * covering_radius(X, X[exact])


def test_kcenter_starts_away_from_labeled() -> None:
    X, blob = blobs(30, 3)
    pool = Pool(np.arange(60).astype(str), X[30:], X[:30])
    picks = STRATEGIES.create("kcenter").select(pool, 2)["id"].cast(pl.Int64).to_numpy()
    assert set(blob[30 + picks]) == {1, 2}


def test_typiclust_cold_start_covers_every_blob_with_a_typical_row() -> None:
    X, blob = blobs(40, 5)
    pool = Pool(np.arange(len(X)).astype(str), X, X[:0])
    sel = TypiClust().select(pool, 5)["id"].cast(pl.Int64).to_numpy()
    assert sorted(blob[sel]) == [0, 1, 2, 3, 4]
    for i in sel:  # the pick sits near its blob's centre, not on its rim
        same = X[blob == blob[i]]
        assert np.linalg.norm(X[i] - same.mean(0)) <= np.median(np.linalg.norm(same - same.mean(0), axis=1))


def test_hybrid_picks_from_the_margin_shortlist_and_spreads_over_blobs() -> None:
    X, blob = blobs(50, 4)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.3, len(X))
    pool = Pool(np.arange(len(X)).astype(str), X, X[:0], probs)
    sel = Hybrid(shortlist=5).select(pool, 8)["id"].cast(pl.Int64).to_numpy()
    short = np.argsort(-margin(probs))[:40]
    assert set(sel) <= set(short)
    assert len(set(blob[sel])) == len(set(blob[short]))


def test_hybrid_keeps_its_cold_start_until_the_model_trusts_itself() -> None:
    X, _ = blobs(50, 4)
    unsure = np.full((len(X), 4), 0.25) + np.random.default_rng(1).uniform(0, 0.02, (len(X), 4))
    unsure /= unsure.sum(1, keepdims=True)  # mean top-class probability about 0.26
    pool = Pool(np.arange(len(X)).astype(str), X, X[:0], unsure)
    sel = Hybrid(shortlist=5).select(pool, 8)
    cold = TypiClust().select(Pool(pool.ids, X, X[:0]), 8)
    assert sel["id"].to_list() == cold["id"].to_list()
    assert sel["reason"].str.contains(r"not trusted yet \(mean top-class probability 0\.2\d < 0\.5\)").all()
    sure = Hybrid(shortlist=5, trust=0.2).select(pool, 8)  # the same model, trusted: margins decide
    assert sure["reason"].str.starts_with("uncertain").all()
    with pytest.raises(ConfigError, match=r"strategy\.trust"):
        Hybrid(trust=1.5)


@pytest.mark.slow
def test_partitioned_kcenter_over_ray_blocks_covers_like_single_machine(ray_local: None) -> None:
    import ray

    from curation.strategies.kcenter import kcenter_partitioned

    X, _ = blobs(500, 8, dim=32, seed=4)
    ds = ray.data.from_items([{"id": i, "embedding": x} for i, x in enumerate(X)]).repartition(4)
    got = kcenter_partitioned(ds, 16, block_rows=1000)
    assert len(got["id"]) == 16 and len(set(got["id"].tolist())) == 16
    assert np.allclose(got["embedding"], X[got["id"]])
    single, _ = kcenter_greedy(X, 16)
    assert covering_radius(X, got["embedding"]) <= 2 * covering_radius(X, X[single])


def test_hybrid_reasons_give_each_rows_margin_and_cluster_size() -> None:
    X, _ = blobs(50, 4)
    probs = np.random.default_rng(0).dirichlet(np.ones(4) * 0.3, len(X))
    pool = Pool(np.arange(len(X)).astype(str), X, X[:0], probs)
    sel = Hybrid(shortlist=5).select(pool, 8)
    sizes = []
    for i, why in zip(sel["id"].cast(pl.Int64), sel["reason"]):
        m = re.fullmatch(
            r"uncertain, top two classes ([\d.]+) vs ([\d.]+) \(margin ([\d.]+)\); most typical of "
            r"shortlist cluster (\d+), which holds (\d+) of the 40 shortlisted rows",
            why,
        )
        assert m, why
        p = np.sort(probs[i])[::-1]
        assert float(m[1]) == pytest.approx(p[0], abs=0.005)
        assert float(m[3]) == pytest.approx(p[0] - p[1], abs=5e-4)
        sizes.append(int(m[5]))
    assert sum(sizes) == 40  # one pick per cluster: the clusters' sizes add up to the shortlist
    by_kcenter = Hybrid(shortlist=5, diversify="kcenter").select(pool, 8)["reason"]
    assert "first pick: nothing labeled or selected yet" in by_kcenter[0]  # nothing labeled in this pool
    assert by_kcenter.tail(7).str.contains(r"distance \d\.\d{3} to the nearest").all()


def test_review_reasons_give_each_suspects_place_and_label_quality() -> None:
    pool = make_pool()
    pool.suspects = np.array(["lab-3", "lab-7", "lab-1"])
    pool.suspect_scores = np.array([0.01, 0.02, 0.05])
    sel = STRATEGIES.create("margin", {"review_share": 0.2}).select(pool, 10)
    assert sel["reason"].head(2).to_list() == [
        "review: suspected label error #1 of 3, label quality 0.010",
        "review: suspected label error #2 of 3, label quality 0.020",
    ]
