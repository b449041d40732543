"""Data-quality sweeps of the real BANKING77 train set, through the CLI, with a real webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curation.orchestration.sweep import Gates, drift_tests
from curation.steps.drift import DEFAULT_EMBEDDING_TEST, embedding_drift, label_drift

ROOT = Path(__file__).resolve().parents[2]
CURATION = str(Path(sys.executable).parent / "curation")
#: The rows of banking77_train.parquet with a null text or label.
BROKEN = {1290, 1291, 4477, 4478, 7604}
#: Its repeated texts (1290 repeats 1246's text with a null label).
DUPLICATES = [{1246, 1290}, {1711, 1725}, {4596, 4597}, {6912, 6967}]


def sweep(*args: str) -> subprocess.CompletedProcess[str]:
    """`curation sweep ...` from the project root (so the embedding cache is the project's)."""
    return subprocess.run(
        [CURATION, "sweep", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


class Hook(BaseHTTPRequestHandler):
    """A webhook receiver that keeps every JSON body it is sent."""

    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Hook.received = []
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def shift_labels(df: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Half the rows of the first 10 intents relabeled as the 11th: same texts, other labels."""
    classes = sorted(df["label"].drop_nulls().unique().to_list())
    rng = np.random.default_rng(seed)
    move = pl.Series(rng.random(len(df)) < 0.5) & df["label"].is_in(classes[:10])
    return df.with_columns(pl.when(move).then(pl.lit(classes[10])).otherwise(pl.col("label")).alias("label"))


@pytest.mark.slow
def test_banking77_sweep_reports_broken_rows_duplicates_label_errors_then_drift(
    tmp_path: Path, data_dir: Path, webhook: str
) -> None:
    history = tmp_path / "sweeps"
    fast = ["--recipe", "reference", "--folds", "3", "--history", str(history)]
    first = sweep(str(data_dir / "banking77_train.parquet"), "--schema", "schemas/banking77.yaml", *fast)
    assert first.returncode == 0, first.stdout + first.stderr
    s1 = summary(history / "sweep-0001")
    assert s1["rows"] == 10006 and s1["quarantined"] == len(BROKEN)
    quarantine = pl.read_parquet(history / "sweep-0001" / "quarantine.parquet")
    assert set(quarantine["id"].to_list()) == BROKEN
    dups = pl.read_parquet(history / "sweep-0001" / "duplicates.parquet")
    groups = [set(map(int, g)) for g in dups.group_by("group").agg("id")["id"].to_list()]
    assert sorted(groups, key=min) == DUPLICATES
    issues = pl.read_parquet(history / "sweep-0001" / "issues.parquet")
    errors = issues.filter(pl.col("issue") == "label")
    assert s1["issues"]["label"] == len(errors) >= 20
    assert (errors["given_label"] != errors["suggested_label"]).all()
    assert "10006 rows, 5 broken, 8 duplicate texts" in first.stdout
    assert s1["drift"] == [] and s1["passed"]

    shifted = tmp_path / "banking77_shifted.parquet"
    shift_labels(pl.read_parquet(data_dir / "banking77_train.parquet")).write_parquet(shifted)
    second = sweep(str(shifted), "--schema", "schemas/banking77.yaml", *fast, "--webhook", webhook)
    assert second.returncode == 4, second.stdout + second.stderr
    assert "label_drift" in second.stderr
    s2 = summary(history / "sweep-0002")
    drift = {d["name"]: d for d in s2["drift"]}
    assert drift["label"]["drift"] and drift["label"]["p_value"] < 1e-10
    assert not drift["embedding"]["drift"]  # the same texts: only the labels moved
    assert drift["embedding"]["test"].startswith("kNN pockets")  # the default test
    assert not drift["text"]["drift"] and drift["text"]["p_value"] > 0.01
    # relabeling half of ten intents as another is drift and also a rise of label errors
    assert [g["gate"] for g in s2["gates"] if g["breached"]] == ["label_issue_increase", "label_drift"]
    assert s2["compared_with"] == "sweep-0001"
    assert len((history / "history.jsonl").read_text().splitlines()) == 2
    (posted,) = Hook.received
    assert posted["summary"]["sweep"] == 2 and "FAILED: label_issue_increase, label_drift" in posted["text"]


def test_drift_tests_on_real_label_counts_and_embeddings(data_dir: Path) -> None:
    df = pl.read_parquet(data_dir / "banking77_train.parquet").drop_nulls()
    counts = dict(df.group_by("label").len().iter_rows())
    moved = dict(shift_labels(df).group_by("label").len().iter_rows())
    assert not label_drift(counts, counts).drift
    shift = label_drift(counts, moved)
    assert shift.drift and shift.distance > 0.05
    rng = np.random.default_rng(0)
    a = rng.normal(size=(800, 16)).astype(np.float32)
    assert not embedding_drift(a[:400], a[400:]).drift
    assert embedding_drift(a[:400], a[400:] + 0.5).drift


def test_sweep_drift_runs_the_default_embedding_test_and_text_drift(tmp_path: Path, data_dir: Path) -> None:
    """What a sweep compares against the previous one's state (``drift_tests``), on real texts
    and synthetic vectors: the default embedding test, the chosen one, text drift."""
    rows = pl.read_parquet(data_dir / "banking77_train.parquet").drop_nulls()
    texts = rows["text"].sample(fraction=1.0, shuffle=True, seed=0).to_list()  # the file is by intent
    state = tmp_path / "sweep-0001" / "state"
    state.mkdir(parents=True)
    (state / "label_counts.json").write_text(json.dumps({"a": 500, "b": 500}))
    old = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)
    np.save(state / "embeddings.npy", old)
    pl.DataFrame({"text": texts[:1000]}).write_parquet(state / "texts.parquet")
    new = np.random.default_rng(1).normal(size=(400, 16)).astype(np.float32)
    same = drift_tests(state.parent, {"a": 500, "b": 500}, new, texts[1000:2000], Gates())
    assert [t.name for t in same] == ["label", "embedding", "text"] and not any(t.drift for t in same)
    assert Gates().embedding_test == DEFAULT_EMBEDDING_TEST == "knn"
    assert same[1].test.startswith("kNN pockets") and same[1].min_distance == 0.005
    urgent = [t + " please help, it is urgent" for t in texts[1000:2000]]
    moved = drift_tests(state.parent, {"a": 500, "b": 500}, new + 0.5, urgent, Gates())
    assert [t.drift for t in moved] == [False, True, True] and moved[1].p_value < 0.01
    assert "length" in moved[2].test
    auc = drift_tests(
        state.parent, {"a": 500, "b": 500}, new + 0.5, urgent, Gates(embedding_test="classifier")
    )
    assert auc[1].test.startswith("domain classifier") and auc[1].drift and auc[1].statistic > 0.6
