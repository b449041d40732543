"""A round with few new rows reuses the last round's issue work, and flags what a full run flags.

The data is BANKING77's test split (real MiniLM vectors, cached), 4% of its labels moved to
another intent. A second run adds rows, changes a text and relabels rows; it must search only
what changed, start its fits from the last ones and flag what a run from scratch flags.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curation.config import IssuesConfig, PluginConfig
from curation.issues.find import find_issues, plan_reuse
from curation.issues.knn import knn_graph, knn_search, update_graph
from curation.issues.memory import IssueMemory
from curation.steps.embed import embed
from curation.steps.model import cross_fit

ROOT = Path(__file__).resolve().parents[2]
DETECTORS = ["label", "outlier", "near_duplicate", "class_imbalance"]


@pytest.fixture(scope="module")
def rows(data_dir: Path) -> tuple[pl.DataFrame, np.ndarray, list[str]]:
    """BANKING77 test rows of 30 intents, their vectors, and their labels with 4% moved."""
    df = pl.read_parquet(data_dir / "banking77_test.parquet")
    df = df.filter(pl.col("label").is_in(sorted(df["label"].unique().to_list())[:30]))
    X = embed(df["text"].to_list(), ids=df["id"].to_list(), root=ROOT, engine="local")
    rng = np.random.default_rng(0)
    classes = sorted(df["label"].unique().to_list())
    labels = df["label"].to_list()
    for i in rng.choice(len(labels), size=len(labels) // 25, replace=False):
        labels[i] = classes[(classes.index(labels[i]) + 1 + rng.integers(len(classes) - 1)) % len(classes)]
    return df, X, labels


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("exact_max_rows", [10**6, 500])  # exact, and blocked over k-means lists
def test_an_updated_graph_is_the_full_search_over_the_same_index(exact_max_rows: int) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 24))
    X = unit(centres[rng.integers(0, 40, 6000)] + 0.6 * rng.normal(size=(6000, 24)))
    before, index = knn_search(X, 8, exact_max_rows=exact_max_rows)
    keep = np.sort(rng.choice(6000, 5900, replace=False))  # 100 rows gone
    X2, kept = X[keep].copy(), keep.copy()
    moved = rng.choice(len(keep), 40, replace=False)  # 40 rows' vectors change
    X2[moved], kept[moved] = unit(X2[moved] + 0.3 * rng.normal(size=(40, 24))), -1
    X2 = np.r_[X2, unit(centres[rng.integers(0, 40, 200)] + 0.6 * rng.normal(size=(200, 24)))]
    kept = np.r_[kept, np.full(200, -1)]
    order = rng.permutation(len(X2))
    X2, kept = X2[order], kept[order]
    updated = update_graph(X2, before, kept, 8, copy.deepcopy(index))
    if index is not None:
        index.lists = np.r_[index.lists[keep], np.zeros(200, np.int32)][order]
        index.lists[kept < 0] = index.assign(X2[kept < 0])
    full = knn_graph(X2, 8, exact_max_rows=exact_max_rows, index=index)
    n = len(X2)
    assert (np.sort(updated.indices.reshape(n, 8), 1) == np.sort(full.indices.reshape(n, 8), 1)).all()
    assert np.allclose(updated.data, full.data, atol=1e-6)


def test_warm_started_folds_reach_the_cold_fit(rows: tuple[pl.DataFrame, np.ndarray, list[str]]) -> None:
    df, X, _ = rows
    y = np.unique(df["label"].to_numpy(), return_inverse=True)[1]
    n = len(y) - 60
    _, first = cross_fit(X[:n], y[:n], 30, folds=3, model="logreg", max_train_rows=600)
    assert first.draws is not None
    first.folds, first.draws = np.r_[first.folds, np.full(60, -1)], np.r_[first.draws, np.full(60, np.nan)]
    warm, fit = cross_fit(X, y, 30, folds=3, model="logreg", start=first, max_train_rows=600)
    assert (fit.folds[:n] == first.folds[:n]).all() and (fit.folds >= 0).all()
    assert fit.draws is not None and (fit.draws[:n] == first.draws[:n]).all()  # the same training samples
    per_fold = np.bincount(fit.folds, minlength=3)
    assert per_fold.max() - per_fold.min() <= 30  # each new row joined a fold its class had fewest in
    cold_start = copy.deepcopy(fit)
    cold_start.models = [None] * 3  # type: ignore[list-item]
    cold, _ = cross_fit(
        X, y, 30, folds=3, model="logreg", start=cold_start, max_train_rows=600
    )  # same folds, no start
    assert np.abs(warm - cold).max() < 0.02 and (warm.argmax(1) == cold.argmax(1)).mean() > 0.995


def test_a_run_with_few_new_rows_reuses_the_last_and_flags_what_a_full_run_flags(
    rows: tuple[pl.DataFrame, np.ndarray, list[str]],
) -> None:
    df, X, labels = rows
    texts, ids = df["text"].to_list(), df["id"].cast(pl.String).to_list()
    classes = sorted(df["label"].unique().to_list())
    cfg = IssuesConfig(detectors=[PluginConfig(name=d) for d in DETECTORS], reuse_above=0)
    n = len(ids) - 30  # the first run has all rows but 30
    _, first = find_issues(texts[:n], ids[:n], labels[:n], classes, X[:n], cfg)
    memory = first["memory"]
    assert first["reused"] is None and isinstance(memory, IssueMemory) and len(memory.keys) == n
    labels2 = list(labels)
    for i in range(0, 200, 20):  # 10 rows relabeled: the same rows, new labels
        labels2[i] = classes[(classes.index(labels2[i]) + 1) % len(classes)]
    texts2 = list(texts)
    texts2[5] = texts2[5] + " please"  # a changed text is a new row (its vector is the old one here)
    order = np.random.default_rng(1).permutation(len(ids))  # the rows come in another order
    ids, texts2, labels2, X = (
        [ids[i] for i in order],
        [texts2[i] for i in order],
        [labels2[i] for i in order],
        X[order],
    )
    table, second = find_issues(texts2, ids, labels2, classes, X, cfg, memory=memory)
    assert second["reused"] == {"rows": len(ids), "new": 31}
    fitted, tfidf = second["memory"].texts["tfidf"]  # the first run's vocabulary, every row's terms
    assert fitted is memory.texts["tfidf"][0] and (tfidf != fitted.transform(texts2)).nnz == 0
    full, again = find_issues(texts2, ids, labels2, classes, X, cfg.model_copy(update={"reuse_above": None}))
    assert again["reused"] is None and again["memory"] is None
    for issue in ("outlier", "near_duplicate"):  # read the graph only: the same graph, the same flags
        a, b = (set(t.filter(pl.col("issue") == issue)["id"]) for t in (table, full))
        assert a == b and len(a) > 0, issue
    a, b = (set(t.filter(pl.col("issue") == "label")["id"]) for t in (table, full))
    # The label flags of two full runs with other seeds (other folds) share 0.79 (Jaccard) here:
    # the reused run must agree with a full run as well as full runs agree with each other.
    assert len(a & b) / len(a | b) >= 0.75, (len(a), len(b), len(a & b))
    same, third = find_issues(texts2, ids, labels2, classes, X, cfg, memory=second["memory"])
    assert third["reused"] == {"rows": len(ids), "new": 0}  # nothing new: nothing to transform or search
    for issue in ("outlier", "near_duplicate"):
        a, b = (set(t.filter(pl.col("issue") == issue)["id"]) for t in (same, full))
        assert a == b, issue
    settings = (ids, texts2, X, classes)
    assert plan_reuse(cfg, second["memory"], *settings)[2] is not None
    shifted = cfg.model_copy(update={"k": 5})  # a setting that shapes the result: a full run
    assert plan_reuse(shifted, second["memory"], *settings)[2] is None
    many = cfg.model_copy(update={"reuse_max_changed": 0.02})  # 31 of ~1,200 rows are too many
    assert plan_reuse(many, memory, *settings)[2] is None


def test_an_unreadable_memory_means_a_full_run(tmp_path: Path) -> None:
    path = tmp_path / "issues" / "loop.pkl"
    assert IssueMemory.load(path) is None
    IssueMemory("s", np.arange(3, dtype=np.uint64)).save(path)
    assert IssueMemory.load(path) is not None and not list(path.parent.glob(".*.tmp"))
    path.write_bytes(b"not a pickle")
    assert IssueMemory.load(path) is None


def test_repeated_or_many_changed_rows_mean_a_full_run() -> None:
    memory = IssueMemory("s", np.array([1, 2, 3, 4, 5], dtype=np.uint64), base=5)
    reuse = memory.reuse(np.array([5, 1, 9], dtype=np.uint64), "s", max_changed=1.0)
    assert reuse is not None and reuse.kept.tolist() == [4, 0, -1] and reuse.changed == 4  # 1 new, 3 gone
    assert memory.reuse(np.array([5, 1, 9], dtype=np.uint64), "s", max_changed=0.5) is None
    assert memory.reuse(np.array([1, 1, 2], dtype=np.uint64), "s", max_changed=1.0) is None  # a repeated row
    assert memory.reuse(np.array([1, 2], dtype=np.uint64), "other settings", max_changed=1.0) is None


def test_a_fit_starts_from_the_last_only_on_the_same_classes_and_features() -> None:
    from sklearn.linear_model import LogisticRegression

    from curation.steps.cv_logreg import CVLogisticRegression
    from curation.steps.model import warm_start

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.repeat([0, 1, 2], 20)
    prev = LogisticRegression().fit(X, y)
    assert warm_start(LogisticRegression(), prev, np.array([0, 1, 2]), 3)
    assert not warm_start(LogisticRegression(), prev, np.array([0, 1, 2]), 4)  # a new vocabulary
    assert not warm_start(LogisticRegression(), prev, np.array([0, 1]), 3)  # a class gone
    assert not warm_start(
        LogisticRegression(C=1.0), LogisticRegression(C=10.0).fit(X, y), np.array([0, 1, 2]), 3
    )
    cv = CVLogisticRegression(random_state=0).fit(X, y)
    again = CVLogisticRegression(random_state=0)
    assert warm_start(again, cv, np.array([0, 1, 2]), 3) and again.fit(X, y).C_ == cv.C_
    assert not hasattr(again, "start_")  # used once: no chain of past models
