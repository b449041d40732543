"""The DVC store on real git + DVC repositories: commit, tag, push, checkout, diff, recovery."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from curation.cli import app
from curation.connectors.dvc import DEFAULT_REMOTE, JOURNAL, DvcStore
from curation.errors import VersioningError
from curation.orchestration.history import diff, open_store
from curation.support.manifest import manifest_path
from tests.support.cli import git
from tests.support.round_worker import labeled, run_round

TABLE = "data/labeled.parquet"


def remote_objects(remote: Path) -> set[str]:
    return {p.parent.name + p.name for p in (remote / "files" / "md5").rglob("*") if p.is_file()}


def test_commit_tags_and_pushes_to_the_remote(tmp_path: Path) -> None:
    root, remote = tmp_path / "project", tmp_path / "remote"
    store = DvcStore(root, ["data"], remote=str(remote))
    assert run_round(store, 1) == "round-1"

    assert git(root, "tag", "--list", "round-*").split() == ["round-1"]
    body = git(root, "log", "-1", "--format=%B", "round-1")
    assert body.startswith("round 1\n\n")
    meta = json.loads(body.split("\n\n", 1)[1])
    assert meta["curation.round"] == "1" and meta["metrics.accuracy"] == "0.1"
    assert git(root, "status", "--porcelain") == ""
    assert not (root / JOURNAL).exists()
    tracked = git(root, "ls-files").split()
    made = {"data.dvc", manifest_path(1, "faults") + ".dvc", "rounds/round-1/selection.parquet.dvc"}
    assert made <= set(tracked)
    assert TABLE not in tracked  # the data is DVC's, not git's

    # every file of the round is on the remote: a repository without its cache reads it back
    assert set(store.files("round-1").values()) <= remote_objects(remote)
    shutil.rmtree(root / ".dvc" / "cache")
    assert_frame_equal(DvcStore(root, []).read("round-1", TABLE), labeled(1))


def test_default_remote_checkout_and_diff(tmp_path: Path) -> None:
    root = tmp_path / "project"
    store = DvcStore(root, ["data"])
    run_round(store, 1)
    run_round(store, 2)
    assert_frame_equal(pl.read_parquet(root / TABLE), labeled(2))
    config = (root / ".dvc" / "config.local").read_text()  # the default remote: a git-ignored folder
    assert "remote = default" in config and f"url = {(root / DEFAULT_REMOTE).resolve()}" in config
    assert set(store.files("round-2").values()) <= remote_objects(root / DEFAULT_REMOTE)
    assert git(root, "status", "--porcelain", "--ignored", ".curation") == "!! .curation/\n"

    restored = open_store("dvc", {}, root).checkout("round-1")
    assert TABLE in restored
    assert_frame_equal(pl.read_parquet(root / TABLE), labeled(1))
    assert not (root / manifest_path(2, "faults")).exists()
    assert (root / manifest_path(1, "faults")).exists()

    store.checkout("HEAD")
    assert_frame_equal(pl.read_parquet(root / TABLE), labeled(2))
    assert git(root, "status", "--porcelain") == ""

    table = next(f for f in diff(store, "round-1", "round-2").files if f.path == TABLE)
    assert (table.added, table.removed, table.relabeled) == (["s5", "s6"], ["s0"], ["s1"])

    cli = CliRunner()
    shown = cli.invoke(app, ["history", "--root", str(root)])
    assert shown.exit_code == 0 and "round-2" in shown.stdout and "0.200" in shown.stdout
    shown = cli.invoke(app, ["diff", "round-1", "round-2", "--root", str(root)])
    assert shown.exit_code == 0 and f"{TABLE} (changed): 2 added, 1 removed, 1 relabeled" in shown.stdout
    table_part = re.split(r"\n(?=\S)", shown.stdout.split(f"{TABLE} (changed)")[1])[0]
    assert "added: s5, s6" in table_part and "relabeled: s1" in table_part and "removed: s0" in table_part
    shown = cli.invoke(app, ["checkout", "round-1", "--to", str(tmp_path / "r1"), "--root", str(root)])
    assert shown.exit_code == 0
    assert_frame_equal(pl.read_parquet(tmp_path / "r1" / TABLE), labeled(1))
    shown = cli.invoke(app, ["diff", "round-1", "round-9", "--root", str(root)])
    assert shown.exit_code == 1 and "unknown ref 'round-9'" in shown.stderr


def test_discard_restores_what_the_round_replaced(tmp_path: Path) -> None:
    root = tmp_path / "project"
    store = DvcStore(root, ["data"])
    run_round(store, 1)
    mine = root / "notes" / "mine.parquet"  # a user's file, never versioned
    mine.parent.mkdir()
    pl.DataFrame({"id": ["u1"]}).write_parquet(mine)

    store.begin(2)
    store.write(TABLE, pl.DataFrame({"id": ["junk"]}))
    store.write("notes/mine.parquet", pl.DataFrame({"id": ["overwritten"]}))
    store.write("rounds/round-2/new.parquet", pl.DataFrame({"id": ["new"]}))
    (root / "data" / ".labeled.parquet.curation.tmp").write_bytes(b"half a file")
    store.abort()

    assert_frame_equal(pl.read_parquet(root / TABLE), labeled(1))
    assert pl.read_parquet(mine)["id"].to_list() == ["u1"]
    assert not (root / "rounds" / "round-2").exists()
    assert not (root / "data" / ".labeled.parquet.curation.tmp").exists()
    assert git(root, "status", "--porcelain") == "?? notes/\n"


def test_a_failed_push_commits_nothing(tmp_path: Path) -> None:
    root, remote = tmp_path / "project", tmp_path / "remote"
    store = DvcStore(root, ["data"], remote=str(remote))
    store.init()
    remote.write_text("a file where the remote folder should be")

    store.begin(1)
    store.write(TABLE, labeled(1))
    with pytest.raises(VersioningError, match="dvc push"):
        store.commit("round 1", {})
    assert store.history() == []
    assert not (root / TABLE).exists()
    assert not (root / "data.dvc").exists()

    remote.unlink()
    assert run_round(DvcStore(root, ["data"], remote=str(remote)), 1) == "round-1"


def test_a_second_writer_waits_for_the_round_lock(tmp_path: Path) -> None:
    root = tmp_path / "project"
    first = DvcStore(root, ["data"])
    first.begin(1)
    with pytest.raises(VersioningError, match="another process holds the round lock"):
        DvcStore(root, ["data"], lock_timeout=0.2).begin(1)
    first.abort()
    assert DvcStore(root, ["data"]).history() == []
