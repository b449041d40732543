"""Scheduled sweeps: the interval parser, the in-process schedule, and the lock against overlaps."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from curation.errors import BusyError, ConfigError
from curation.orchestration.schedule import every, parse_every, run_lock

ROOT = Path(__file__).resolve().parents[2]
CURATION = str(Path(sys.executable).parent / "curation")
HOLD = """
import sys, time
from pathlib import Path
from curation.orchestration.schedule import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_parse_every() -> None:
    assert parse_every("6h") == 21600 and parse_every("1h30m") == 5400 and parse_every("2d") == 172800
    for bad in ("6", "six hours", "0s", "5h later"):
        with pytest.raises(ConfigError, match="--every"):
            parse_every(bad)


def test_every_keeps_the_interval_and_goes_on_after_a_failed_run() -> None:
    starts: list[float] = []
    errors: list[Exception] = []

    def job() -> None:
        starts.append(time.monotonic())
        if len(starts) == 2:
            raise BusyError("taken")

    assert every(0.2, job, runs=3, on_error=errors.append) == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.18 < g < 0.6 for g in gaps), gaps
    assert [str(e) for e in errors] == ["taken"]


def test_a_second_run_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    lock = tmp_path / ".sweep.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=f"pid {holder.pid}"), run_lock(lock):
            pass
        res = subprocess.run(
            [CURATION, "sweep", "x.parquet", "--schema", "s.yaml", "--history", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 5 and "another run holds" in res.stderr
    finally:
        holder.kill()
        holder.wait()
    with run_lock(lock):  # released when its holder died
        pass


#: The detectors the scheduled sweep runs: every one, the new ones named in its summary.
SWEPT = [
    "label",
    "outlier",
    "near_duplicate",
    "exact_duplicate",
    "non_iid",
    "underperforming_group",
    "data_valuation",
]


@pytest.mark.slow
def test_sweep_every_runs_on_schedule_and_compares_with_the_last(tmp_path: Path, data_dir: Path) -> None:
    df = pl.read_parquet(data_dir / "banking77_train.parquet").filter(pl.col("id") < 600)
    df.write_parquet(tmp_path / "d.parquet")
    history = tmp_path / "sweeps"
    res = subprocess.run(
        [
            CURATION,
            "sweep",
            str(tmp_path / "d.parquet"),
            "--schema",
            "schemas/banking77.yaml",
            "--history",
            str(history),
            "--recipe",
            "reference",
            "--folds",
            "3",
            "--every",
            "1s",
            "--runs",
            "2",
            *[arg for d in SWEPT for arg in ("--detector", d)],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [json.loads(x) for x in (history / "history.jsonl").read_text().splitlines()]
    assert [x["sweep"] for x in lines] == [1, 2]
    second = json.loads((history / "sweep-0002" / "summary.json").read_text())
    assert second["compared_with"] == "sweep-0001"
    assert [(d["name"], d["drift"]) for d in second["drift"]] == [
        ("label", False),
        ("embedding", False),
        ("text", False),
    ]  # the same data twice
    assert second["detectors"] == SWEPT
    assert second["issues"]["non_iid"] > 0  # the file is sorted by intent
    issues = pl.read_parquet(history / "sweep-0002" / "issues.parquet")
    assert {"p_value", "cluster", "group", "partner"} <= set(issues.columns)
