"""The issue step as a Ray job gives the in-process step's table, on a 2-node Ray cluster."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curation.config import IssuesConfig, PluginConfig
from curation.errors import ConfigError, DataError
from curation.issues.distributed import find_issues_ray, outlier_rule
from curation.issues.find import find_issues
from curation.issues.knn import EXACT_MAX_ROWS, knn_graph
from curation.issues.lab import datalab_issues
from curation.support.engine import ensure_ray
from tests.support.ray_cluster import two_node_ray

CLASSES = ["a", "b", "c", "d", "e"]
DETECTORS = ("label", "outlier", "near_duplicate", "class_imbalance")


def make_rows(n: int = EXACT_MAX_ROWS + 10_000, dim: int = 16, seed: int = 0) -> pl.DataFrame:
    """Rows around 5 centres with every issue planted: 2% of labels moved, 30 near-duplicate
    pairs, 20 far-off rows, a rare class (80 rows), and every 9th row unlabeled (the pool)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    y[rng.choice(n, 80, replace=False)] = 4
    X = np.eye(5, dim, dtype=np.float32)[y] * 2.0 + rng.standard_normal((n, dim), dtype=np.float32)
    X[n - 20 :] = rng.standard_normal((20, dim), dtype=np.float32) * 8.0  # outliers
    copies = rng.choice(n - 20, 60, replace=False)
    X[copies[30:]] = X[copies[:30]] + 1e-4  # near-duplicates
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    given = y.copy()
    moved = rng.choice(n, n // 50, replace=False)
    given[moved] = (y[moved] + 1) % 4
    labels = [CLASSES[v] if i % 9 else None for i, v in enumerate(given)]
    return pl.DataFrame({"id": [f"r{i}" for i in range(n)], "label": labels, "embedding": X})


def write_parts(df: pl.DataFrame, folder: Path, files: int = 3) -> None:
    """The rows as several Parquet files of small row groups (so blocks and files split them)."""
    folder.mkdir(parents=True)
    size = -(-len(df) // files)
    for i in range(files):
        df.slice(i * size, size).write_parquet(folder / f"part-{i}.parquet", row_group_size=4096)


def config() -> IssuesConfig:
    return IssuesConfig(detectors=[PluginConfig(name=d) for d in DETECTORS])


@pytest.mark.slow
def test_the_ray_job_on_two_nodes_gives_the_in_process_table(tmp_path: Path) -> None:
    df = make_rows()
    write_parts(df, tmp_path / "in")
    X = df["embedding"].to_numpy()
    expected, _ = find_issues(None, df["id"], df["label"].to_list(), CLASSES, X, config())
    with two_node_ray():
        table, report = find_issues_ray(
            tmp_path / "in",
            CLASSES,
            config(),
            scratch=tmp_path / "scratch",
            block_rows=8192,
            partition_rows=15_000,
        )
    assert report["rows"] == len(df) and report["partitions"] >= 4 and report["lists"] > 1
    assert set(report["flagged"]) == set(
        DETECTORS
    )  # every detector flagged rows: the comparison means something
    assert table.columns == expected.columns and table["id"].dtype == pl.String
    assert_frame_equal(expected, table, check_exact=False, rtol=1e-6, atol=1e-7)


def test_the_outlier_rule_is_datalabs() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 8)).astype(np.float32)
    X[:5] *= 6
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    g = knn_graph(X, k=5)
    lab = datalab_issues("outlier", {"k": 5}, knn=g)
    hit, score = outlier_rule(g.data.reshape(500, 5).mean(1))
    assert len(hit) and hit.tolist() == np.flatnonzero(lab["is_outlier_issue"]).tolist()
    np.testing.assert_allclose(score, lab["outlier_score"], rtol=1e-6)


def test_a_label_outside_the_classes_names_the_file_row_and_column(tmp_path: Path) -> None:
    df = make_rows(n=300).with_columns(
        pl.when(pl.int_range(300) == 123).then(pl.lit("zz")).otherwise("label").alias("label")
    )
    df.write_parquet(tmp_path / "rows.parquet")
    ensure_ray(None)
    with pytest.raises(DataError) as e:
        find_issues_ray(tmp_path / "rows.parquet", CLASSES, config())
    assert "'zz'" in str(e.value) and "rows.parquet" in str(e.value)
    assert e.value.row == "r123" and e.value.column == "label"


def test_settings_it_cannot_run_are_refused_by_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        find_issues_ray(tmp_path, CLASSES, IssuesConfig(recipe="reference"))
    assert e.value.field == "issues.recipe"
    with pytest.raises(ConfigError) as e:
        find_issues_ray(
            tmp_path,
            CLASSES,
            IssuesConfig(detectors=[PluginConfig(name="label", filter_by="prune_by_noise_rate")]),
        )
    assert e.value.field == "issues.detectors.0.filter_by"


def test_a_row_without_a_vector_and_a_missing_column_are_named(tmp_path: Path) -> None:
    rows = make_rows(n=300)
    vectors = [None if i == 77 else list(v) for i, v in enumerate(rows["embedding"].to_numpy())]
    rows.with_columns(pl.Series("embedding", vectors, dtype=pl.List(pl.Float32))).write_parquet(
        tmp_path / "a.parquet"
    )
    ensure_ray(None)
    with pytest.raises(DataError) as e:
        find_issues_ray(tmp_path / "a.parquet", CLASSES, config())
    assert (e.value.row, e.value.column) == ("r77", "embedding") and "a.parquet" in str(e.value)
    rows.drop("label").write_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError) as e:
        find_issues_ray(tmp_path / "b.parquet", CLASSES, config())
    assert e.value.column == "label" and "b.parquet" in str(e.value)


def test_plain_list_vectors_give_the_fixed_size_ones_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = make_rows(n=3000)
    rows.write_parquet(tmp_path / "fixed.parquet")
    rows.with_columns(pl.col("embedding").arr.to_list()).write_parquet(tmp_path / "plain.parquet")
    ensure_ray(None)
    with caplog.at_level(logging.INFO, logger="curation.issues.distributed"):
        fixed, _ = find_issues_ray(tmp_path / "fixed.parquet", CLASSES, config())
    said = caplog.text
    assert "search: partitions done: 1 of 1" in said and "Ray issue step, combine:" in said  # progress
    plain, _ = find_issues_ray(tmp_path / "plain.parquet", CLASSES, config())
    assert len(fixed) and fixed.equals(plain)
