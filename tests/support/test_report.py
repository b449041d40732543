"""The sweep report rendered by a real headless Chromium (Debian's `chromium` package)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from curation.config import IssuesConfig
from curation.orchestration.sweep import SweepSettings, run_sweep
from tests.support.browser import rendered, screenshot

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
PLOTS = ["Issue counts", "Worst examples", "Label shares", "Drift over time"]
TABLES = ["summary", "gates", "drift", "worst", "checks", "broken", "duplicates", "issues-label"]


def readable(cell: str | dict, whole: str) -> bool:
    """A text cell shows ``whole`` on one line, or its start cut at a word, whole on hover
    and in the opened details."""
    flat = " ".join(whole.split())
    if isinstance(cell, str):
        return cell == whole and len(whole) <= 120
    shown = cell["shown"]
    return (
        shown.endswith("…")
        and 20 <= len(shown) <= 121
        and flat.startswith(shown[:-1])
        and flat[len(shown) - 1] in " ,;:."  # cut between words
        and whole.startswith(cell["title"])
        and cell["whole"] == whole
    )


@pytest.mark.slow
def test_sweep_report_renders_plots_and_tables_in_chromium(tmp_path: Path, data_dir: Path) -> None:
    df = pl.read_parquet(data_dir / "banking77_train.parquet").filter(pl.col("id") < 1300)
    classes = sorted(df["label"].drop_nulls().unique().to_list())
    # Long texts: a 20 Newsgroups post twice (near-duplicates of each other) and another one.
    posts = pl.read_parquet(data_dir / "20news_test.parquet").filter(pl.col("text").str.len_chars() > 800)
    long = [posts["text"][0], posts["text"][0], posts["text"][1]]
    df = pl.concat(
        [df, pl.DataFrame({"id": [5000, 5001, 5002], "text": long, "label": classes[2]})],
        how="vertical_relaxed",
    )
    df.write_parquet(tmp_path / "week1.parquet")
    moved = df.with_columns(
        pl.when((pl.col("label") == classes[0]) & (pl.col("id") % 2 == 0))
        .then(pl.lit(classes[1]))
        .otherwise(pl.col("label"))
        .alias("label")
    )
    moved.write_parquet(tmp_path / "week2.parquet")
    s = SweepSettings(
        dataset=str(tmp_path / "week1.parquet"),
        schema=ROOT / "schemas" / "banking77.yaml",
        history=tmp_path / "sweeps",
        issues=IssuesConfig(recipe="reference", folds=3),
        root=ROOT,
    )
    run_sweep(s)
    s.dataset = str(tmp_path / "week2.parquet")
    result = run_sweep(s)
    html = (result.folder / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # self-contained
    assert html.count('src="data:image/png;base64,') == len(PLOTS)

    page = rendered(html, tmp_path)
    assert [i["alt"] for i in page["images"] if i["ok"] and i["width"] > 100] == PLOTS  # decoded
    tables = page["tables"]
    assert all(len(tables[t]) > 0 for t in TABLES), {t: len(r) for t, r in tables.items()}
    assert len(tables["broken"]) == 2  # ids 1290 (null label) and 1291 (null text)
    assert len(tables["drift"]) == 3  # label, embedding and text
    assert "FAILED" in html and "label_drift" in html

    texts = dict(zip(df["id"].cast(pl.String), df["text"]))
    # The worst examples: every text readable (cut at a word, whole on hover and in details).
    assert {r["issue"] for r in tables["worst"]} == {"label", "near_duplicate", "outlier"}
    assert all(readable(r["text"], texts[r["id"]]) for r in tables["worst"]), tables["worst"][:3]
    assert any(isinstance(r["text"], dict) for r in tables["worst"])  # a long post, cut
    # The drift plot's effect sizes, next to the p-values, in its caption.
    drift = {d["name"]: d for d in result.summary["drift"]}
    caption = page["captions"]["Drift over time"]
    assert f"label drift: TV distance {drift['label']['distance']:.3f}" in caption, caption
    assert "embedding drift: pocket share " in caption, caption
    assert drift["embedding"]["test"].startswith("kNN pockets"), drift["embedding"]
    assert f"p = {drift['label']['p_value']:.2g}" in caption
    # Each near-duplicate names its partner: the partner's id and text, another row.
    dups = tables["issues-near_duplicate"]
    assert dups and all(r["partner"] in texts and r["partner"] != r["id"] for r in dups)
    assert all(readable(r["partner_text"], texts[r["partner"]]) for r in dups)
    partner = {r["id"]: r["partner"] for r in dups}
    assert partner["5000"] == "5001" and partner["5001"] == "5000"  # the post and its copy
    assert "partner" not in tables["issues-label"][0]  # only near-duplicates have one

    shot = ARTIFACTS / "sweep_report.png"
    screenshot(result.folder / "report.html", shot, tmp_path, height=4200)
    assert shot.stat().st_size > 100_000
    print(f"screenshot: {shot}")
