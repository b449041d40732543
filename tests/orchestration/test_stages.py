"""The DVC pipeline of `curation init`: real DVC, real data, each stage a real `curation` process."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from curation.config import LoopConfig
from curation.errors import ConfigError
from curation.orchestration.stages import apply_params
from curation.support.project import init_project

BIN = Path(sys.executable).parent
STAGES = ["validate", "embed", "issues", "select", "push"]


def sh(root: Path, *cmd: str) -> str:
    """Run a command in ``root`` with this environment's `curation` and `dvc` on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def ran(output: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` executed, in order."""
    return re.findall(r"Running stage '(\w+)'", output)


def make_project(root: Path, data_dir: Path) -> None:
    """`curation init` plus 5 BANKING77 intents x 40 rows (half unlabeled) and one broken row."""
    df = pl.read_parquet(data_dir / "banking77_train.parquet").drop_nulls()
    keep = sorted(df["label"].unique().to_list())[:5]
    df = pl.concat([df.filter(pl.col("label") == k).head(40) for k in keep])
    df = df.with_columns(
        pl.col("id").cast(pl.String),
        pl.when(pl.int_range(pl.len()).over("label") < 20).then(pl.col("label")).alias("label"),
    )
    bad = pl.DataFrame({"id": ["bad-1"], "text": [""], "label": [keep[0]]})
    init_project(root)
    pl.concat([df, bad]).write_parquet(root / "data" / "dataset.parquet")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["embed"]["max_seq_length"] = 64
    params["issues"]["folds"] = 3
    params["select"].update(budget=15, curve_rounds=3)
    params["push"]["enabled"] = True  # dvc repro may queue tasks: asked for explicitly
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project")


def metrics(root: Path) -> dict[str, dict]:
    """`dvc metrics show --json` of the workspace: file name -> its figures."""
    data = json.loads(sh(root, "dvc", "metrics", "show", "--json"))
    (workspace,) = data.values()  # one revision: the workspace
    files = workspace["data"]
    return {Path(p).name: v["data"] for p, v in files.items()}


@pytest.mark.slow
def test_dvc_repro_reruns_only_what_changed(tmp_path: Path, data_dir: Path) -> None:
    make_project(tmp_path, data_dir)

    first = sh(tmp_path, "dvc", "repro")
    assert ran(first) == STAGES, first
    m = metrics(tmp_path)
    assert m["report.json"]["quarantined"] == 1 and m["report.json"]["valid"] == 200
    assert m["issues.json"]["labeled"] == 100
    views = m["issues.json"]["views"]  # the ensemble's choice: each view's figures and weight
    assert {"embedding/knn"} < set(views) and all(
        v["weight"] >= 0 and v["log_loss"] > 0 for v in views.values()
    )
    assert m["select.json"]["selected"] == 15 and m["select.json"]["strategy"] == "hybrid"
    assert m["push.json"]["pushed"] == 15
    out = tmp_path / ".curation" / "stages" / "example"
    ranked = pl.read_parquet(out / "label_quality.parquet")  # every labeled row, not only the flagged
    assert ranked.height == 100 and ranked["rank"].to_list() == list(range(1, 101))
    assert ranked["label_quality"].is_sorted()
    curve = list(csv.DictReader((out / "learning_curve.csv").read_text().splitlines()))
    assert [int(r["labels"]) for r in curve] == [15, 30, 45, 60]
    assert all(0.0 < float(r["accuracy"]) <= 1.0 for r in curve)

    second = sh(tmp_path, "dvc", "repro")
    assert ran(second) == [], second
    assert all(f"Stage '{s}' didn't change, skipping" in second for s in STAGES)
    assert "Data and pipelines are up to date" in sh(tmp_path, "dvc", "status")

    sh(tmp_path, "git", "add", "dvc.lock")
    sh(tmp_path, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "round")
    exp = sh(tmp_path, "dvc", "exp", "run", "-S", "select.strategy=random")
    assert ran(exp) == ["select", "push"], exp
    assert all(f"Stage '{s}' didn't change, skipping" in exp for s in ("validate", "embed", "issues"))
    assert metrics(tmp_path)["select.json"]["strategy"] == "random"
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["select"]["strategy"] == "random"
    # the experiment ran the push stage, which queued nothing: comparing strategies is not work
    assert metrics(tmp_path)["push.json"]["pushed"] == 0
    assert "dvc exp run" in metrics(tmp_path)["push.json"]["skipped"]
    outbox = tmp_path / "annotations" / "example" / "outbox"
    queued = [t for f in outbox.glob("tasks-*.json") for t in json.loads(f.read_text())]
    assert len(queued) == 15  # the first repro's, and nothing from the experiment

    plots = sh(tmp_path, "dvc", "plots", "show", "--json")
    assert "learning_curve.csv" in plots and '"accuracy"' in plots


def test_params_override_the_loop_and_unknown_keys_list_the_valid_ones() -> None:
    cfg = LoopConfig(
        name="x",
        dataset="d.parquet",
        schema="s.yaml",
        connector="c.yaml",
        strategy={"name": "hybrid", "shortlist": 7},
    )
    same = apply_params(cfg, {"select": {"strategy": "hybrid", "budget": 9}, "issues": {"folds": 3}})
    assert same.strategy.params() == {"shortlist": 7} and same.budget == 9 and same.issues.folds == 3
    other = apply_params(cfg, {"select": {"strategy": "margin"}, "embed": {"max_seq_length": 64}})
    assert other.strategy.name == "margin" and other.strategy.params() == {}
    assert other.embed.max_seq_length == 64 and other.model == "logreg_knn"
    assert apply_params(cfg, {"select": {"model": "logreg"}}).model == "logreg"
    with pytest.raises(
        ConfigError, match=r"select\.budgets: unknown key.*budget, curve_rounds, model, strategy"
    ):
        apply_params(cfg, {"select": {"budgets": 9}})
    with pytest.raises(ConfigError, match="unknown section"):
        apply_params(cfg, {"selects": {}})
    with pytest.raises(ConfigError, match="budget"):
        apply_params(cfg, {"select": {"budget": 0}})


@pytest.mark.slow
def test_comparing_strategies_creates_no_task_in_a_real_label_studio(
    tmp_path: Path, data_dir: Path, label_studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curation.connectors.base import Project
    from curation.connectors.label_studio import LabelStudio
    from tests.support.label_studio_server import TOKEN

    monkeypatch.setenv("CURATION_EXP_LS_TOKEN", TOKEN)
    make_project(tmp_path, data_dir)
    title = f"exp-{tmp_path.name}"
    profile = {
        "name": "label_studio",
        "url": label_studio.url,
        "token_env": "CURATION_EXP_LS_TOKEN",
        "project_title": title,
    }
    (tmp_path / "connectors" / "ls.yaml").write_text(yaml.safe_dump(profile))
    loop = yaml.safe_load((tmp_path / "loops" / "example.yaml").read_text())
    (tmp_path / "loops" / "example.yaml").write_text(
        yaml.safe_dump({**loop, "connector": "connectors/ls.yaml"})
    )
    dvc_yaml = (tmp_path / "dvc.yaml").read_text().replace("connectors/files.yaml", "connectors/ls.yaml")
    (tmp_path / "dvc.yaml").write_text(dvc_yaml)
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "label studio")
    sh(tmp_path, "dvc", "repro")  # push.enabled is true: the selection is queued (asked for)
    ls = LabelStudio(url=label_studio.url, token_env="CURATION_EXP_LS_TOKEN", project_title=title)
    project = Project("example", [], tmp_path / "annotations" / "example")
    assert sum(len(v) for v in ls.existing(project).values()) == 15
    sh(tmp_path, "git", "add", "dvc.lock")
    sh(tmp_path, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "round")
    exp = sh(tmp_path, "dvc", "exp", "run", "-S", "select.strategy=margin")
    assert "push" in ran(exp)  # the stage ran ...
    assert sum(len(v) for v in ls.existing(project).values()) == 15  # ... and created no task
    assert metrics(tmp_path)["push.json"]["pushed"] == 0
