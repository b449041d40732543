"""Issue detection on real data: planted label errors are found, clean data is left alone.

The data is BANKING77's test split (3,080 real customer messages, 77 intents) embedded with
the real MiniLM model (cached under ``.curation/`` so reruns are fast). Errors are planted by
moving 4% of the rows to another intent; the step must find most of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from curation.config import IssuesConfig, PluginConfig
from curation.errors import CurationError, DataError
from curation.issues.base import DETECTORS, ISSUE_COLUMNS, IssueInputs
from curation.issues.feedback import flag_precision
from curation.issues.find import find_issues
from curation.issues.knn import knn_graph
from curation.steps.embed import embed

ROOT = Path(__file__).resolve().parents[2]
ALL = ["label", "outlier", "near_duplicate", "class_imbalance"]
PLANTED = 0.04
INTENTS = 20
#: The bounds the planted-error tests hold the step to (measured: see docs/label_issues.md).
MIN_RECALL = 0.80
MIN_PRECISION = 0.50
#: BANKING77 as published is not spotless (ambiguous intents, some wrong labels), and the
#: ensemble flags every row it would label otherwise: measured 5.8% on 30 intents.
MAX_CLEAN_FLAGS = 0.07


@pytest.fixture(scope="session")
def banking(data_dir: Path) -> tuple[pl.DataFrame, np.ndarray]:
    """BANKING77 test rows of 20 intents (800 rows) and their real MiniLM embeddings (cached)."""
    df = pl.read_parquet(data_dir / "banking77_test.parquet")
    df = df.filter(pl.col("label").is_in(sorted(df["label"].unique().to_list())[:INTENTS]))
    X = embed(df["text"].to_list(), ids=df["id"].to_list(), root=ROOT, engine="local")
    return df, X


def plant(df: pl.DataFrame, share: float, seed: int = 0) -> tuple[list[str], set[int]]:
    """Labels with ``share`` of the rows moved to another random class; the moved ids."""
    rng = np.random.default_rng(seed)
    classes = sorted(df["label"].unique().to_list())
    labels = df["label"].to_list()
    moved = rng.choice(len(labels), size=int(share * len(labels)), replace=False)
    for i in moved:
        labels[i] = rng.choice([c for c in classes if c != labels[i]])
    return labels, {df["id"][int(i)] for i in moved}  # the table's ids have the input's dtype


def run(df: pl.DataFrame, X: np.ndarray, labels: list, **cfg: object) -> tuple[pl.DataFrame, dict]:
    classes = sorted(df["label"].unique().to_list())
    detectors = [PluginConfig(name=n) for n in cfg.pop("detectors", ["label"])]  # type: ignore[attr-defined]
    return find_issues(
        df["text"].to_list(), df["id"].to_list(), labels, classes, X, IssuesConfig(detectors=detectors, **cfg)
    )


@pytest.fixture(scope="module")
def planted(banking: tuple[pl.DataFrame, np.ndarray]) -> tuple[pl.DataFrame, dict, set[int]]:
    df, X = banking
    labels, moved = plant(df, PLANTED)
    table, report = run(df, X, labels, detectors=ALL)
    return table, report, moved


@pytest.mark.slow
def test_planted_label_errors_are_found(planted: tuple[pl.DataFrame, dict, set[int]]) -> None:
    table, report, moved = planted
    flagged = table.filter(pl.col("issue") == "label")
    hits = set(flagged["id"].to_list()) & moved
    assert len(hits) / len(moved) >= MIN_RECALL, (len(hits), len(moved), report["members"])
    top = set(flagged.head(len(moved))["id"].to_list()) & moved
    assert len(top) / len(moved) >= MIN_PRECISION  # the worst-ranked flags are mostly the planted ones
    assert table.schema == pl.Schema(
        {**ISSUE_COLUMNS, "id": pl.Int64, "partner": pl.Int64}
    )  # ids keep their dtype
    assert flagged["rank"].to_list() == list(range(1, len(flagged) + 1))
    assert flagged["score"].is_sorted(descending=True)


@pytest.mark.slow
def test_ensemble_weighs_every_view_it_can_build(planted: tuple[pl.DataFrame, dict, set[int]]) -> None:
    _, report, _ = planted
    names = [m["name"].split("/")[0] for m in report["members"]]
    assert sorted(names) == ["embedding", "embedding", "tfidf"]
    weights = [m["weight"] for m in report["members"]]
    assert min(weights) >= 0 and max(weights) > 0  # exponents of the product of experts
    assert all(0.5 < m["accuracy"] <= 1 for m in report["members"])
    assert {"knn_graph", "label", "outlier"} <= set(report["seconds"])


@pytest.mark.slow
def test_clean_data_yields_few_flags(banking: tuple[pl.DataFrame, np.ndarray]) -> None:
    df, X = banking
    table, _ = run(df, X, df["label"].to_list(), model="logreg")
    assert len(table) / len(df) <= MAX_CLEAN_FLAGS
    labels, moved = plant(df, PLANTED)
    noisy, _ = run(df, X, labels, model="logreg")
    assert len(noisy) - len(table) >= 0.7 * len(moved)  # the flags follow the errors


@pytest.mark.slow
def test_reference_recipe_is_selectable_and_finds_errors(banking: tuple[pl.DataFrame, np.ndarray]) -> None:
    df, X = banking
    labels, moved = plant(df, PLANTED)
    table, report = run(df, X, labels, recipe="reference")
    assert [m["name"] for m in report["members"]] == ["embedding/logreg"]
    ref_hits = set(table["id"].to_list()) & moved
    assert len(ref_hits) / len(moved) >= 0.5


@pytest.mark.slow
def test_unlabeled_rows_are_the_pool_not_errors(banking: tuple[pl.DataFrame, np.ndarray]) -> None:
    df, X = banking
    labels = [None if i % 4 == 0 else v for i, v in enumerate(df["label"].to_list())]
    table, report = run(
        df, X, labels, detectors=["label", "outlier"], views=["embedding", "knn"], model="logreg"
    )
    pool = {i for i, v in zip(df["id"], labels) if v is None}
    assert not set(table.filter(pl.col("issue") == "label")["id"].to_list()) & pool
    probs = report["pred_probs"]
    assert probs.shape == (len(df), INTENTS) and np.allclose(probs.sum(1), 1)
    outliers = table.filter(pl.col("issue") == "outlier")
    assert outliers.filter(pl.col("id").is_in(list(pool)))["given_label"].null_count() == len(
        outliers.filter(pl.col("id").is_in(list(pool)))
    )


@pytest.mark.slow
def test_near_duplicates_and_outliers_are_found(
    banking: tuple[pl.DataFrame, np.ndarray], data_dir: Path
) -> None:
    df, X = banking
    news = pl.read_parquet(data_dir / "20news_test.parquet").head(10)
    foreign = embed(news["text"].to_list(), root=ROOT, engine="local")
    dup_rows = np.arange(0, 200, 20)
    texts = df["text"].to_list() + df["text"].gather(dup_rows).to_list() + news["text"].to_list()
    ids = [str(i) for i in df["id"]] + [f"dup{i}" for i in dup_rows] + [f"news{i}" for i in range(10)]
    labels = df["label"].to_list() + df["label"].gather(dup_rows).to_list() + [None] * 10
    allX = np.concatenate([X, X[dup_rows], foreign])
    table, _ = find_issues(
        texts,
        ids,
        labels,
        sorted(df["label"].unique().to_list()),
        allX,
        IssuesConfig(
            detectors=[PluginConfig(name="near_duplicate"), PluginConfig(name="outlier")], views=["knn"]
        ),
    )
    dups = table.filter(pl.col("issue") == "near_duplicate")
    assert {f"dup{i}" for i in dup_rows} <= set(dups["id"])
    partner = dict(dups.select("id", "partner").iter_rows())
    for i in dup_rows:  # each copy names the row it copies, and that row names the copy
        assert partner[f"dup{i}"] == str(df["id"][int(i)]) and partner[str(df["id"][int(i)])] == f"dup{i}"
    assert table.filter(pl.col("issue") != "near_duplicate")["partner"].is_null().all()
    outliers = set(table.filter(pl.col("issue") == "outlier")["id"].to_list())
    assert len(outliers & {f"news{i}" for i in range(10)}) >= 8


def test_rare_classes_and_a_single_class_do_not_crash() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = ["a"] * 30 + ["b"] * 28 + ["c", None]  # "c" has one row, fewer than the folds
    table, report = find_issues(
        None,
        range(60),
        labels,
        ["a", "b", "c"],
        X,
        IssuesConfig(detectors=[PluginConfig(name=n) for n in ALL], model="logreg"),
    )
    assert report["pred_probs"].shape == (60, 3)
    assert table.columns == [*ISSUE_COLUMNS, "partner"]  # near_duplicate's own column, null elsewhere
    assert table.filter(pl.col("issue") != "near_duplicate")["partner"].is_null().all()
    assert "c" in table.filter(pl.col("issue") == "class_imbalance")["given_label"].to_list()
    one, _ = find_issues(
        None,
        range(60),
        ["a"] * 60,
        ["a", "b"],
        X,
        IssuesConfig(detectors=[PluginConfig(name="label"), PluginConfig(name="outlier")]),
    )
    assert one.filter(pl.col("issue") == "label").is_empty()


def test_bad_inputs_say_what_to_do() -> None:
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(DataError, match="not one of the 2 classes"):
        find_issues(None, range(3), ["a", "b", "z"], ["a", "b"], X)
    with pytest.raises(ValidationError):
        IssuesConfig(recipe="best")
    inputs = IssueInputs(np.array(["0", "1", "2"]), np.array([0, 1, 0]), ["a", "b"], X, np.full((3, 2), 0.5))
    with pytest.raises(CurationError, match="needs the shared kNN graph"):
        DETECTORS.create("outlier").find(inputs)


def test_knn_graph_excludes_self_and_agrees_with_faiss() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X[1] = X[0]
    exact = knn_graph(X, k=5)
    approx = knn_graph(X, k=5, exact_max_rows=100)
    n = X.shape[0]
    e, a = exact.indices.reshape(n, 5), approx.indices.reshape(n, 5)
    assert not (e == np.arange(n)[:, None]).any() and not (a == np.arange(n)[:, None]).any()
    assert e[0, 0] == 1 and e[1, 0] == 0 and exact.data.reshape(n, 5)[0, 0] < 1e-5
    recall = np.mean([len(set(e[i]) & set(a[i])) / 5 for i in range(n)])
    assert recall >= 0.6
    assert (np.diff(exact.data.reshape(n, 5), axis=1) >= -1e-6).all()


def test_flag_precision_from_review_verdicts() -> None:
    issues = pl.DataFrame({"id": ["1", "2", "3"], "issue": ["label"] * 3, "rank": [1, 2, 150]})
    verdicts = pl.DataFrame(
        {
            "id": ["1", "2", "3", "2", "9"],
            "kind": ["review", "review", "review", "review", "label"],
            "given_label": ["a", "a", "b", "a", None],
            "label": ["b", "b", "b", "a", "c"],
            "updated_at": ["1", "1", "1", "2", "1"],
        }
    )
    got = flag_precision(issues, verdicts)
    assert got == {"reviewed": 3, "confirmed": 1, "precision": 1 / 3, "precision_top100": 0.5}
    with pytest.raises(DataError, match="given_label"):
        flag_precision(issues, verdicts.drop("given_label"))
