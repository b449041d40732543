"""The Python API a notebook uses: every example of docs/python.md runs, results display as
HTML tables, and ``find_issues`` / ``select`` give the ids back in the caller's dtype."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import curation
from curation.config import IssuesConfig, PluginConfig
from curation.strategies.kcenter import KCenterGreedy
from tests.support.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python.md"

#: Appended to the doc's examples: the objects they made display as HTML tables.
DISPLAY_CHECKS = """
for name, obj, wanted in (
    ("validation", v, "quarantine</b> ("),
    ("round", result, "selection</b> ("),
    ("sweep", sweep, "<table"),
):
    html = obj._repr_html_()
    assert wanted in html and "<table" in html, (name, html[:500])
    print("displayed", name, len(html))
"""


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.slow
def test_every_example_of_the_python_doc_runs(tmp_path: Path, data_dir: Path) -> None:
    project = tmp_path / "project"
    assert cli("init", str(project), cwd=tmp_path).returncode == 0
    df = pl.read_parquet(data_dir / "banking77_test.parquet")  # Int64 ids
    keep = sorted(df["label"].unique().to_list())[:4]
    df = pl.concat([df.filter(pl.col("label") == k).head(40) for k in keep])
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()).over("label") < 15).then(pl.col("label")).alias("label")
    )
    df.write_parquet(project / "data" / "dataset.parquet")
    inferred = cli("schema", "infer", "data/dataset.parquet", cwd=project)
    assert inferred.returncode == 0, inferred.stderr
    (project / "schemas" / "example.yaml").write_text(inferred.stdout)
    broken = pl.DataFrame({"id": [999999], "text": [""], "label": [None]}, schema=df.schema)  # arrives later
    pl.concat([df, broken]).write_parquet(project / "data" / "dataset.parquet")

    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 8
    script = "\n\n".join(blocks) + DISPLAY_CHECKS
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env={**os.environ, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    assert "example 100 hybrid dvc" in r.stdout
    assert "161 rows: 160 valid, 1 quarantined" in r.stdout and "999999" in r.stdout
    assert "(160, 384) float32" in r.stdout
    assert "True Int64" in r.stdout  # the Ray job's table is find_issues's, ids in their dtype
    assert "} Int64" in r.stdout  # find_issues kept the Int64 ids
    assert "1 example/round-1 100 selected, 1 quarantined" in r.stdout
    assert [line.split()[1] for line in r.stdout.splitlines() if line.startswith("displayed")] == [
        "validation",
        "round",
        "sweep",
    ]


def two_blobs(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    """Unit vectors: the first half around one axis, the second around another."""
    X = np.random.default_rng(seed).normal(scale=0.2, size=(n, d)).astype(np.float32)
    X[: n // 2, 0] += 1.0
    X[n // 2 :, 1] += 1.0
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_find_issues_and_select_give_the_ids_back_in_the_callers_dtype() -> None:
    X = two_blobs(60)
    labels = ["a"] * 30 + ["b"] * 30
    labels[:3] = ["b"] * 3  # a few wrong labels, so that there is something to flag
    cfg = IssuesConfig(detectors=[PluginConfig(name="label"), PluginConfig(name="outlier")], model="logreg")
    for ids, dtype in (
        (pl.Series("id", range(100, 160), dtype=pl.Int64), pl.Int64),
        (pl.Series("id", range(100, 160), dtype=pl.UInt32), pl.UInt32),
        (np.arange(100, 160, dtype=np.int32), pl.Int32),
        (list(range(100, 160)), pl.Int64),
        ([f"r{i}" for i in range(60)], pl.String),
    ):
        table, _ = curation.find_issues(None, ids, labels, ["a", "b"], X, cfg)
        assert len(table) and table.schema["id"] == dtype
        assert set(table["id"].to_list()) <= set(pl.Series(ids).to_list())

        sel = curation.select(X[30:], 5, ids=ids[30:], labeled=X[:30], strategy="kcenter")
        assert sel.schema["id"] == dtype and set(sel["id"].to_list()) <= set(pl.Series(ids[30:]).to_list())
    # review tasks: the suspects are ids of labeled rows, given in the same dtype
    sel = curation.select(
        X[30:],
        6,
        ids=pl.Series(range(130, 160)),
        labeled=X[:30],
        strategy=KCenterGreedy(review_share=0.5),
        suspects=pl.Series([100, 101, 102]),
        suspect_scores=np.array([0.1, 0.2, 0.3]),
    )
    assert sel.schema["id"] == pl.Int64
    assert sel.filter(pl.col("kind") == "review")["id"].to_list() == [100, 101, 102]
    assert curation.select(X, 3, strategy="kcenter")["id"].dtype == pl.Int64  # row numbers by default
    pool = pl.DataFrame({"id": pl.Series(range(100, 160)), "text": [f"t{i}" for i in range(60)]})
    sel = curation.select(X, 4, ids=pool["id"], strategy="kcenter")
    assert len(pool.join(sel, on="id")) == 4  # joins back onto the caller's table
