"""The local version store: rounds as content-addressed snapshots in the project folder.

For a project with no git, DVC or lakeFS (``version: {name: local}``). It keeps, under
``.curation/store/``:

- ``objects/<sha256>``: the content of every file a round wrote, once per content;
- ``commits/LOOP/round-N.json``: a round's commit (its time, message, metadata and the map
  of every versioned path to its content hash);
- ``heads/LOOP``: the loop's round whose gate last passed (the base of its next round);
- ``journals/LOOP.json``: the loop's round being written, and ``lock``: the round lock
  (``flock``). A store made with no loop name keeps ``commits/round-N.json``, ``head`` and
  ``journal.json``.

A round goes ``begin`` -> ``write``... -> ``commit``, all or nothing, like the other stores:
``write`` stages content in ``objects/`` and records it in the journal (nothing in the
working tree changes); ``commit`` writes the commit file (the instant the round exists),
then copies the round's files into the working tree and moves ``head``. After a crash the
next ``begin`` finishes a round whose commit file exists and discards any other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from curation.connectors.base import (
    GATE_KEY,
    ROUND_KEY,
    STORES,
    RoundInfo,
    RoundNames,
    atomic_write,
    norm_path,
    parquet_table,
)
from curation.errors import VersioningError
from curation.support.faults import checkpoint

#: The store's folder, relative to the project root.
STORE_DIR = ".curation/store"


@STORES.register
class LocalStore:
    """Version rounds as snapshots under ``ROOT/.curation/store`` (no git, DVC or server).

    Parameters
    ----------
    root : Path
        The project root; a round's files are restored into it when it is committed.
    lock_timeout : float
        Seconds ``begin`` waits for another process's round to end.

    Examples
    --------
    >>> import tempfile
    >>> store = LocalStore(Path(tempfile.mkdtemp()))
    >>> store.begin(1)
    >>> store.write("data/t.parquet", pl.DataFrame({"id": [1]}))
    >>> store.commit("round 1", {})
    'round-1'
    >>> store.read("round-1", "data/t.parquet")["id"].to_list()
    [1]
    """

    name: ClassVar[str] = "local"
    context: ClassVar[tuple[str, ...]] = ("root", "loop")

    def __init__(self, root: Path, lock_timeout: float = 120.0, loop: str | None = None) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.loop = loop
        self.names = RoundNames(loop)
        self.round_: int | None = None
        self._lock_fd: int | None = None

    @property
    def head(self) -> str:
        """``HEAD``: the last round whose gate passed."""
        return "HEAD"

    @property
    def _dir(self) -> Path:
        return self.root / STORE_DIR

    # -- lock and journal ----------------------------------------------------------------

    def _acquire(self) -> None:
        if self._lock_fd is not None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise VersioningError(
                        f"another process holds the round lock {self._dir / 'lock'} after "
                        f"{self.lock_timeout:.0f} s: wait for the other `curation run` to finish"
                    ) from None
                time.sleep(0.05)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _journal(self) -> dict[str, Any] | None:
        path = self._journal_file
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def _save_journal(self, journal: dict[str, Any]) -> None:
        atomic_write(self._journal_file, json.dumps(journal, indent=1).encode())

    # -- a round -------------------------------------------------------------------------

    def begin(self, round: int) -> None:
        """Start round ``round``: finish or discard a crashed round, then open a journal.

        Raises
        ------
        VersioningError
            ``round`` is not after the last committed round, or another process holds the
            round lock for longer than ``lock_timeout``.
        """
        self._acquire()
        try:
            self.recover()
            done = [r.round for r in self.history()]
            if done and round <= max(done):
                raise VersioningError(
                    f"round {round} is not after the last committed round {max(done)} "
                    f"({self.names.ref(max(done))}): begin round {max(done) + 1}"
                )
            self._save_journal({"round": round, "written": {}})
        except BaseException:
            self._release()
            raise
        self.round_ = round

    def _require_round(self) -> dict[str, Any]:
        journal = self._journal() if self.round_ is not None else None
        if journal is None or journal.get("round") != self.round_:
            raise VersioningError("no round is being written: call begin(round) first")
        return journal

    def write_bytes(self, path: str, data: bytes) -> None:
        """Stage ``data`` at ``path`` for the round being written (the working tree waits for
        the commit)."""
        rel = norm_path(path)
        journal = self._require_round()
        sha = hashlib.sha256(data).hexdigest()
        obj = self._dir / "objects" / sha
        if not obj.exists():
            atomic_write(obj, data)
        journal["written"][rel] = sha
        self._save_journal(journal)
        checkpoint("store-write")

    def include(self, paths: list[str]) -> None:
        """Snapshot these project files with the round."""
        for path in paths:
            if (self.root / path).is_file():
                self.write_bytes(path, (self.root / path).read_bytes())

    def write(self, path: str, table: pl.DataFrame) -> None:
        """Stage ``table`` as Parquet at ``path``."""
        buf = io.BytesIO()
        table.write_parquet(buf)
        self.write_bytes(path, buf.getvalue())

    def commit(self, message: str, metadata: dict[str, str]) -> str:
        """Make the round permanent (its commit file), then restore its files; return its tag."""
        journal = self._require_round()
        n = journal["round"]
        meta = {**{str(k): str(v) for k, v in metadata.items()}, ROUND_KEY: str(n)}
        base = self._commit_file("HEAD")
        record = {
            "round": n,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "message": " ".join(message.split()) or f"curation: round {n}",
            "metadata": meta,
            "files": {**(base or {}).get("files", {}), **journal["written"]},
        }
        try:
            atomic_write(
                self._dir / "commits" / f"{self.names.ref(n)}.json",
                json.dumps(record, indent=1, sort_keys=True).encode(),
            )
            checkpoint("local:after-commit")
            self._finish(record)
        finally:
            self.round_ = None
            self._release()
        return self.names.ref(n)

    def _finish(self, record: dict[str, Any]) -> None:
        """Restore a committed round's files and move ``head`` (gate passed), clear the journal."""
        if record["metadata"].get(GATE_KEY, "passed") == "passed":
            self._restore(record["files"], self.root, self._commit_file("HEAD"))
            atomic_write(self._head_file, self.names.ref(record["round"]).encode())
        (self._journal_file).unlink(missing_ok=True)

    def recover(self) -> str | None:
        """Finish a crashed round whose commit file was written, or discard one whose was not.

        Returns ``"finished"``, ``"discarded"`` or ``None`` (nothing to do).
        """
        held = self._lock_fd is not None
        self._acquire()
        try:
            journal = self._journal()
            if journal is None:
                return None
            record = self._commit_file(self.names.ref(journal["round"]))
            if record is not None:
                self._finish(record)
                return "finished"
            (self._journal_file).unlink(missing_ok=True)
            return "discarded"
        finally:
            if not held:
                self._release()

    def abort(self) -> None:
        """Discard the round being written and release the round lock."""
        if self.round_ is None:
            return
        try:
            (self._journal_file).unlink(missing_ok=True)
        finally:
            self.round_ = None
            self._release()

    # -- reading -------------------------------------------------------------------------

    @property
    def _journal_file(self) -> Path:
        """The journal of this loop's round being written."""
        return self._dir / ("journal.json" if self.loop is None else f"journals/{self.loop}.json")

    @property
    def _head_file(self) -> Path:
        """The file naming this loop's last round whose gate passed."""
        return self._dir / ("head" if self.loop is None else f"heads/{self.loop}")

    def _commit_file(self, ref: str) -> dict[str, Any] | None:
        if ref in ("HEAD", "main"):
            if not self._head_file.exists():
                return None
            ref = self._head_file.read_text(encoding="utf-8").strip()
        ref = self.names.resolve(ref)
        path = self._dir / "commits" / f"{ref}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def _record(self, ref: str) -> dict[str, Any]:
        record = self._commit_file(ref)
        if record is None:
            known = ", ".join(r.ref for r in self.history()) or "none yet"
            raise VersioningError(f"unknown ref {ref!r} in {self._dir}; rounds: {known}")
        return record

    def history(self) -> list[RoundInfo]:
        """The committed rounds, oldest first."""
        rounds = []
        for path in (self._dir / "commits").glob(f"{self.names.prefix}*.json"):
            r = json.loads(path.read_text(encoding="utf-8"))
            rounds.append(
                RoundInfo(
                    r["round"],
                    self.names.ref(r["round"]),
                    self.names.ref(r["round"]),
                    r["time"],
                    r["message"],
                    r["metadata"],
                )
            )
        return sorted(rounds, key=lambda r: r.round)

    def files(self, ref: str) -> dict[str, str]:
        """Every versioned file as of ``ref``: path -> SHA-256 of its content."""
        return dict(sorted(self._record(ref)["files"].items()))

    def read_bytes(self, ref: str, path: str) -> bytes:
        """The content of ``path`` as of ``ref`` (``round-N`` or ``HEAD``)."""
        rel = norm_path(path)
        files = self.files(ref)
        if rel not in files:
            raise VersioningError(
                f"{rel} is not versioned at {ref} in {self._dir}: expected one "
                f"of {', '.join(files) or 'no files'}"
            )
        return (self._dir / "objects" / files[rel]).read_bytes()

    def read(self, ref: str, path: str) -> pl.DataFrame:
        """The Parquet table at ``path`` as of ``ref``."""
        return parquet_table(self.read_bytes(ref, path), path, ref)

    def changes(self) -> list[str]:
        """Files of the head round whose working copy was changed or deleted."""
        head = self._commit_file("HEAD")
        out = []
        for rel, sha in (head or {}).get("files", {}).items():
            path = self.root / rel
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                out.append(rel)
        return sorted(out)

    def checkout(self, ref: str, dest: Path | None = None) -> list[str]:
        """Restore the files of ``ref`` into ``dest`` (default: the project root, where files
        of the current round that ``ref`` lacks are removed). Returns the paths written."""
        files = self.files(ref)
        if dest is not None and Path(dest).resolve() != self.root.resolve():
            self._restore(files, Path(dest), None)
            return list(files)
        self._acquire()
        try:
            if self._journal() is not None:
                raise VersioningError(
                    "a round is being written (or was left by a crash): run "
                    "`curation run` to finish it before a checkout"
                )
            self._restore(files, self.root, self._commit_file("HEAD"))
        finally:
            self._release()
        return list(files)

    def _restore(self, files: dict[str, str], dest: Path, current: dict[str, Any] | None) -> None:
        for rel, sha in files.items():
            target = dest / rel
            if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha):
                atomic_write(target, (self._dir / "objects" / sha).read_bytes())
        for rel in set((current or {}).get("files", {})) - set(files):
            with contextlib.suppress(FileNotFoundError):
                (dest / rel).unlink()
