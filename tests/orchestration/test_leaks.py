"""Leaky splits and ``curation explain`` on one real round: 30 light edits of held-out
BANKING77 rows planted in the labeled pool (local engine, local store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curation.load import load_loop
from curation.orchestration.round import RoundResult, run_round
from tests.support.cli import cli
from tests.support.projects import light_edit, make_project

ROOT = Path(__file__).resolve().parents[2]
PLANTED = 30
pytestmark = pytest.mark.xdist_group("leaks")  # one round per worker, shared by the tests here


@pytest.fixture(scope="module")
def leaky(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[RoundResult, Path, dict[str, Any]]:
    """One round on 25 intents (1,500 pool rows, 500 labeled; 300 held-out rows), with 30 held-out
    rows planted, lightly edited and labeled, in the pool; the planted pairs."""
    tmp = tmp_path_factory.mktemp("leaks")
    loop = make_project(
        tmp,
        data_dir,
        n_classes=25,
        per_class=60,
        budget=20,
        engine="local",
        version={"name": "local"},
        embed={"max_seq_length": 64},  # the session's embedding cache (tests/conftest.py)
        model="logreg",
        issues={"views": ["knn"], "detectors": [{"name": "label"}, {"name": "near_duplicate"}]},  # fast
    )
    test = pl.read_parquet(tmp / "data" / "test.parquet").group_by("label", maintain_order=True).head(12)
    test.write_parquet(tmp / "data" / "test.parquet")
    src = test[:: len(test) // PLANTED].head(PLANTED)
    planted = pl.DataFrame(
        {
            "id": [f"leak-{i}" for i in range(PLANTED)],
            "text": [light_edit(t, i) for i, t in enumerate(src["text"])],
            "label": src["label"],
            "hidden_label": src["label"],
        }
    )
    pool = pl.read_parquet(tmp / "data" / "pool.parquet")
    pl.concat([pool, planted]).write_parquet(tmp / "data" / "pool.parquet")
    result = run_round(load_loop(loop))
    pairs = dict(zip(planted["id"], src["id"].cast(pl.String)))
    return result, loop, pairs


@pytest.mark.slow
def test_planted_near_duplicates_of_held_out_rows_are_reported(
    leaky: tuple[RoundResult, Path, dict[str, Any]],
) -> None:
    result, loop, pairs = leaky
    leaks = result.tables["leaks"]
    found = {(e, p) for e, p in zip(leaks["eval_id"], leaks["pool_id"])}
    recall = sum((e, p) in found for p, e in pairs.items()) / len(pairs)
    assert recall >= 0.95, f"recall {recall:.2f}"
    planted = leaks.filter(pl.col("pool_id").str.starts_with("leak-"))
    assert planted["in_train"].all() and (planted["similarity"] >= 0.92).all()
    assert (planted["eval_text"] != planted["pool_text"]).all()
    m = result.metrics
    assert m["leaked_rows"] == leaks["eval_id"].n_unique() >= 0.95 * len(pairs)
    assert 0.0 < m["accuracy_without_leaks"] < m["accuracy"] <= 1.0  # the leaked rows were easy
    stored = pl.read_parquet(loop.parent.parent / "rounds" / "unit" / "round-1" / "leaks.parquet")
    assert stored.height == leaks.height
    page = (loop.parent.parent / str(result.report)).read_text()
    assert "Leaky splits" in page and "accuracy_without_leaks" in page
    print(
        f"recall {recall:.3f}, accuracy {m['accuracy']:.3f}, without leaks {m['accuracy_without_leaks']:.3f}"
    )


@pytest.mark.slow
def test_explain_prints_a_rows_flags_neighbours_classes_and_why(
    leaky: tuple[RoundResult, Path, dict[str, Any]],
) -> None:
    from curation.steps.embed import embed

    result, loop, _ = leaky
    project, tasks = loop.parent.parent, result.tables["tasks"]
    picked = tasks.filter(pl.col("kind") == "label").row(0, named=True)
    r = cli("explain", "1", picked["id"], "--loop", str(loop), "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert (e["id"], e["role"], e["text"]) == (picked["id"], "pool", picked["text"])
    assert e["selected"]["rank"] == picked["rank"] and e["selected"]["reason"] == picked["reason"]
    assert e["why"].startswith(f"selected to label (rank {picked['rank']} of 20)")
    assert e["probabilities"][0]["label"] == picked["prediction"]  # the round model's top class
    valid = result.tables["valid"].with_columns(pl.col("id").cast(pl.String))
    texts = dict(zip(valid["id"], valid["text"]))
    nbrs = [n["id"] for n in e["neighbours"]]
    X = embed([picked["text"], *(texts[i] for i in nbrs)], load_loop(loop).embed, root=ROOT, engine="local")
    assert [n["similarity"] for n in e["neighbours"]] == pytest.approx((X[1:] @ X[0]).tolist(), abs=1e-3)
    labels = dict(zip(valid["id"], valid["label"]))
    assert [n["label"] for n in e["neighbours"]] == [labels[i] for i in nbrs]

    flagged = result.tables["issues"].filter(pl.col("issue") == "label")
    sent = set(tasks.filter(pl.col("kind") == "review")["id"])
    kept = flagged.filter(~pl.col("id").is_in(list(sent))).row(0, named=True)
    r = cli("explain", "round-1", kept["id"], "--loop", str(loop), cwd=project)
    assert r.returncode == 0, r.stderr
    assert f"id {kept['id']}: labeled" in r.stdout and "not sent to review" in r.stdout
    assert kept["suggested_label"] in r.stdout and "nearest neighbours" in r.stdout

    from typer.testing import CliRunner

    from curation.cli import app

    for args, expected in ((("7", picked["id"]), "no round 7"), (("1", "no-such-row"), "'no-such-row'")):
        res = CliRunner().invoke(app, ["explain", *args, "--loop", str(loop)])  # in process: fast
        assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in res.output, res.stderr


@pytest.mark.slow
def test_a_sweep_of_the_loop_reports_the_same_leaks(leaky: tuple[RoundResult, Path, dict[str, Any]]) -> None:
    result, loop, pairs = leaky
    project = loop.parent.parent
    from curation.orchestration.sweep import one_line, sweep_once, sweep_settings

    sweep = sweep_once(sweep_settings(None, None, loop=loop))  # the loop's eval_dataset is the held-out set
    folder = project / "sweeps" / "unit" / "sweep-0001"
    assert sweep.folder == folder
    summary = json.loads((folder / "summary.json").read_text())
    leaks = pl.read_parquet(folder / "leaks.parquet")
    found = set(zip(leaks["eval_id"], leaks["pool_id"]))
    assert sum((e, p) in found for p, e in pairs.items()) / len(pairs) >= 0.95
    round_leaks = result.tables["leaks"]
    assert found == set(zip(round_leaks["eval_id"], round_leaks["pool_id"]))  # the same rows, the same pairs
    assert summary["leaked_rows"] == result.metrics["leaked_rows"] and summary["eval_rows"] == 300
    assert f"{summary['leaked_rows']} of 300 held-out rows leak" in one_line(summary)
    assert "Leaky splits" in (folder / "report.html").read_text()
