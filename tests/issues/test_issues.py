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
import yaml
from pydantic import ValidationError

import curation
from curation.config import IssuesConfig, PluginConfig
from curation.errors import CurationError, DataError
from curation.issues.base import DETECTORS, ISSUE_COLUMNS, Evidence, IssueInputs
from curation.issues.evidence import combine
from curation.issues.feedback import flag_precision
from curation.issues.find import find_issues, label_codes
from curation.issues.group import spherical_kmeans
from curation.issues.knn import knn_graph
from curation.issues.label import label_quality
from curation.load import load_loop
from curation.orchestration.sweep import sweep_settings
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
    assert all(0.5 < m["accuracy"] <= 1 and m["log_loss"] > 0 for m in report["members"])
    assert {"knn_graph", "label", "outlier"} <= set(report["seconds"])


@pytest.mark.slow
def test_the_ensemble_ranks_no_worse_than_its_best_view(
    banking: tuple[pl.DataFrame, np.ndarray], planted: tuple[pl.DataFrame, dict, set[int]]
) -> None:
    df, _ = banking
    _, report, moved = planted
    labels, _ = plant(df, PLANTED)
    codes = label_codes(labels, sorted(df["label"].unique().to_list()))
    ids = df["id"].to_list()

    def found(quality: np.ndarray) -> int:  # planted rows among the len(moved) lowest label qualities
        return len(moved & {ids[i] for i in np.argsort(quality, kind="stable")[: len(moved)]})

    ours = found(report["label_quality"])
    alone = {m.name: found(label_quality(codes, m.pred_probs)) for m in report["evidence"]}
    # One row of slack: a lone chosen view is used at its fitted temperature, which can
    # move a row across the cut (on the benchmark's five settings ours >= every view outright).
    assert ours >= max(alone.values()) - 1, (ours, alone, report["members"])


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


@pytest.fixture(scope="module")
def banking_train(data_dir: Path) -> tuple[pl.DataFrame, np.ndarray]:
    """Every fifth labeled row of BANKING77's train split (2,000 rows, 77 intents), embedded (cached)."""
    df = pl.read_parquet(data_dir / "banking77_train.parquet").drop_nulls().filter(pl.col("id") % 5 == 0)
    return df, embed(df["text"].to_list(), ids=df["id"].to_list(), root=ROOT, engine="local")


def test_a_cluster_with_shuffled_labels_is_the_underperforming_group(
    banking_train: tuple[pl.DataFrame, np.ndarray],
) -> None:
    df, X = banking_train
    fast = {"detectors": ["underperforming_group"], "views": ["knn"]}  # kNN-label evidence: no model fit
    clean, _ = run(df, X, df["label"].to_list(), **fast)
    assert len(clean) <= 0.01 * len(df)  # the published labels: at most a small confusable group
    # Plant: shuffle the labels inside one k-means cluster (the detector's clustering: 32, seed 0),
    # the one of the most intents, where a shuffle moves most labels.
    clusters = spherical_kmeans(X, 32, seed=0)
    intents = df.with_columns(pl.Series("c", clusters)).group_by("c").agg(pl.col("label").n_unique())
    planted = int(intents.sort(["label", "c"], descending=[True, False])["c"][0])
    rows = np.flatnonzero(clusters == planted)
    labels = df["label"].to_numpy().copy()
    labels[rows] = np.random.default_rng(0).permutation(labels[rows])
    assert (labels[rows] != df["label"].to_numpy()[rows]).mean() > 0.7
    table, _ = run(df, X, labels.tolist(), **fast)
    worst = table.filter(pl.col("score") == table["score"].max())
    assert worst["cluster"].unique().to_list() == [planted]  # named, on each of its rows
    assert sorted(worst["id"].to_list()) == sorted(df["id"].gather(rows).to_list())
    assert worst["score"][0] >= 0.5  # its labels fit under half as well as the rest's
    assert len(table) - len(worst) <= 0.01 * len(df)  # little else


#: Every detector with a setting of its own, as a loop file's ``issues.detectors``.
LOOP_DETECTORS = [
    {"name": "label"},
    {"name": "outlier"},
    {"name": "near_duplicate", "threshold": 0.2},
    {"name": "exact_duplicate"},
    {"name": "non_iid", "num_permutations": 10},
    {"name": "underperforming_group", "n_clusters": 32},
    {"name": "data_valuation", "k": 8},
    {"name": "class_imbalance"},
]


def test_every_detector_from_a_loop_file_through_curation_find_issues(
    banking_train: tuple[pl.DataFrame, np.ndarray], data_dir: Path, tmp_path: Path
) -> None:
    loop = tmp_path / "loops" / "x.yaml"
    loop.parent.mkdir()
    loop.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "dataset": str(data_dir / "banking77_train.parquet"),
                "schema": str(ROOT / "schemas" / "banking77.yaml"),
                "connector": str(ROOT / "connectors" / "files.yaml"),
                "issues": {"detectors": LOOP_DETECTORS, "views": ["knn"]},
            }
        )
    )
    cfg = load_loop(loop).issues
    assert [d.model_dump() for d in cfg.detectors] == LOOP_DETECTORS
    assert sweep_settings(None, None, loop=loop).issues == cfg  # the sweep reads the same detectors
    df, X = banking_train  # in file order: sorted by intent
    copies = [0, 7]  # two rows twice: exact duplicates
    texts = df["text"].to_list() + df["text"].gather(copies).to_list()
    ids = df["id"].to_list() + [-1, -2]
    labels = df["label"].to_list() + df["label"].gather(copies).to_list()
    classes = sorted(df["label"].unique().to_list())
    table, report = curation.find_issues(texts, ids, labels, classes, np.concatenate([X, X[copies]]), cfg)
    assert set(report["flagged"]) >= {"non_iid", "data_valuation", "exact_duplicate", "near_duplicate"}
    assert table.schema["id"] == table.schema["partner"] == pl.Int64
    exact = table.filter(pl.col("issue") == "exact_duplicate")
    assert sorted(exact.select("id", "partner").rows()) == sorted(
        [(-1, df["id"][0]), (df["id"][0], -1), (-2, df["id"][7]), (df["id"][7], -2)]
    )
    assert exact["group"].n_unique() == 2
    non_iid = table.filter(pl.col("issue") == "non_iid")
    assert non_iid["p_value"].max() < 0.05 and len(non_iid) > len(df) / 2  # sorted rows are not IID
    assert set(report["seconds"]) >= {"non_iid", "underperforming_group", "data_valuation", "exact_duplicate"}


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


def test_the_near_duplicate_threshold_is_a_radius_and_exact_duplicates_need_no_graph() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16)).astype(np.float32)
    X[1] = X[0]
    X[3] = X[2] + 0.5 * rng.normal(size=16)  # a looser paraphrase
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    ids = np.array([str(i) for i in range(200)], dtype=object)
    inputs = IssueInputs(ids, np.zeros(200, int), ["a"], X, np.ones((200, 1)), knn_graph(X, 5))
    found = {
        t: set(DETECTORS.create("near_duplicate", {"threshold": t}).find(inputs)["id"])
        for t in (0.0, 0.13, 0.6)
    }
    assert found[0.0] == set()  # under 0 x the median: nothing
    assert found[0.13] == {"0", "1"} and found[0.13] < found[0.6] and {"2", "3"} <= found[0.6]
    with pytest.raises(CurationError, match=r"near_duplicate\.threshold"):
        DETECTORS.create("near_duplicate", {"threshold": -1.0}).find(inputs)
    inputs.knn = None
    assert DETECTORS.create("exact_duplicate").find(inputs)["id"].to_list() == ["0", "1"]


def test_knn_graph_excludes_self_and_the_blocked_search_agrees_with_exact() -> None:
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


def test_a_view_that_adds_nothing_on_held_out_rows_gets_no_weight() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    right = rng.random((300, 1)) < 0.7
    probs = np.where(right, np.eye(3)[y], np.eye(3)[(y + 1) % 3]) * 0.6 + 0.1
    good, copy = Evidence("a", probs, 0.7), Evidence("b", probs.copy(), 0.7)
    noise = Evidence("c", rng.dirichlet([1, 1, 1], 300), 0.33)
    pooled = combine([good, copy, noise], y)
    assert sorted([good.weight > 0, copy.weight > 0]) == [False, True]  # the copy repeats the first
    assert noise.weight == 0.0
    assert good.log_loss == pytest.approx(copy.log_loss) and noise.log_loss > good.log_loss
    assert (pooled.argmax(1) == probs.argmax(1)).all()


def test_a_view_that_reads_other_rows_labels_never_leads_the_ensemble() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    probs = np.where(rng.random((300, 1)) < 0.7, np.eye(3)[y], np.eye(3)[(y + 1) % 3]) * 0.6 + 0.1
    follower = Evidence("embedding/knn", probs, 0.7, leads=False)  # as good, listed first
    model = Evidence("embedding/logreg", probs.copy(), 0.7)
    combine([follower, model], y)
    assert model.weight > 0 and follower.weight == 0.0


def test_views_that_know_nothing_pool_to_uniform_probabilities_not_an_error() -> None:
    y = np.array([0, 1] * 20)
    wrong = np.eye(2)[1 - y] * 0.4 + 0.3  # every view leans to the wrong class: each gets weight 0
    pooled = combine([Evidence("a", wrong, 0.0), Evidence("b", wrong.copy(), 0.0)], y)
    assert pooled.shape == (40, 2) and np.allclose(pooled, 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_class_imbalance_flags_what_datalab_flags(seed: int) -> None:
    from curation.issues.imbalance import rarest_class
    from curation.issues.lab import datalab_issues

    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.choice(9, 5, replace=False), rng.integers(1, 60, 5))  # 5 of 9 codes present
    rng.shuffle(labels)
    df = datalab_issues("class_imbalance", {"threshold": 0.5}, labels=labels)
    hit, share = rarest_class(labels, 0.5)
    assert hit.tolist() == np.flatnonzero(df["is_class_imbalance_issue"].to_numpy()).tolist()
    assert np.allclose(
        df["class_imbalance_score"].to_numpy()[labels == labels[hit[0]]] if len(hit) else share, share
    )
