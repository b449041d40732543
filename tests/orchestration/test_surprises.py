"""What surprised a new user on their first day (issue 15), one test each, through the real commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from curation.load import load_loop
from curation.orchestration.stages import stage_config
from curation.orchestration.state import store_for
from curation.orchestration.sweep import sweep_settings
from curation.strategies.select import make_strategy
from curation.support.project import init_project
from tests.support.cli import cli, git
from tests.support.projects import make_project


@pytest.mark.slow
def test_two_loops_share_a_project_each_with_its_own_rounds(tmp_path: Path, data_dir: Path) -> None:
    loop_a = make_project(tmp_path, data_dir, n_classes=3, per_class=30, budget=5, engine="local")
    doc = yaml.safe_load(loop_a.read_text())
    loop_b = tmp_path / "loops" / "other.yaml"
    loop_b.write_text(yaml.safe_dump({**doc, "name": "other", "budget": 4}))
    for loop in (loop_a, loop_b, loop_a):
        r = cli("run", str(loop), cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(git(tmp_path, "tag").split()) == ["other/round-1", "unit/round-1", "unit/round-2"]
    assert [r.round for r in store_for(load_loop(loop_a)).history()] == [1, 2]
    assert [r.round for r in store_for(load_loop(loop_b)).history()] == [1]
    # each round versions the config it ran with
    shown = git(tmp_path, "ls-tree", "-r", "--name-only", "unit/round-2")
    for path in ("loops/unit.yaml", "schemas/example.yaml", "params.yaml", "dvc.yaml"):
        assert path in shown.split(), shown
    assert "loops/other.yaml" in git(tmp_path, "ls-tree", "-r", "--name-only", "other/round-1").split()
    hist = cli("history", "--loop", str(loop_b), "--json", cwd=tmp_path)
    assert hist.returncode == 0 and [r["round"] for r in json.loads(hist.stdout)] == [1]


@pytest.mark.slow
def test_blank_and_whitespace_labels_are_unlabeled(tmp_path: Path, data_dir: Path) -> None:
    loop = make_project(
        tmp_path, data_dir, n_classes=3, per_class=30, budget=5, engine="local", version={"name": "local"}
    )
    pool = pl.read_parquet(tmp_path / "data" / "pool.parquet")
    blanks = pool.with_columns(
        pl.when(pl.col("label").is_null() & (pl.int_range(pl.len()) % 2 == 0))
        .then(pl.lit(""))
        .when(pl.col("label").is_null())
        .then(pl.lit("  "))
        .otherwise(pl.col("label"))
        .alias("label")
    )
    assert blanks["label"].is_null().sum() == 0
    blanks.write_parquet(tmp_path / "data" / "pool.parquet")
    r = cli("run", str(loop), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    store = store_for(load_loop(loop))
    quarantine = store.read("round-1", "rounds/unit/round-1/quarantine.parquet")
    assert quarantine["id"].to_list() == ["bad-1"]  # blanks are the pool, not broken rows
    assert len(store.read("round-1", "rounds/unit/round-1/selection.parquet")) == 5


@pytest.mark.slow
def test_checkout_refuses_to_overwrite_uncommitted_work(tmp_path: Path, data_dir: Path) -> None:
    loop = make_project(tmp_path, data_dir, n_classes=3, per_class=30, budget=5, engine="local")
    assert cli("run", str(loop), cwd=tmp_path).returncode == 0
    queue = tmp_path / "annotations" / "unit" / "oracle.parquet"
    queued = len(pl.read_parquet(queue))
    held = cli("run", str(loop), "--no-push", cwd=tmp_path)  # round 2 queues nothing
    assert held.returncode == 0, held.stderr[-3000:]
    store = store_for(load_loop(loop))
    assert [r.round for r in store.history()] == [1, 2]  # versioned ...
    assert len(store.read("round-2", "rounds/unit/round-2/selection.parquet")) == 5  # ... selected ...
    assert store.read("round-2", "rounds/unit/round-2/tasks.parquet").is_empty()  # ... not queued
    assert len(pl.read_parquet(queue)) == queued
    labels = tmp_path / "labels" / "unit.parquet"
    pl.read_parquet(labels).with_columns(pl.lit("edited").alias("label")).write_parquet(labels)
    r = cli("checkout", "round-1", "--loop", str(loop), cwd=tmp_path)
    assert (
        r.returncode == 1
        and "uncommitted changes would be lost" in r.stderr
        and "labels/unit.parquet" in r.stderr
    )
    assert pl.read_parquet(labels)["label"].unique().to_list() == ["edited"]  # untouched
    forced = cli("checkout", "round-1", "--loop", str(loop), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "edited" not in pl.read_parquet(labels)["label"].to_list()


def test_init_reviews_flags_by_default_and_states_each_default_once(tmp_path: Path) -> None:
    init_project(tmp_path)
    (tmp_path / "data" / "dataset.parquet").write_bytes(b"")
    pl.DataFrame({"id": ["1"], "text": ["t"], "label": ["a"]}).write_parquet(
        tmp_path / "data" / "dataset.parquet"
    )
    loop = tmp_path / "loops" / "example.yaml"
    cfg = load_loop(loop)
    assert make_strategy(cfg.strategy).review_mode == "fixed" and cfg.strategy.params()["review_share"] > 0
    piped, _ = stage_config(loop, tmp_path / "params.yaml")
    swept = sweep_settings(None, None, loop=loop)
    for settings in (piped, swept):
        assert [d.name for d in settings.issues.detectors] == [d.name for d in cfg.issues.detectors]
        assert settings.embed.max_seq_length == cfg.embed.max_seq_length
    assert [d.name for d in cfg.issues.detectors] == ["label", "outlier", "near_duplicate"]


@pytest.mark.slow
def test_a_label_shuffle_fails_the_sweep(tmp_path: Path, data_dir: Path) -> None:
    df = pl.read_parquet(data_dir / "banking77_train.parquet").drop_nulls().head(3000)
    df.write_parquet(tmp_path / "week1.parquet")
    rng = np.random.default_rng(0)
    labels = df["label"].to_numpy().copy()
    moved = rng.choice(len(df), size=len(df) // 10, replace=False)
    labels[moved] = rng.permutation(labels[moved])  # the same label counts: no label drift
    df.with_columns(pl.Series("label", labels)).write_parquet(tmp_path / "week2.parquet")
    schema = Path(__file__).resolve().parents[2] / "schemas" / "banking77.yaml"
    common = [
        "--schema",
        str(schema),
        "--history",
        str(tmp_path / "sweeps"),
        "--folds",
        "3",
        "--recipe",
        "reference",
        "--detector",
        "label",
        "--max-seq-length",
        "64",
    ]
    first = cli("sweep", str(tmp_path / "week1.parquet"), *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = cli("sweep", str(tmp_path / "week2.parquet"), *common, cwd=tmp_path)
    assert second.returncode == 4, second.stdout + second.stderr
    assert "label_issue_increase" in second.stderr and "label_drift" not in second.stderr


def test_listings_fit_100_columns_and_help_fits_80() -> None:
    from rich.console import Console
    from typer.testing import CliRunner

    from curation.cli import app, metrics_table
    from curation.connectors.base import RoundInfo
    from curation.orchestration.history import history_summary

    rounds = [
        RoundInfo(
            n,
            f"intents-v2/round-{n}",
            "c",
            "2026-12-01T10:00:05+00:00",
            "m",
            {
                "metrics.valid": "10006.0",
                "metrics.quarantined": "5.0",
                "metrics.label_issues": "219.0",
                "metrics.selected": "200.0",
                "metrics.labels": "1200.0",
                "metrics.accuracy": "0.9",
            },
        )
        for n in (9, 10)
    ]
    console = Console(width=100, record=True)
    console.print(metrics_table(history_summary(rounds), "2 rounds (dvc)"))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 100
    for command in ("run", "sweep", "validate", "history", "diff", "checkout", "serve", "embed", "simulate"):
        shown = CliRunner().invoke(app, [command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert shown.exit_code == 0, shown.output
        assert max(len(line) for line in shown.output.splitlines()) <= 80, command


@pytest.mark.slow
def test_a_ray_round_prints_each_step_once_and_no_ray_noise(tmp_path: Path, data_dir: Path) -> None:
    loop = make_project(
        tmp_path,
        data_dir,
        n_classes=3,
        per_class=30,
        budget=5,
        engine="ray",
        version={"name": "local"},
        embed={"max_seq_length": 64, "ray_min_texts": 0},  # the embedding on Ray actors too
    )
    r = cli("run", str(loop), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for noise in ("core_worker.cc", "(raylet)", "Progress bars", "WARNING", "Traceback"):
        assert noise not in r.stderr + r.stdout, noise
    steps = [ln.split(":")[0] for ln in r.stderr.splitlines() if ln.startswith("✓")]
    assert steps == [
        "✓ validate",
        "✓ embed",
        "✓ issues",
        "✓ select",
        "✓ annotate",
        "✓ embed held-out",
        "✓ leaks",
        "✓ report",
        "✓ version",
    ]
    dry = cli("run", str(loop), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "would select" in dry.stdout and "nothing was pushed" in dry.stdout
    assert [r.round for r in store_for(load_loop(loop)).history()] == [1]  # the dry run committed nothing
