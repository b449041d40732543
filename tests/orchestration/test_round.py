"""One real round end to end: real data, real model, real Ray, real DVC."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest

from curation.errors import ConnectorError
from curation.load import load_loop
from curation.orchestration.round import run_round
from curation.orchestration.state import store_for as make_store
from curation.steps.validate import load_schema, validate
from tests.support.projects import make_project

ROOT = Path(__file__).resolve().parents[2]


def test_banking77_every_row_is_valid_or_quarantined(data_dir: Path) -> None:
    df = pl.read_parquet(data_dir / "banking77_train.parquet")
    res = validate(df, load_schema(ROOT / "schemas" / "banking77.yaml"), engine="local")
    assert len(res.valid) + len(res.quarantine) == len(df)
    assert sorted(res.valid["id"].to_list() + res.quarantine["id"].to_list()) == sorted(df["id"].to_list())
    broken = df.filter(pl.col("text").is_null() | pl.col("label").is_null())
    assert len(broken) > 0
    assert sorted(res.quarantine["id"].to_list()) == sorted(broken["id"].to_list())
    assert res.quarantine["curation_reason"].str.contains("not_nullable").all()


@pytest.mark.slow
def test_two_rounds_label_the_pool_and_are_versioned(tmp_path: Path, data_dir: Path, ray_local: None) -> None:
    cfg = load_loop(make_project(tmp_path, data_dir))
    pool0 = pl.read_parquet(tmp_path / "data" / "pool.parquet")
    first = run_round(cfg)
    second = run_round(cfg)

    for r in (first, second):
        valid, quarantine = r.tables["valid"], r.tables["quarantine"]
        assert len(valid) + len(quarantine) == len(pool0)  # nothing lost
        assert quarantine["id"].to_list() == ["bad-1"]
        sel = r.tables["selection"]
        assert len(sel) == 25 and sel["id"].n_unique() == 25
        pool_ids = valid.filter(pl.col("label").is_null())["id"]
        assert sel["id"].is_in(pool_ids.implode()).all()  # only unlabeled rows are selected
        assert sel["reason"].str.len_chars().min() > 0
    assert first.metrics["labels"] == 100 + 25 and second.metrics["labels"] == 100 + 50
    assert not set(first.tables["selection"]["id"]) & set(second.tables["selection"]["id"])
    assert 0.0 < first.metrics["accuracy"] <= 1.0

    labels = pl.read_parquet(tmp_path / "labels" / "unit.parquet")
    truth = dict(zip(pool0["id"], pool0["hidden_label"]))
    assert len(labels) == 50 and all(truth[i] == lab for i, lab in zip(labels["id"], labels["label"]))

    tags = subprocess.run(["git", "tag"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert tags.split() == ["unit/round-1", "unit/round-2"]  # per-loop tags (issue 15)
    msg = subprocess.run(
        ["git", "log", "-1", "--format=%B", "unit/round-2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "unit round 2" in msg and '"metrics.labels": "150.0"' in msg
    old = make_store(cfg).read("round-1", "labels/unit.parquet")
    assert len(old) == 25 and set(old["id"]) == set(first.tables["selection"]["id"])

    # A round that fails after writing part of its outputs leaves round 2 whole.
    before = (tmp_path / "labels" / "unit.parquet").read_bytes()
    (tmp_path / "connectors" / "broken.yaml").write_text("name: files\ninbox: inbox\n")
    inbox = tmp_path / "annotations" / "unit" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "export.json").write_text("{not json")
    broken = cfg.model_copy(update={"connector": Path("connectors/broken.yaml")})
    with pytest.raises(ConnectorError, match="not a Label Studio JSON export"):
        run_round(broken)
    tags = subprocess.run(["git", "tag"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert tags.split() == ["unit/round-1", "unit/round-2"]  # per-loop tags (issue 15)
    assert (tmp_path / "labels" / "unit.parquet").read_bytes() == before
    assert not (tmp_path / "rounds" / "unit" / "round-3").exists()


@pytest.mark.slow
def test_suspected_label_errors_are_reviewed_and_corrected(tmp_path: Path, data_dir: Path) -> None:
    loop_file = make_project(tmp_path, data_dir)
    pool = pl.read_parquet(tmp_path / "data" / "pool.parquet")
    seed = pool.filter(pl.col("label").is_not_null() & (pl.col("id") != "bad-1"))
    planted = seed.group_by("label", maintain_order=True).head(2)["id"].to_list()  # 10 flipped labels
    classes = sorted(seed["label"].unique().to_list())
    flip = {i: classes[(classes.index(lab) + 1) % len(classes)] for i, lab in zip(seed["id"], seed["label"])}
    pool = pool.with_columns(
        pl.when(pl.col("id").is_in(planted))
        .then(pl.col("id").replace_strict(flip, default=None))
        .otherwise(pl.col("label"))
        .alias("label")
    )
    pool.write_parquet(tmp_path / "data" / "pool.parquet")
    cfg = load_loop(loop_file)
    cfg = cfg.model_copy(
        update={"engine": "local", "strategy": cfg.strategy.model_copy(update={"review_share": 0.4})}
    )  # 10 of the 25 go to reviews

    first = run_round(cfg)
    tasks = first.tables["tasks"]
    reviews = tasks.filter(pl.col("kind") == "review")
    assert len(reviews) == 10 and len(tasks) == 25
    assert reviews["task_id"].str.starts_with("review:").all()
    assert reviews["given_label"].is_not_null().all() and reviews["prediction"].is_not_null().all()
    flagged = first.tables["issues"].filter(pl.col("issue") == "label")
    assert reviews["id"].to_list() == flagged["id"].head(10).to_list()  # the worst flags first
    caught = set(reviews["id"]) & set(planted)
    assert len(caught) >= 5, "the worst flags should be mostly the planted errors"

    labels = pl.read_parquet(tmp_path / "labels" / "unit.parquet").filter(pl.col("kind") == "review")
    truth = dict(zip(pool["id"], pool["hidden_label"]))
    assert all(truth[i] == lab for i, lab in zip(labels["id"], labels["label"]))  # verdicts applied

    second = run_round(cfg)
    valid = second.tables["valid"]
    now = dict(zip(valid["id"], valid["label"]))
    assert all(now[i] == truth[i] for i in caught)  # corrected labels are the loop's labels now
    assert second.metrics["flag_precision"] == pytest.approx(len(caught) / 10)
    again = second.tables["tasks"].filter(pl.col("kind") == "review")["id"].to_list()
    assert not set(again) & set(reviews["id"])  # nothing is reviewed twice


@pytest.mark.slow
def test_the_next_curation_run_reuses_the_issue_work_and_flags_as_a_full_run(
    tmp_path: Path, data_dir: Path
) -> None:
    import json
    import shutil

    from tests.support.cli import cli

    project = tmp_path / "p"
    loop = make_project(
        project, data_dir, engine="local", issues={"reuse_above": 0}, version={"name": "local"}
    )
    assert cli("run", str(loop), cwd=project).returncode == 0
    memory = project / ".curation" / "issues" / "unit.pkl"
    assert memory.exists()
    pool = pl.read_parquet(project / "data" / "pool.parquet")
    more = pl.read_parquet(data_dir / "banking77_train.parquet").filter(
        pl.col("label").is_in(pool["label"].drop_nulls().unique().implode())
        & ~pl.col("id").cast(pl.String).is_in(pool["id"].implode())
    )
    more = more.head(4).with_columns(pl.col("id").cast(pl.String), pl.col("label").alias("hidden_label"))
    pl.concat([pool, more.select(pool.columns)]).write_parquet(project / "data" / "pool.parquet")
    full = tmp_path / "full"  # the same project, its next round run without the kept work
    shutil.copytree(project, full, symlinks=True)
    (full / ".curation" / "issues" / "unit.pkl").unlink()

    runs = {p: cli("run", str(p / "loops" / "unit.yaml"), cwd=p) for p in (project, full)}
    for r in runs.values():
        assert r.returncode == 0, r.stderr[-3000:]
    assert "the last round's work reused, 4 of 304 rows new" in runs[project].stdout + runs[project].stderr
    state = {p: json.loads((p / "rounds" / "unit" / "round-2" / "manifest.json").read_text()) for p in runs}
    assert state[project]["state"]["issues"]["reused"] == {"rows": 304, "new": 4}
    assert state[full]["state"]["issues"]["reused"] is None
    flags = {
        p: pl.read_parquet(p / "rounds" / "unit" / "round-2" / "issues.parquet").filter(
            pl.col("issue") != "label"
        )
        for p in runs
    }
    assert flags[project].sort("issue", "id").equals(flags[full].sort("issue", "id"))  # the same graph
