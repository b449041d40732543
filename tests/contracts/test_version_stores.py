"""The version-store contract: one suite, every backend.

``dvc`` runs on a real git + DVC repository with its default local remote; ``local`` on a
plain folder (snapshots under ``.curation/store``). ``lakefs`` runs
through the real ``lakefs`` SDK against the lakeFS-compatible server in
``tests/lakefs_server.py`` (every request and response checked against lakeFS's OpenAPI
spec), or against a real lakeFS when ``LAKEFS_ENDPOINT``, ``LAKEFS_ACCESS_KEY_ID`` and
``LAKEFS_SECRET_ACCESS_KEY`` are set (see docs/versioning.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curation.connectors.base import GATE_KEY, ROUND_KEY, VersionStore
from curation.connectors.dvc import DvcStore
from curation.connectors.lakefs import LakeFSStore
from curation.connectors.local import LocalStore
from curation.errors import VersioningError
from curation.orchestration.history import diff, history_table
from curation.support.manifest import build_manifest, manifest_path, read_manifest, write_manifest
from tests.support.lakefs_server import LakeFSTarget, lakefs_target
from tests.support.round_worker import labeled, run_round, selection

TABLE = "data/labeled.parquet"


@pytest.fixture(scope="module")
def lakefs() -> Iterator[LakeFSTarget]:
    with lakefs_target() as target:
        yield target


#: Every registered version store runs this suite (tests/contracts/test_meta.py checks it).
STORES_TESTED = ["dvc", "lakefs", "local"]


@pytest.fixture(params=STORES_TESTED)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], VersionStore]]:
    """A factory of store instances on one fresh repository (a new instance = a new process)."""
    if request.param == "dvc":
        yield lambda: DvcStore(tmp_path / "project", ["data"])
        return
    if request.param == "local":
        yield lambda: LocalStore(tmp_path / "project")
        return
    target: LakeFSTarget = request.getfixturevalue("lakefs")
    repo = f"curation-{uuid.uuid4().hex[:10]}"
    seen = len(target.server.contract_errors) if target.server else 0
    yield lambda: LakeFSStore(
        repo,
        endpoint=target.endpoint,
        access_key_id=target.access_key_id,
        secret_access_key=target.secret_access_key,
        storage_namespace=target.namespace(repo),
        root=tmp_path / "checkout",
    )
    if target.server is None:
        target.delete_repo(repo)
    else:
        assert target.server.contract_errors[seen:] == [], "the lakeFS double broke the OpenAPI contract"
        assert target.server.unhandled == [], "the SDK called endpoints the lakeFS double lacks"


def test_a_round_is_one_commit_with_its_manifest(make_store: Callable[[], VersionStore]) -> None:
    store = make_store()
    assert store.history() == []
    store.begin(1)
    store.write(TABLE, labeled(1))
    store.write_bytes("reports/round-1.txt", b"free text report\n")
    manifest = build_manifest(
        round=1,
        loop="contract",
        inputs={"pool": labeled(0)},
        params={"budget": 2},
        strategy="kcenter",
        selected=selection(1),
        metrics={"accuracy": 0.75},
    )
    write_manifest(store, manifest)
    assert store.commit("round 1", manifest.commit_metadata()) == "round-1"

    (info,) = store.history()
    assert (info.round, info.ref, info.message) == (1, "round-1", "round 1")
    assert info.metadata[ROUND_KEY] == "1" and info.gate_passed
    assert info.metrics == {"accuracy": 0.75}
    assert info.metadata["curation.manifest_sha256"] == manifest.sha256
    assert read_manifest(store, "round-1") == manifest
    assert_frame_equal(store.read("round-1", TABLE), labeled(1))
    assert store.read_bytes("round-1", "reports/round-1.txt") == b"free text report\n"
    assert set(store.files("round-1")) == {TABLE, "reports/round-1.txt", manifest_path(1, "contract")}
    assert_frame_equal(make_store().read(make_store().head, TABLE), labeled(1))

    with pytest.raises(VersioningError, match="round 1 is not after the last committed round 1"):
        make_store().begin(1)


def test_rounds_history_diff_and_checkout(make_store: Callable[[], VersionStore], tmp_path: Path) -> None:
    store = make_store()
    for n in (1, 2):
        assert run_round(store, n) == f"round-{n}"
    rounds = make_store().history()
    assert [r.round for r in rounds] == [1, 2]
    assert [r.metrics["accuracy"] for r in rounds] == [0.1, 0.2]
    assert history_table(rounds)["metric:accuracy"].to_list() == [0.1, 0.2]

    d = diff(store, "round-1", "round-2")
    (table,) = [f for f in d.files if f.path == TABLE]
    assert table.status == "changed"
    assert table.added == ["s5", "s6"] and table.removed == ["s0"]
    assert table.relabeled == ["s1"] and table.changed == []
    added = {f.path for f in d.files if f.status == "added"}
    assert added == {"rounds/round-2/selection.parquet", manifest_path(2, "faults")}
    assert d.totals() == {"added": 4, "removed": 1, "relabeled": 1, "changed": 0}

    restored = store.checkout("round-1", tmp_path / "round-1")
    assert sorted(restored) == sorted([TABLE, "rounds/round-1/selection.parquet", manifest_path(1, "faults")])
    assert_frame_equal(pl.read_parquet(tmp_path / "round-1" / TABLE), labeled(1))
    assert_frame_equal(store.read("round-1", TABLE), labeled(1))  # round 2 changed nothing


def test_abort_leaves_the_previous_round(make_store: Callable[[], VersionStore]) -> None:
    store = make_store()
    run_round(store, 1)
    store.begin(2)
    store.write(TABLE, pl.DataFrame({"id": ["junk"], "text": ["x"], "label": ["x"]}))
    store.write_bytes("junk/only-in-aborted-round.txt", b"junk")
    store.abort()
    assert [r.round for r in make_store().history()] == [1]
    assert_frame_equal(make_store().read(store.head, TABLE), labeled(1))

    again = make_store()
    assert run_round(again, 2) == "round-2"
    assert "junk/only-in-aborted-round.txt" not in again.files("round-2")
    assert_frame_equal(again.read("round-2", TABLE), labeled(2))


def test_failed_gate_is_kept_for_audit_but_is_not_the_base(make_store: Callable[[], VersionStore]) -> None:
    store = make_store()
    run_round(store, 1)
    store.begin(2)
    store.write(TABLE, labeled(2))
    store.write_bytes("rounds/round-2/quarantine.txt", b"too many invalid rows")
    store.commit("round 2: gate failed", {GATE_KEY: "failed"})
    rounds = make_store().history()
    assert [(r.round, r.gate_passed) for r in rounds] == [(1, True), (2, False)]
    assert_frame_equal(store.read("round-2", TABLE), labeled(2))  # auditable
    assert_frame_equal(store.read(store.head, TABLE), labeled(1))  # not the base

    store.begin(3)
    store.write_bytes("rounds/round-3/note.txt", b"built on round 1")
    store.commit("round 3", {})
    files = store.files("round-3")
    assert "rounds/round-2/quarantine.txt" not in files and "rounds/round-3/note.txt" in files
    assert_frame_equal(store.read("round-3", TABLE), labeled(1))


def test_misuse_is_refused_with_a_clear_error(make_store: Callable[[], VersionStore]) -> None:
    store = make_store()
    with pytest.raises(VersioningError, match="call begin"):
        store.write(TABLE, labeled(1))
    run_round(store, 1)
    with pytest.raises(VersioningError, match="call begin"):
        store.commit("no round", {})
    with pytest.raises(VersioningError, match="not versioned at round-1"):
        store.read("round-1", "data/missing.parquet")
    with pytest.raises(VersioningError):
        store.read("round-9", TABLE)
    store.begin(2)
    with pytest.raises(VersioningError, match="relative"):
        store.write("../outside.parquet", labeled(1))
    store.abort()


def test_a_round_versions_the_project_files_it_ran_with(make_store: Callable[[], VersionStore]) -> None:
    store = make_store()
    root = getattr(store, "root", None)
    assert root is not None
    (Path(root) / "loops").mkdir(parents=True, exist_ok=True)
    (Path(root) / "loops" / "l.yaml").write_text("budget: 7\n")
    store.begin(1)
    store.write(TABLE, labeled(1))
    store.include(["loops/l.yaml", "params.yaml"])  # params.yaml does not exist: skipped
    store.commit("round 1", {})
    (Path(root) / "loops" / "l.yaml").write_text("budget: 9\n")
    assert store.read_bytes("round-1", "loops/l.yaml") == b"budget: 7\n"
