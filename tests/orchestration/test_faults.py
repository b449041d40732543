"""The real ``curation run`` killed (SIGKILL) at named points of a round, then run again.

Every backend, the first round included. After the kill the store holds whole rounds only;
the rerun's round equals an uninterrupted run's: the same selected ids, the same labels, each
task once in the annotation queue. The points are the checkpoints of
:mod:`curation.support.faults` (``CURATION_STOP_AT``): the process stops there and is killed.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curation.load import load_loop
from curation.orchestration.state import store_for
from tests.support.lakefs_server import LakeFSTarget, lakefs_target
from tests.support.projects import make_project

ROOT = Path(__file__).resolve().parents[2]

#: (backend, round killed, point): at least ten points, every backend, round 1 included.
POINTS = [
    ("local", 2, "after-embed"),  # the vectors cached, nothing of the round written
    ("local", 2, "after-annotate"),  # tasks pushed, answers pulled, nothing versioned
    ("local", 2, "store-write#3"),  # half the round's tables written
    ("local", 2, "local:after-commit"),  # committed, journal not cleared
    ("local", 1, "local:after-commit"),
    ("dvc", 1, "dvc:before-git-commit"),  # data in the DVC cache, no git commit
    ("dvc", 1, "dvc:after-git-commit"),  # committed, not tagged
    ("dvc", 1, "dvc:after-tag"),
    ("lakefs", 1, "lakefs:after-commit"),  # committed on the round's branch, not merged
    ("lakefs", 1, "lakefs:after-merge"),  # merged, not tagged
]


def run(
    loop: Path, env: dict[str, str], stop_at: str | None = None, timeout: float = 600
) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    """``curation run LOOP``; with ``stop_at``, the process is left stopped at that point."""
    cmd = [sys.executable, "-m", "curation", "run", str(loop)]
    if stop_at is None:
        return subprocess.run(
            cmd, cwd=loop.parent.parent, env=env, capture_output=True, text=True, timeout=timeout
        )
    proc = subprocess.Popen(
        cmd,
        cwd=loop.parent.parent,
        env={**env, "CURATION_STOP_AT": stop_at},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    t0 = time.monotonic()
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("CURATION_STOPPED_AT"):
            return proc
        assert time.monotonic() - t0 < timeout, f"never reached {stop_at}"
    raise AssertionError(f"curation run ended (exit {proc.wait()}) before {stop_at}")


def kill(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def outcome(loop: Path) -> dict[str, Any]:
    """What the rounds left: per round its selected ids, the label table, the queued tasks."""
    cfg = load_loop(loop)
    store = store_for(cfg)
    rounds = [r.round for r in store.history()]
    selected = {
        n: store.read(f"round-{n}", f"rounds/unit/round-{n}/selection.parquet")["id"].to_list()
        for n in rounds
    }
    tasks = {
        n: sorted(store.read(f"round-{n}", f"rounds/unit/round-{n}/tasks.parquet")["task_id"].to_list())
        for n in rounds
    }
    labels = {
        n: store.read(f"round-{n}", "labels/unit.parquet").select("id", "label").sort("id").rows()
        for n in rounds
    }
    queue = pl.read_parquet(cfg.root / "annotations" / "unit" / "oracle.parquet")["task_id"].to_list()
    return {"rounds": rounds, "selected": selected, "tasks": tasks, "queue": sorted(queue), "labels": labels}


def whole_rounds_only(loop: Path) -> list[int]:
    """Every round the store lists reads back whole (its manifest, selection and labels)."""
    store = store_for(load_loop(loop))
    for r in store.history():
        for table in ("selection", "tasks", "issues"):
            store.read(r.ref, f"rounds/unit/round-{r.round}/{table}.parquet")
        store.read_bytes(r.ref, f"rounds/unit/round-{r.round}/manifest.json")
        store.read(r.ref, "labels/unit.parquet")
    return [r.round for r in store.history()]


@pytest.fixture(scope="module")
def lakefs() -> Iterator[LakeFSTarget]:
    with lakefs_target() as target:
        yield target


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the module, kept when a pytest-xdist worker rebuilds its fixtures."""
    path = tmp_path_factory.getbasetemp() / "fault-embedding-cache"
    path.mkdir(exist_ok=True)
    return path


def project(tmp: Path, data_dir: Path, cache: Path, backend: str, lakefs: LakeFSTarget | None) -> Path:
    version: dict[str, Any] = {"name": backend}
    if backend == "lakefs":
        assert lakefs is not None
        repo = f"faults-{uuid.uuid4().hex[:8]}"
        version.update(remote=f"lakefs://{repo}", storage_namespace=lakefs.namespace(repo))
    return make_project(
        tmp,
        data_dir,
        n_classes=4,
        per_class=40,
        budget=12,
        engine="local",
        version=version,
        embed={"max_seq_length": 64, "cache_dir": str(cache)},
        model="logreg",
        issues={"recipe": "reference", "folds": 3, "detectors": [{"name": "label"}]},
    )


def environment(lakefs: LakeFSTarget | None) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    if lakefs is not None:
        env.update(
            LAKEFS_ENDPOINT=lakefs.endpoint,
            LAKEFS_ACCESS_KEY_ID=lakefs.access_key_id,
            LAKEFS_SECRET_ACCESS_KEY=lakefs.secret_access_key,
        )
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, cache: Path) -> dict[str, Any]:
    """Three uninterrupted rounds (local store), and a copy of the project after round 1.

    Made once per worker: a pytest-xdist worker may tear module fixtures down between two
    tests of the module, so the result is kept on disk and read back."""
    tmp = tmp_path_factory.getbasetemp() / "fault-reference"
    memo = tmp / "reference.pickle"
    if memo.exists():
        return pickle.loads(memo.read_bytes())
    shutil.rmtree(tmp, ignore_errors=True)
    loop = project(tmp / "p", data_dir, cache, "local", None)
    env = environment(None)
    for n in (1, 2, 3):
        done = run(loop, env)
        assert done.returncode == 0, done.stderr[-3000:]
        if n == 1:
            shutil.copytree(tmp / "p", tmp / "after-round-1", symlinks=True)
    done = outcome(loop)
    assert done["rounds"] == [1, 2, 3] and len(done["selected"][2]) == 12
    made = {"outcome": done, "after_round_1": tmp / "after-round-1"}
    memo.write_bytes(pickle.dumps(made))
    return made


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "n", "point"), POINTS, ids=[f"{b}-round{n}-{p}" for b, n, p in POINTS])
def test_a_killed_round_leaves_whole_rounds_and_the_rerun_equals_an_uninterrupted_one(
    backend: str,
    n: int,
    point: str,
    tmp_path: Path,
    data_dir: Path,
    cache: Path,
    reference: dict[str, Any],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = request.getfixturevalue("lakefs") if backend == "lakefs" else None
    env = environment(target)
    for k in ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY"):
        if k in env:
            monkeypatch.setenv(k, env[k])
    if n == 2:
        shutil.copytree(reference["after_round_1"], tmp_path / "p", symlinks=True)
        loop = tmp_path / "p" / "loops" / "unit.yaml"
    else:
        loop = project(tmp_path / "p", data_dir, cache, backend, target)

    kill(run(loop, env, stop_at=point))
    committed = whole_rounds_only(loop)
    assert committed in (list(range(1, n)), list(range(1, n + 1)))

    again = run(loop, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    # a round the kill left committed is finished by the rerun, which then makes the next one
    last = n + 1 if n in committed else n
    got, want = outcome(loop), reference["outcome"]
    assert got["rounds"] == whole_rounds_only(loop) == list(range(1, last + 1))
    for k in range(n, last + 1):
        assert got["selected"][k] == want["selected"][k], k
        assert got["tasks"][k] == want["tasks"][k], k
        assert got["labels"][k] == want["labels"][k], k
    assert len(got["queue"]) == len(set(got["queue"]))  # each task once in the queue
    assert set(got["queue"]) == {t for k in range(1, last + 1) for t in want["tasks"][k]}


@pytest.mark.slow
def test_two_runs_at_once_make_one_round_and_the_other_says_the_lock_is_held(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    shutil.copytree(reference["after_round_1"], tmp_path / "p", symlinks=True)
    loop = tmp_path / "p" / "loops" / "unit.yaml"
    env = environment(None)
    holder = run(loop, env, stop_at="after-validate")
    try:
        other = run(loop, env)
        assert other.returncode == 5, other.stdout + other.stderr
        lines = [ln for ln in other.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "another run holds" in lines[0], other.stderr
    finally:
        kill(holder)
    assert run(loop, env).returncode == 0
    assert whole_rounds_only(loop) == [1, 2]
