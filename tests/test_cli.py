"""The CLI as a user meets it: the demo, and one-line errors with exit code 2 for bad config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from curation.orchestration.demo import issue_quality
from tests.support.cli import cli, git

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, data_dir: Path) -> Path:
    assert cli("init", str(tmp_path)).returncode == 0
    pl.read_parquet(data_dir / "banking77_test.parquet").head(50).write_parquet(
        tmp_path / "data" / "dataset.parquet"
    )
    return tmp_path


def write_loop(project: Path, **changes: object) -> Path:
    loop = yaml.safe_load((project / "loops" / "example.yaml").read_text())
    for key, value in changes.items():
        node = loop
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    path = project / "loops" / "bad.yaml"
    path.write_text(yaml.safe_dump(loop))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"strategy.name": "magic"}, ["strategy.name", "unknown strategy 'magic'", "kcenter", "random"]),
        (
            {"columns.text": "body"},
            ["columns.text", "column 'body' not in", "valid choices: id, text, label"],
        ),
        ({"dataset": "data/missing.parquet"}, ["dataset", "path not found", "missing.parquet"]),
        ({"budget": "lots"}, ["budget", "valid integer"]),
        ({"colour": "red"}, ["colour", "unknown field"]),
        ({"model": "boosted"}, ["model", "unknown model 'boosted'", "logreg_cv"]),
    ],
)
def test_bad_config_is_one_line_exit_2(project: Path, changes: dict, expected: list[str]) -> None:
    r = cli("run", str(write_loop(project, **changes)))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "bad.yaml" in lines[0]
    for text in expected:
        assert text in lines[0]


def test_init_lays_out_a_project(tmp_path: Path) -> None:
    r = cli("init", str(tmp_path / "p"))
    assert r.returncode == 0
    for rel in (
        "schemas/example.yaml",
        "loops/example.yaml",
        "connectors/files.yaml",
        "connectors/oracle.yaml",
    ):
        assert (tmp_path / "p" / rel).is_file()


def test_every_command_has_help_and_docs() -> None:
    import typer.main
    from typer.testing import CliRunner

    from curation.cli import app

    group = typer.main.get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    assert {"init", "run", "demo"} <= set(names)
    docs = (ROOT / "docs" / "cli.md").read_text()
    for name in names:
        h = CliRunner().invoke(app, [name, "--help"])
        assert h.exit_code == 0 and "Usage" in h.output, name
        assert f"## `curation {name}" in docs, f"docs/cli.md lacks `curation {name}`: run `make docs`"


@pytest.mark.slow
def test_demo_table_and_tags_reproduce_each_round(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = cli("demo", "--out", str(out), "--rounds", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((out / "summary.json").read_text())
    assert [row["round"] for row in rows] == [1, 2]
    planted = pl.read_parquet(out / "truth" / "planted_errors.parquet")
    corpus = pl.read_parquet(out / "data" / "corpus.parquet")
    assert len(planted) > 20
    labels_end = pl.read_parquet(out / "labels" / "demo.parquet")
    for row in rows:
        n = row["round"]
        quarantine = pl.read_parquet(out / f"rounds/demo/round-{n}/quarantine.parquet")
        issues = pl.read_parquet(out / f"rounds/demo/round-{n}/issues.parquet")
        tasks = pl.read_parquet(out / f"rounds/demo/round-{n}/tasks.parquet")
        before = labels_end.filter(pl.col("round") < n).select("id", pl.col("label").alias("_l"))
        labeled = (
            corpus.join(before, on="id", how="left")
            .with_columns(pl.coalesce("_l", "label").alias("label"))
            .filter(pl.col("label").is_not_null() & ~pl.col("id").is_in(quarantine["id"].implode()))
        )
        q = issue_quality(issues, planted, labeled.select("id", "label"))
        assert row["precision"] == pytest.approx(q["precision"]) and row["recall"] == pytest.approx(
            q["recall"]
        )
        assert 0 < row["found"] <= row["planted_errors"] and row["recall"] > 0.3
        assert row["quarantined"] == len(quarantine) > 0
        assert row["valid"] + row["quarantined"] == len(corpus)
        assert 0.5 < row["accuracy"] <= 1.0
        assert row["reviewed"] == (tasks["kind"] == "review").sum() == 20
        after = labels_end.filter(pl.col("round") <= n).join(planted, on="id")
        assert row["corrected"] == (after["label"] == after["true_label"]).sum()
    assert rows[1]["corrected"] > 0
    assert rows[1]["labels"] == rows[0]["labels"] + 180  # 180 new labels, 20 reviews a round
    assert "round 1" in r.stdout and "precision" in r.stdout

    assert git(out, "tag").split() == ["demo/round-1", "demo/round-2"]  # per-loop tags (issue 15)
    sizes = [len(labels_end.filter(pl.col("round") <= n)) for n in (1, 2)]
    for n, expected in zip((1, 2), sizes):
        git(out, "checkout", "-q", f"demo/round-{n}")
        subprocess.run([sys.executable, "-m", "dvc", "checkout", "-q", "--force"], cwd=out, check=True)
        assert len(pl.read_parquet(out / "labels" / "demo.parquet")) == expected
        assert (out / f"rounds/demo/round-{n}/manifest.json").exists()
        assert not (out / f"rounds/demo/round-{n + 1}").exists()


def reference_copy(tmp_path: Path, data_dir: Path) -> Path:
    """The reference project (loops/banking77.yaml, its schema and connectors) in a temp folder."""
    for sub in ("loops", "schemas", "connectors"):
        (tmp_path / sub).mkdir()
        for f in (ROOT / sub).glob("*.yaml"):
            (tmp_path / sub / f.name).write_text(f.read_text())
    loop = yaml.safe_load((tmp_path / "loops" / "banking77.yaml").read_text())
    loop.update(
        dataset=str(data_dir / "banking77_train.parquet"),
        eval_dataset=str(data_dir / "banking77_test.parquet"),
    )
    (tmp_path / "loops" / "banking77.yaml").write_text(yaml.safe_dump(loop))
    return tmp_path


PLUGIN_TYPOS = [
    (
        "loops/banking77.yaml",
        "strategy",
        {"name": "hybrid", "shortlst": 3},
        ["strategy.shortlst", "unknown field", "shortlist"],
    ),
    (
        "loops/banking77.yaml",
        "issues",
        {"detectors": [{"name": "outlier", "kk": 3}]},
        ["issues.detectors.0.kk", "unknown field"],
    ),
    (
        "loops/banking77.yaml",
        "version",
        {"name": "local", "lock_timout": 1},
        ["version.lock_timout", "unknown field"],
    ),
    (
        "loops/banking77.yaml",
        "version",
        {"name": "dvcc"},
        ["version.name", "unknown version store 'dvcc'", "lakefs"],
    ),
    ("connectors/files.yaml", "outbx", "out", ["files.yaml", "outbx", "unknown field"]),
    ("connectors/label_studio.yaml", "timeout_s", "abc", ["label_studio.yaml", "timeout_s", "valid number"]),
    ("connectors/files.yaml", "name", "filez", ["files.yaml", "unknown connector 'filez'"]),
]


@pytest.mark.parametrize(
    ("file", "key", "value", "expected"), PLUGIN_TYPOS, ids=[f"{t[0]}:{t[1]}" for t in PLUGIN_TYPOS]
)
def test_a_plugin_typo_is_exit_2_before_any_step_runs(
    tmp_path: Path, data_dir: Path, file: str, key: str, value: object, expected: list[str]
) -> None:
    project = reference_copy(tmp_path, data_dir)
    if file.startswith("connectors/label_studio"):  # the loop's connector is files: point it here
        loop = yaml.safe_load((project / "loops" / "banking77.yaml").read_text())
        (project / "loops" / "banking77.yaml").write_text(yaml.safe_dump({**loop, "connector": file}))
    doc = yaml.safe_load((project / file).read_text())
    doc[key] = value
    (project / file).write_text(yaml.safe_dump(doc))
    r = cli("run", str(project / "loops" / "banking77.yaml"), cwd=project)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for text in expected:
        assert text in lines[0]
    assert "validate" not in r.stdout + r.stderr  # no step started
    assert not (project / ".curation").exists() and not (project / "rounds").exists()
