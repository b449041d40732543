"""Pool-based simulation: the learning curve machinery and `curation simulate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from curation.errors import DataError
from curation.orchestration.simulate import Curve, simulate, write_curves
from curation.strategies.base import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]


def blobs(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(classes, 16))
    y = rng.integers(classes, size=n)
    X = (mu[y] + 0.6 * rng.normal(size=(n, 16))).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def test_simulate_asks_the_oracle_once_per_label_and_learns() -> None:
    X, y = blobs(400, 4, 0)
    X_test, y_test = blobs(200, 4, 0)
    asked: list[int] = []

    def answer(pos: np.ndarray) -> np.ndarray:
        asked.extend(pos.tolist())
        return y[pos]

    cv = simulate(
        X,
        y,
        X_test,
        y_test,
        STRATEGIES.create("margin"),
        rounds=3,
        budget=20,
        seeds=[0, 1],
        n_classes=4,
        answer=answer,
    )
    assert cv.labels == [20, 40, 60]
    assert np.array(cv.accuracy).shape == (2, 3)
    assert len(asked) == 2 * 60 and len(set(asked[:60])) == 60
    assert cv.mean[-1] > 0.8  # four separable blobs: 60 labels are plenty
    again = simulate(
        X, y, X_test, y_test, STRATEGIES.create("margin"), rounds=3, budget=20, seeds=[0, 1], n_classes=4
    )
    assert again.accuracy == cv.accuracy


def test_simulate_refuses_more_labels_than_the_pool_has() -> None:
    X, y = blobs(50, 2, 0)
    with pytest.raises(DataError, match="pool has 50"):
        simulate(X, y, X, y, STRATEGIES.create("random"), rounds=3, budget=20, seeds=[0], n_classes=2)


def test_curve_summary_and_files(tmp_path: Path) -> None:
    cv = Curve("x", [100, 200, 300], [[0.5, 0.86, 0.91], [0.6, 0.96, 0.93]])
    assert cv.aulc == pytest.approx((0.55 + 0.91 + 0.92) / 3)
    assert cv.labels_to(0.90) == 200 and cv.labels_to(0.99) is None
    write_curves({"x": cv}, tmp_path)
    saved = json.loads((tmp_path / "curves.json").read_text())
    assert saved["x"]["labels_to_0.90"] == 200 and saved["x"]["std"][0] == pytest.approx(0.05)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cli_simulate_on_banking77_subset(tmp_path: Path, data_dir: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    run = [sys.executable, "-m", "curation"]
    subprocess.run([*run, "init", str(tmp_path)], check=True, capture_output=True, env=env)
    classes = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed"]
    for name, out in (("banking77_train", "dataset"), ("banking77_test", "test")):
        rows = pl.read_parquet(data_dir / f"{name}.parquet").filter(pl.col("label").is_in(classes))
        rows.head(100 if out == "dataset" else 40).with_columns(pl.col("id").cast(pl.String)).write_parquet(
            tmp_path / "data" / f"{out}.parquet"
        )
    loop = yaml.safe_load((tmp_path / "loops" / "example.yaml").read_text())
    loop.update(
        eval_dataset="data/test.parquet",
        budget=10,
        engine="local",
        strategy={"name": "hybrid", "shortlist": 3},
        connector="connectors/oracle.yaml",
    )
    (tmp_path / "loops" / "sim.yaml").write_text(yaml.safe_dump(loop))
    res = subprocess.run(
        [
            *run,
            "simulate",
            "loops/sim.yaml",
            "--rounds",
            "3",
            "--seeds",
            "2",
            "--compare",
            "random",
            "--out",
            "sim",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr
    assert "AULC" in res.stdout and "hybrid" in res.stdout
    curves = json.loads((tmp_path / "sim" / "curves.json").read_text())
    assert set(curves) == {"hybrid", "random"}
    for cv in curves.values():
        assert cv["labels"] == [10, 20, 30] and len(cv["per_seed"]) == 2
        assert all(0.0 <= a <= 1.0 for a in cv["mean"])
    assert curves["hybrid"]["mean"][-1] > 0.5  # 4 classes: well above chance after 30 labels
    assert (tmp_path / "sim" / "curves.png").stat().st_size > 1000
