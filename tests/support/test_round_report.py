"""The round report of a real round, rendered by a real headless Chromium.

Two rounds of a BANKING77 project with planted label errors (oracle annotator, local store,
engine local): round 1 through ``run_round``, round 2 through ``curation run``. Round 2's
report is read back from the DOM Chromium laid out: every section there with content, the
plots decoded, one reason per selected row.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from curation.load import load_loop
from curation.orchestration.round import run_round
from curation.orchestration.state import store_for
from curation.support.manifest import read_manifest
from tests.support.browser import rendered, screenshot
from tests.support.projects import make_project

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
SECTIONS = [
    "summary",
    "quarantine",
    "label-issues",
    "other-issues",
    "leaks",
    "selection",
    "curve",
    "map",
    "confusion",
]
PLOTS = ["Learning curve", "Embedding map", "Confusion of given and suggested labels"]


def whole(cell: str | dict) -> str:
    """A text cell's whole text (a long one is cut, whole in its details element)."""
    return cell["whole"] if isinstance(cell, dict) else cell


def plant_label_errors(project: Path, per_class: int = 3) -> dict[str, str]:
    """Give ``per_class`` labeled rows of each intent the next intent's label (the oracle keeps
    the truth in ``hidden_label``); return the moved ids and their true labels."""
    path = project / "data" / "pool.parquet"
    df = pl.read_parquet(path)
    classes = sorted(df["label"].drop_nulls().unique().to_list())
    shift = dict(zip(classes, classes[1:] + classes[:1]))
    labeled = df.filter(pl.col("label").is_not_null() & (pl.col("id") != "bad-1"))
    moved = labeled.group_by("label", maintain_order=True).head(per_class)["id"]
    df = df.with_columns(
        pl.when(pl.col("id").is_in(moved.implode()))
        .then(pl.col("label").replace_strict(shift, default=None))
        .otherwise(pl.col("label"))
        .alias("label")
    )
    df.write_parquet(path)
    return dict(df.filter(pl.col("id").is_in(moved.implode())).select("id", "hidden_label").iter_rows())


@pytest.mark.slow
def test_round_report_shows_every_section_of_a_real_round_in_chromium(tmp_path: Path, data_dir: Path) -> None:
    loop = make_project(
        tmp_path,
        data_dir,
        engine="local",
        version={"name": "local"},
        strategy={"name": "hybrid", "review_share": 0.2},
        issues={"detectors": [{"name": "label"}, {"name": "near_duplicate"}], "folds": 3},
    )
    moved = plant_label_errors(tmp_path)
    cfg = load_loop(loop)
    first = run_round(cfg)
    assert first.report == "rounds/unit/round-1/report.html"
    cli = subprocess.run(
        [sys.executable, "-m", "curation", "run", "loops/unit.yaml"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    report = tmp_path / "rounds" / "unit" / "round-2" / "report.html"
    assert f"report: {report}" in cli.stdout, cli.stdout[-2000:]

    store = store_for(cfg)
    page = store.read_bytes(store.head, "rounds/unit/round-2/report.html").decode()
    assert page == report.read_text(encoding="utf-8")  # versioned with the round
    manifest = read_manifest(store, "round-2")
    assert manifest.outputs["report"] == "rounds/unit/round-2/report.html"
    assert {"evidence", "label_quality", "pred_probs"}.isdisjoint(manifest.state["issues"])  # arrays stay out
    quality = store.read(store.head, "rounds/unit/round-2/label_quality.parquet")  # every labeled row, ranked
    assert (
        quality["rank"].to_list() == list(range(1, len(quality) + 1)) and quality["label_quality"].is_sorted()
    )
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # self-contained
    second = {r.round: r for r in store.history()}[2].metrics

    dom = rendered(page, tmp_path)
    assert list(dom["sections"]) == SECTIONS
    assert [i["alt"] for i in dom["images"] if i["ok"] and i["width"] > 200 and i["height"] > 150] == PLOTS
    t = dom["tables"]
    pool = pl.read_parquet(tmp_path / "data" / "pool.parquet")
    texts = dict(zip(pool["id"], pool["text"]))
    truth = dict(zip(pool["id"], pool["hidden_label"]))

    # What was quarantined and why.
    assert [(r["id"], r["reason"]) for r in t["quarantine"]] == [("bad-1", "text: str_length(1, None)")]
    assert t["quarantine-reasons"] == [{"reason": "text: str_length(1, None)", "rows": "1"}]
    # The label issues: texts, given and suggested labels, review status; most planted errors.
    issues = t["label-issues"]
    assert len(issues) == second["label_issues"] > 0
    assert all(
        whole(r["text"]) == texts[r["id"]] and r["given_label"] != r["suggested_label"] for r in issues
    )
    flagged = {r["id"] for r in issues}
    assert len(flagged & set(moved)) >= len(moved) // 2, (flagged, moved)
    # The reviewers' verdicts: round 1's reviews and round 2's, each against the truth.
    verdicts = t["verdicts"]
    assert {r["round"] for r in verdicts} == {"1", "2"}
    assert len(verdicts) == first.metrics["reviews"] + second["reviews"] > 5
    for r in verdicts:
        assert r["reviewer_label"] == truth[r["id"]] and whole(r["text"]) == texts[r["id"]]
        assert r["verdict"] == (
            f"confirmed: relabeled {truth[r['id']]}" if r["id"] in moved else "rejected: label kept"
        )
    assert sum(r["verdict"].startswith("confirmed") for r in verdicts) >= 5
    # Other flags: each near-duplicate names its partner with the partner's text.
    dups = t["other-issues"]
    assert dups and all(r["issue"] == "near_duplicate" for r in dups)
    assert all(r["partner"] in texts and whole(r["partner_text"]) == texts[r["partner"]] for r in dups)
    # What was selected and why: the round's selection, one reason of its own per row.
    sel = t["selection"]
    chosen = store.read(store.head, "rounds/unit/round-2/selection.parquet")
    assert [r["id"] for r in sel] == chosen["id"].to_list() and len(sel) == 25
    n_review = int(second["reviews"])
    assert [r["kind"] for r in sel] == ["review"] * n_review + ["label"] * (25 - n_review)
    assert all(whole(r["text"]) == texts[r["id"]] for r in sel)
    assert len({r["reason"] for r in sel}) == 25
    assert all(r["reason"].startswith("review: suspected label error #") for r in sel[:n_review])
    shortlist = r"margin [01]\.\d{3}\); most typical of shortlist cluster \d+, which holds \d+ of the"
    assert all(re.search(shortlist, r["reason"]) for r in sel[n_review:]), sel[n_review]["reason"]
    # The learning curve: both rounds, as committed.
    assert [(r["round"], r["labels"]) for r in t["curve"]] == [
        ("1", str(first.metrics["labels"])),
        ("2", str(int(second["labels"]))),
    ]
    assert float(t["curve"][1]["accuracy"]) == pytest.approx(second["accuracy"], abs=1e-4)
    # The map: every valid row (under the cap), the groups counted in the caption.
    caption = dom["captions"]["Embedding map"]
    assert caption.startswith("300 rows (") and "25 selected" in caption, caption
    assert int(re.search(r"(\d+) flagged", caption).group(1)) > 0
    # The confusion over the rows labeled when round 2 began.
    assert f"Over the {first.metrics['labels']} labeled rows" in dom["captions"][PLOTS[2]]
    assert t["confused-pairs"] and all(int(r["rows"]) > 0 for r in t["confused-pairs"])

    shot = ARTIFACTS / "round_report.png"
    screenshot(report, shot, tmp_path, height=6000)
    assert shot.stat().st_size > 100_000
    print(f"screenshot: {shot}")
