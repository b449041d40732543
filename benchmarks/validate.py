"""Validation speed and memory: the Ray job vs Pandera in one process vs a polars floor.

A generated dataset (``id, text, label, x, y``; 2% bad rows of every kind) is written as
Parquet files of 1M rows. Each contender reads those files, runs the same checks (column
checks, unique ids, allowed labels, minimum rows per class, conflicting duplicate texts) and
writes the valid rows and the quarantine as Parquet:

- ``ray``: :func:`curation.steps.validate.validate_source` with ``engine="ray"`` (Ray tasks over the blocks;
  Ray's start-up and the first, cold run are timed apart);
- ``pandera_polars``: read everything, :func:`curation.steps.validate.validate` in process;
- ``polars_floor``: read everything, one hand-written polars expression per check.

Each run is a process of its own (so peak memory is its own; Ray's start-up and a first,
cold run in it are timed apart), and the contenders take turns, ``--repeat`` rounds of one
run each, so that a Ray run and the floor run just before it share the machine's state: the
table shows medians, and Ray's ratio to the floor is the median of those paired ratios.
Peak memory is the Ray job's: the driver plus every Ray process, sampled every 50 ms, as RSS
(an object-store page counts once per process that maps it) and as PSS (a shared page split
among the processes that map it: the memory actually used). It is sampled in one more run in
the same process, not timed: reading every Ray process's PSS that often slows the Ray job
(``sampled_run_s`` in the JSON shows by how much).

Run: ``.venv/bin/python benchmarks/validate.py`` (1M and 10M rows; ``--rows 1000000`` for one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "validate.json"
LABELS = [f"intent_{i:02d}" for i in range(20)]
FILE_ROWS = 1_000_000
MIN_PER_CLASS = 5

SCHEMA_YAML = f"""
schema_type: polars_dataframe
api: polars
columns:
  id: {{dtype: Int64, nullable: false, unique: true}}
  text: {{dtype: String, nullable: false, str_length: {{min_value: 1}}}}
  label: {{dtype: String, nullable: false, isin: {LABELS}}}
  x: {{dtype: Float64, nullable: false, in_range: {{min_value: 0, max_value: 1}}}}
  y: {{dtype: Float64, nullable: true, in_range: {{min_value: 0, max_value: 1}}}}
"""


def make_file(start: int, n: int, seed: int) -> pl.DataFrame:
    """``n`` rows from id ``start``; 2% bad: null/empty text, unknown label, x out of range,
    duplicate id, same text with another label."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    kind = np.where(rng.random(n) < 0.02, rng.integers(0, 6, n), -1)
    df = pl.DataFrame(
        {
            "id": ids,
            "k": kind,
            "w": rng.integers(0, 1000, n),
            "label": np.array(LABELS)[rng.integers(0, len(LABELS), n)],
            "x": rng.random(n),
            "y": rng.random(n),
        }
    )
    text = pl.format("my card {} does not work after transfer {}", pl.col("w"), pl.col("id"))
    k = pl.col("k")
    return df.select(
        pl.when(k == 3).then(pl.col("id") - 1).otherwise(pl.col("id")).alias("id"),
        pl.when(k == 0)
        .then(None)
        .when(k == 1)
        .then(pl.lit(""))
        .when(k == 4)
        .then(pl.format("my card {} does not work after transfer {}", pl.col("w").shift(1), pl.col("id") - 1))
        .otherwise(text)
        .alias("text"),
        pl.when(k == 2)
        .then(pl.lit("no_such_intent"))
        .when(k == 4)
        .then(pl.lit("conflict"))
        .otherwise(pl.col("label"))
        .alias("label"),
        pl.when(k == 5).then(pl.lit(3.0)).otherwise(pl.col("x")).alias("x"),
        "y",
    )


def make_dataset(rows: int, data_dir: Path) -> Path:
    folder = data_dir / f"validate-{rows}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, rows, FILE_ROWS)):
        make_file(start, min(FILE_ROWS, rows - start), seed=i).write_parquet(
            folder / f"part-{i:03d}.parquet", row_group_size=131_072
        )
    (folder / "_done").touch()
    return folder


def floor(folder: Path, out: Path) -> int:
    """The same checks as hand-written polars expressions over the whole table."""
    df = pl.read_parquet(folder / "*.parquet")
    text, label = pl.col("text"), pl.col("label")
    counts = label.count().over("label")
    bad = (
        text.is_null()
        | (text.str.len_chars() < 1)
        | label.is_null()
        | ~label.is_in(LABELS)
        | (counts < MIN_PER_CLASS)
        | pl.col("x").is_null()
        | ~pl.col("x").is_between(0, 1)
        | ~pl.col("y").is_between(0, 1).fill_null(True)
        | pl.col("id").is_null()
        | pl.col("id").is_duplicated()
        | (label.n_unique().over("text") > 1).fill_null(False)
    )
    df = df.with_columns(bad.alias("_bad"))
    df.filter(~pl.col("_bad")).drop("_bad").write_parquet(out / "valid.parquet")
    quarantine = df.filter(pl.col("_bad")).drop("_bad")
    quarantine.write_parquet(out / "quarantine.parquet")
    return len(quarantine)


def pandera_polars(folder: Path, out: Path) -> int:
    from curation.config import ValidateConfig
    from curation.steps.validate import load_schema, validate

    df = pl.read_parquet(folder / "*.parquet")
    res = validate(
        df,
        load_schema(out / "schema.yaml"),
        ValidateConfig(min_per_class=MIN_PER_CLASS, max_invalid_fraction=1.0),
        engine="local",
    )
    res.valid.write_parquet(out / "valid.parquet")
    res.quarantine.write_parquet(out / "quarantine.parquet")
    return len(res.quarantine)


def ray_job(folder: Path, out: Path) -> int:
    from curation.config import ValidateConfig
    from curation.steps.validate import load_schema, validate_source

    report = validate_source(
        folder,
        load_schema(out / "schema.yaml"),
        out,
        ValidateConfig(min_per_class=MIN_PER_CLASS, max_invalid_fraction=1.0),
        engine="ray",
    )
    return int(report["quarantined"])


def tree_memory_mb() -> tuple[float, float]:
    """RSS and PSS of this process and its children (Ray's): RSS counts a shared page (the
    object store's) once per process that maps it, PSS splits it among them."""
    import psutil

    me = psutil.Process()
    rss = pss = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            m = p.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + m.rss, pss + m.pss
    return rss / 2**20, pss / 2**20


class PeakSampler(threading.Thread):
    """Samples :func:`tree_memory_mb` every 50 ms until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = self.peak_pss = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            rss, pss = tree_memory_mb()
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)


def one(contender: str, rows: int, data_dir: Path, repeat: int) -> dict[str, Any]:
    """Run one contender ``repeat`` times in this process; its times and figures."""
    folder = make_dataset(rows, data_dir)
    fn = {"ray": ray_job, "pandera_polars": pandera_polars, "polars_floor": floor}[contender]
    result: dict[str, Any] = {}
    if contender == "ray":
        from curation.support.engine import ensure_ray

        t = time.perf_counter()
        ensure_ray(None)
        result["ray_start_s"] = time.perf_counter() - t
        time.sleep(2)
        result["idle_rss_mb"], result["idle_pss_mb"] = tree_memory_mb()  # Ray's own, before any work
    times, bad = [], 0
    sampler = PeakSampler()
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        out = Path(tmp)
        (out / "schema.yaml").write_text(SCHEMA_YAML)
        for _ in range(repeat + (1 if contender == "ray" else 0)):
            t = time.perf_counter()
            bad = fn(folder, out)
            times.append(time.perf_counter() - t)
        # Memory from one more run, not timed: reading the PSS of Ray's ten-odd processes every
        # 50 ms (their smaps) costs the kernel enough to slow the Ray job by 2.6 s at 10M.
        sampler.start()
        t = time.perf_counter()
        fn(folder, out)
        result["sampled_run_s"] = time.perf_counter() - t
        sampler.done.set()
        sampler.join()
    if contender == "ray":
        result["first_run_s"] = times.pop(0)
    driver_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(
        seconds=statistics.median(times),
        runs=times,
        quarantined=bad,
        peak_rss_mb=sampler.peak,
        peak_pss_mb=sampler.peak_pss,
        driver_peak_rss_mb=driver_mb,
    )
    return result


CONTENDERS = ("polars_floor", "pandera_polars", "ray")


def run_one(contender: str, rows: int, data_dir: Path) -> dict[str, Any]:
    """One timed run of ``contender`` in a process of its own (see :func:`one`)."""
    cmd = [sys.executable, __file__, "--one", contender, "--rows", str(rows), "--repeat", "1"]
    run = subprocess.run([*cmd, "--data-dir", str(data_dir)], capture_output=True, text=True, check=True)
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One contender's runs as one figure: median times, highest memory."""
    out = dict(runs[0])
    out["runs"] = [r["seconds"] for r in runs]
    for key in ("seconds", "first_run_s", "sampled_run_s", "ray_start_s", "idle_rss_mb", "idle_pss_mb"):
        if key in out:
            out[key] = statistics.median(r[key] for r in runs)
    for key in ("peak_rss_mb", "peak_pss_mb", "driver_peak_rss_mb"):
        out[key] = max(r[key] for r in runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "curation-bench")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(one(args.one, args.rows[0], args.data_dir, args.repeat)))
        return
    figures: dict[int, dict[str, Any]] = {}
    load_before = os.getloadavg()[0]
    for rows in args.rows:
        make_dataset(rows, args.data_dir)
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
        for _ in range(args.repeat):  # interleaved: a pair of runs shares the machine's state
            for c in CONTENDERS:
                runs[c].append(run_one(c, rows, args.data_dir))
        figures[rows] = {c: merge(r) for c, r in runs.items()}
        paired = [r["seconds"] / f["seconds"] for r, f in zip(runs["ray"], runs["polars_floor"])]
        figures[rows]["ray"]["vs_floor_runs"] = paired
    report(figures, {"load_before": round(load_before, 2), "load_avg": round(os.getloadavg()[0], 2)})


def report(figures: dict[int, dict[str, Any]], load: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="validation: rows/s (median), seconds, quarantined rows")
    for col in (
        "rows",
        "contender",
        "rows/s",
        "s (median)",
        "first run s",
        "quarantined",
        "vs floor",
        "peak RSS MB",
        "peak PSS MB",
    ):
        table.add_column(col, justify="right")
    for rows, by in figures.items():
        base = by["polars_floor"]["seconds"]
        for c, f in by.items():
            table.add_row(
                f"{rows:,}",
                c,
                f"{rows / f['seconds']:,.0f}",
                f"{f['seconds']:.2f}",
                f"{f.get('first_run_s', f['seconds']):.2f}",
                str(f["quarantined"]),
                f"{statistics.median(f.get('vs_floor_runs', [f['seconds'] / base])):.2f}x",
                f"{f['peak_rss_mb']:.0f}",
                f"{f['peak_pss_mb']:.0f}",
            )
        if "ray" in by:
            table.caption = f"Ray start-up (apart): {by['ray']['ray_start_s']:.1f}s"
    Console().print(table)
    small, big = min(figures), max(figures)
    out = {
        "rows_per_s": {c: small / f["seconds"] for c, f in figures[small].items()},
        "rows_per_s_10M": {c: big / f["seconds"] for c, f in figures[big].items()},
        "peak_rss_mb": {
            "1M": figures[small]["ray"]["peak_rss_mb"],
            "10M": figures[big]["ray"]["peak_rss_mb"],
        },
        "peak_pss_mb": {
            "1M": figures[small]["ray"]["peak_pss_mb"],
            "10M": figures[big]["ray"]["peak_pss_mb"],
        },
        "rows": {"1M": small, "10M": big},
        "seconds": {str(r): {c: f["seconds"] for c, f in by.items()} for r, by in figures.items()},
        "ray_start_s": figures[small]["ray"]["ray_start_s"],
        "ray_first_run_s": {str(r): by["ray"]["first_run_s"] for r, by in figures.items()},
        "sampled_run_s": {  # the run that sampled memory, timed apart
            str(r): {c: f["sampled_run_s"] for c, f in by.items()} for r, by in figures.items()
        },
        "peak_rss_mb_by_contender": {
            str(r): {c: f["peak_rss_mb"] for c, f in by.items()} for r, by in figures.items()
        },
        "peak_pss_mb_by_contender": {
            str(r): {c: f["peak_pss_mb"] for c, f in by.items()} for r, by in figures.items()
        },
        "driver_peak_rss_mb_by_contender": {
            str(r): {c: f["driver_peak_rss_mb"] for c, f in by.items()} for r, by in figures.items()
        },
        "ray_idle_rss_mb": {str(r): by["ray"]["idle_rss_mb"] for r, by in figures.items()},
        "ray_idle_pss_mb": {str(r): by["ray"]["idle_pss_mb"] for r, by in figures.items()},
        "ray_vs_floor": {  # the median of the ratios of runs made side by side
            str(r): statistics.median(by["ray"]["vs_floor_runs"]) for r, by in figures.items()
        },
        "ray_vs_floor_runs": {str(r): by["ray"]["vs_floor_runs"] for r, by in figures.items()},
        **load,  # the load average before the run (other work) and at its end
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
