"""The sweep report rendered by a real headless Chromium (Debian's `chromium` package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from curation.config import IssuesConfig
from curation.orchestration.sweep import SweepSettings, run_sweep

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PLOTS = ["Issue counts", "Worst examples", "Label shares", "Drift over time"]
TABLES = ["summary", "gates", "drift", "checks", "broken", "duplicates", "issues-label"]

#: Appended to a copy of the report: records what Chromium actually decoded and laid out.
PROBE = """<script>
const imgs = [...document.images];
document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 100).length;
document.body.dataset.tables = [...document.querySelectorAll("table")].map(t => t.id + ":" + t.tBodies[0].rows.length).join(",");
</script>"""


def chromium(*args: str, profile: Path) -> str:
    """Run headless Chromium with a fresh profile, no network chatter; return its stdout."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.slow
def test_sweep_report_renders_plots_and_tables_in_chromium(tmp_path: Path, data_dir: Path) -> None:
    df = pl.read_parquet(data_dir / "banking77_train.parquet").filter(pl.col("id") < 1300)
    df.write_parquet(tmp_path / "week1.parquet")
    classes = sorted(df["label"].drop_nulls().unique().to_list())
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

    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), profile=tmp_path / "p1")
    assert re.search(rf'data-decoded="{len(PLOTS)}"', dom), dom[:500]
    tables = dict(t.split(":") for t in re.search(r'data-tables="([^"]*)"', dom).group(1).split(","))
    assert all(int(tables[t]) > 0 for t in TABLES), tables
    assert int(tables["broken"]) == 2  # ids 1290 (null label) and 1291 (null text)
    assert int(tables["drift"]) == 2  # label and embedding
    for title in PLOTS:
        assert f'alt="{title}"' in dom
    assert "FAILED" in dom and "label_drift" in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "sweep_report.png"
    shot.unlink(missing_ok=True)
    chromium(
        "--window-size=1200,3600",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        (result.folder / "report.html").as_uri(),
        profile=tmp_path / "p2",
    )
    assert shot.stat().st_size > 100_000
    print(f"screenshot: {shot}")
