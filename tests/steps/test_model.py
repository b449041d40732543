"""The loop's classifier: ``logreg_cv`` chooses its regularization on the round's labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curation.steps.cv_logreg import CVLogisticRegression
from curation.steps.embed import embed
from curation.steps.model import MODELS, accuracy, fit_predict_proba

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def banking(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """BANKING77 test split (3,080 rows, 77 intents): real MiniLM embeddings and label codes."""
    df = pl.read_parquet(data_dir / "banking77_test.parquet")
    classes = sorted(df["label"].unique().to_list())
    X = embed(df["text"].to_list(), ids=df["id"].to_list(), root=ROOT, engine="local")
    return X, np.array([classes.index(v) for v in df["label"].to_list()])


def test_few_labels_get_a_weaker_penalty_and_a_better_model(banking: tuple[np.ndarray, np.ndarray]) -> None:
    # 200 random labels over 77 intents (about 2.6 each, unevenly): a fixed C=10 lets the
    # intercepts, i.e. the labeled class counts, dominate; measured +0.034 on 3 seeds.
    X, y = banking
    gains = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(y))
        train, test = order[:200], order[1500:]
        assert CVLogisticRegression(random_state=seed).fit(X[train], y[train]).C_ > 10
        fixed = accuracy(X[train], y[train], X[test], y[test], 77, seed, "logreg")
        chosen = accuracy(X[train], y[train], X[test], y[test], 77, seed, "logreg_cv")
        gains.append(chosen - fixed)
    assert min(gains) > 0 and np.mean(gains) > 0.015, gains


def test_many_labels_keep_a_stronger_penalty(banking: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = banking
    order = np.random.default_rng(0).permutation(len(y))[:1500]
    assert CVLogisticRegression(random_state=0).fit(X[order], y[order]).C_ < 100


def test_too_few_rows_for_folds_fall_back_and_still_predict() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4))
    est = CVLogisticRegression(fallback_c=7.0, random_state=0).fit(X, np.array([0, 0, 0, 0, 1]))
    assert est.C_ == 7.0  # a fold would train on class 0 alone
    probs = fit_predict_proba(X, np.array([0, 0, 1, 1, 1]), X, 3, model="logreg_cv")
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1) and (probs[:, 2] == 0).all()


def test_every_model_fits_and_the_loop_defaults_to_logreg_knn() -> None:
    from curation.config import LoopConfig

    assert LoopConfig.model_fields["model"].default == "logreg_knn"
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), np.repeat([0, 1], 20)
    X[y == 1] += 3
    for name in MODELS:
        assert accuracy(X, y, X, y, 2, model=name) > 0.9, name


def test_self_training_pseudo_labels_only_the_rows_it_is_given() -> None:
    from curation.steps.model import fit_model

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), np.repeat([0, 1], 20)
    X[y == 1] += 3
    lab = np.array([0, 2, 20, 22])
    alone = fit_model(X[lab], y[lab], 2, model="self_train").estimator_
    assert alone.n_pseudo_ == 0  # without unlabeled rows: its supervised first step
    pooled = fit_model(X[lab], y[lab], 2, model="self_train", unlabeled=X[10:]).estimator_
    assert pooled.n_pseudo_ == 30
    assert pooled.predict_proba(X).shape == (40, 2) and (pooled.predict(X[10:]) == y[10:]).mean() > 0.9
    plain = fit_model(X, y, 2, model="logreg", unlabeled=X[10:]).estimator_  # not semi-supervised
    assert plain.n_features_in_ == 4 and not hasattr(plain, "n_pseudo_")


def test_a_pool_past_the_cap_is_sampled_before_stacking_as_the_estimator_would_sample_it() -> None:
    from curation.steps.model import fit_model
    from curation.steps.self_training import SelfTraining

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_405, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    lab, pool = np.arange(400), np.arange(400, len(X))  # 20,005 pool rows: past the cap of 20,000
    capped = fit_model(X[lab], y[lab], 2, 3, "self_train", unlabeled=X[pool]).estimator_
    whole = SelfTraining(random_state=3).fit(X[np.r_[lab, pool]], np.r_[y[lab], np.full(len(pool), -1)])
    assert capped.n_pseudo_ == whole.n_pseudo_ == 20_000
    assert np.array_equal(capped.predict_proba(X[:50]), whole.predict_proba(X[:50]))


def test_neighbour_smoothing_beats_the_plain_model_while_labels_are_few(
    banking: tuple[np.ndarray, np.ndarray],
) -> None:
    # 400 random labels of 77 intents, the other rows of the first 2,000 as the pool, the last
    # 1,080 held out: the pool neighbours' mean prediction corrects the lone linear model.
    X, y = banking
    gains = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(y))
        train, pool, test = order[:400], order[400:2000], order[2000:]
        plain = accuracy(X[train], y[train], X[test], y[test], 77, seed, "logreg_cv")
        smoothed = accuracy(X[train], y[train], X[test], y[test], 77, seed, "logreg_knn", X[pool])
        gains.append(smoothed - plain)
    assert min(gains) > 0 and np.mean(gains) > 0.005, gains  # measured +0.005, +0.010, +0.011


def test_neighbour_smoothing_reads_the_kept_rows_and_without_weight_is_the_plain_model() -> None:
    from curation.errors import ConfigError
    from curation.steps.semi_supervised import UNLABELED
    from curation.steps.smoothing import NeighbourSmoothing

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.3, (30, 2)) + [3, 0], rng.normal(0, 0.3, (30, 2)) + [0, 3]]
    y = np.full(60, UNLABELED)
    y[[0, 1, 30, 31]] = [0, 0, 1, 1]
    plain = NeighbourSmoothing(alpha=0.0, random_state=0).fit(X, y)
    base = CVLogisticRegression(random_state=0).fit(X[[0, 1, 30, 31]], y[[0, 1, 30, 31]])
    assert np.allclose(plain.predict_proba(X), base.predict_proba(X))
    # a query halfway between the clusters, a little nearer class 1's rows: the plain model is
    # unsure, its neighbours (all of class 1's cluster) are not
    est = NeighbourSmoothing(alpha=0.5, k=5, random_state=0).fit(X, y)
    q = np.array([[1.4, 1.6]])
    near = est.kept_probs_[np.argsort(-(est.kept_ @ (q[0] / np.linalg.norm(q[0]))))[:5]].mean(0)
    assert np.allclose(est.predict_proba(q), 0.5 * base.predict_proba(q) + 0.5 * near)
    assert est.predict_proba(q)[0, 1] > base.predict_proba(q)[0, 1]
    with pytest.raises(ConfigError, match="dense features"):
        import scipy.sparse as sp

        NeighbourSmoothing().fit(sp.csr_matrix(X), y)
