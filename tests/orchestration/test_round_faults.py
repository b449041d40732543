"""A round is all or nothing: SIGKILL a process in the middle of a round, for each backend.

Round 1 is committed; a subprocess (``tests/round_worker.py``) runs round 2 and stops at a
named point inside it, where the test kills it with SIGKILL. Right after the kill the
history must hold whole rounds only (round 1, or rounds 1 and 2); after a rerun of round 2
it must hold exactly rounds 1 and 2, each whole (data, selection, manifest matching its
commit metadata), with nothing half-written left behind and every round's data still
readable (for DVC, from the remote alone).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from curation.connectors.base import ROUND_KEY, RoundInfo, VersionStore
from curation.connectors.dvc import JOURNAL
from curation.support.manifest import Manifest, manifest_path
from tests.support.lakefs_server import LakeFSTarget, lakefs_target
from tests.support.round_worker import labeled, make_store, run_round, selection

WORKER = Path(__file__).resolve().parents[1] / "support" / "round_worker.py"
TABLE = "data/labeled.parquet"

#: (backend, point, what the crash leaves): "previous" = round 1 only, "new" = round 2 too.
POINTS = [
    ("dvc", "mid-write", "previous"),
    ("dvc", "during-dvc-add", "previous"),
    ("dvc", "before-git-commit", "previous"),
    ("dvc", "after-git-commit", "new"),
    ("dvc", "after-tag", "new"),
    ("lakefs", "mid-write", "previous"),
    ("lakefs", "after-commit", "new"),
    ("lakefs", "after-merge", "new"),
    ("lakefs", "after-tag", "new"),
]


@pytest.fixture(scope="module")
def lakefs() -> Iterator[LakeFSTarget]:
    with lakefs_target() as target:
        yield target


@pytest.fixture(scope="module")
def dvc_round_1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC project with round 1 committed (its default remote is inside: copies carry it)."""
    root = tmp_path_factory.mktemp("dvc-base") / "project"
    run_round(make_store({"backend": "dvc", "root": str(root), "tracked": ["data"]}), 1)
    return root


def _config(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend == "dvc":
        root = tmp_path / "project"
        shutil.copytree(request.getfixturevalue("dvc_round_1"), root, symlinks=True)
        (root / ".dvc" / "config.local").unlink()  # its default remote: the copy's own folder
        return {"backend": "dvc", "root": str(root), "tracked": ["data"]}
    target: LakeFSTarget = request.getfixturevalue("lakefs")
    repo = f"faults-{uuid.uuid4().hex[:10]}"
    config = {
        "backend": "lakefs",
        "repository": repo,
        "endpoint": target.endpoint,
        "access_key_id": target.access_key_id,
        "secret_access_key": target.secret_access_key,
        "storage_namespace": target.namespace(repo),
    }
    run_round(make_store(config), 1)
    return config


def _kill_at(config: dict[str, Any], point: str, timeout: float = 300) -> None:
    """Run round 2 in a subprocess; SIGKILL it when it reports reaching ``point``."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(config), "2", point],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(WORKER.parent), os.environ.get("PYTHONPATH")) if p),
        },
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=timeout)
            if line.strip() == f"AT {point}":
                break
        os.kill(proc.pid, signal.SIGKILL)
    except queue.Empty:
        proc.kill()
        pytest.fail(f"the worker never reached {point}: {proc.stderr.read()[-2000:]}")
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _assert_whole(store: VersionStore, rounds: list[RoundInfo]) -> None:
    """Every listed round is complete: its data, selection and manifest, as it committed them."""
    for r in rounds:
        assert r.metadata[ROUND_KEY] == str(r.round)
        assert_frame_equal(store.read(r.ref, TABLE), labeled(r.round))
        assert_frame_equal(store.read(r.ref, f"rounds/round-{r.round}/selection.parquet"), selection(r.round))
        manifest = Manifest.load(store.read_bytes(r.ref, manifest_path(r.round, "faults")))
        assert manifest.round == r.round
        assert manifest.sha256 == r.metadata["curation.manifest_sha256"]


def _git(root: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "point", "leaves"), POINTS, ids=[f"{b}-{p}" for b, p, _ in POINTS])
def test_sigkill_inside_a_round(
    backend: str, point: str, leaves: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = _config(backend, tmp_path, request)
    _kill_at(config, point)

    after_kill = make_store(config).history()
    assert [r.round for r in after_kill] == ([1] if leaves == "previous" else [1, 2])
    _assert_whole(make_store(config), after_kill)

    outcome = run_round(make_store(config), 2)  # the rerun: `curation run` again
    assert outcome == ("round-2" if leaves == "previous" else "resumed")
    store = make_store(config)
    rounds = store.history()
    assert [(r.round, r.ref) for r in rounds] == [(1, "round-1"), (2, "round-2")]
    _assert_whole(store, rounds)
    assert_frame_equal(store.read(store.head, TABLE), labeled(2))

    if backend == "dvc":
        root = config["root"]
        assert not (Path(root) / JOURNAL).exists()
        assert _git(root, "status", "--porcelain") == ""
        assert _git(root, "tag", "--list").split() == ["round-1", "round-2"]
        round_commits = _git(root, "log", "--format=%s", "HEAD").splitlines()
        assert round_commits == ["round 2", "round 1", "curation: initialise DVC"]
        shutil.rmtree(Path(root) / ".dvc" / "cache")  # no data lost: all of it is on the remote
        _assert_whole(make_store(config), rounds)
    else:
        import lakefs

        target: LakeFSTarget = request.getfixturevalue("lakefs")
        client = lakefs.Client(
            host=f"{target.endpoint}/api/v1", username=target.access_key_id, password=target.secret_access_key
        )
        repo = lakefs.Repository(config["repository"], client=client)
        assert [b.id for b in repo.branches()] == ["main"]
        merges = [c.metadata.get(ROUND_KEY) for c in repo.branch("main").log() if len(c.parents) > 1]
        assert merges == ["2", "1"]  # one merge per round, none twice
        if target.server is None:
            target.delete_repo(config["repository"])
        else:
            assert target.server.contract_errors == [] and target.server.unhandled == []
