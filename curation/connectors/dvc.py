"""The DVC version store: the project is a git + DVC repository, a round is a tagged commit.

A round goes ``begin`` -> ``write``... -> ``commit``:

- ``begin`` takes the round lock (a ``flock`` on ``.dvc/tmp/curation-round.lock``, held by
  every git and DVC process the store starts, so a rerun waits for the orphans of a killed
  run), finishes or discards what a crashed round left (see below), and opens a journal
  (``.dvc/tmp/curation-round.json``).
- ``write`` records the path in the journal, backs up the file it replaces (if any), and
  writes atomically (temporary file + rename).
- ``commit`` runs ``dvc add`` on the tracked paths (and on written paths outside them),
  pushes their data to the DVC remote, then makes one git commit of the ``.dvc`` files with
  the metadata in its message: that commit is the instant the round exists. Then it tags
  the commit ``round-N``.

Recovery, on the next ``begin``: a journal whose commit was made (``HEAD`` moved to a commit
of that round) is finished (tagged); any other journal is discarded: the ``.dvc`` files and
``.gitignore`` files go back to ``HEAD``, replaced files come back from their backups, new
files are deleted. A round whose validation gate failed (``metadata["curation.gate"] ==
"failed"``) is committed off the branch (``git commit-tree``), tagged for audit, and the
working tree goes back to the previous round.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import polars as pl
import yaml

from curation.connectors.base import (
    GATE_KEY,
    ROUND_KEY,
    STORES,
    RoundInfo,
    RoundNames,
    atomic_write,
    norm_path,
    parquet_table,
    round_ref,
)
from curation.errors import VersioningError
from curation.support.faults import checkpoint
from curation.support.redact import redact_text

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}

#: The default DVC remote, relative to the project root (git-ignored).
DEFAULT_REMOTE = ".curation/dvc-remote"
JOURNAL = ".dvc/tmp/curation-round.json"
LOCK = ".dvc/tmp/curation-round.lock"
BACKUPS = ".dvc/tmp/curation-backup"
_IDENT = ["-c", "user.name=curation", "-c", "user.email=curation@localhost"]


def _run(cmd: list[str], cwd: Path, pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(
            cmd,
            cwd=cwd,
            env=env or ENV,
            capture_output=True,
            text=True,
            check=True,
            pass_fds=pass_fds,
        )
    except FileNotFoundError as e:
        raise VersioningError(f"`{cmd[0]}` not found: install git to use the DVC store") from e
    except subprocess.CalledProcessError as e:
        lines = [
            ln.strip()
            for ln in (e.stderr or e.stdout or "").splitlines()
            if ln.strip() and "Having any troubles?" not in ln
        ]
        errors = [ln for ln in lines if ln.startswith(("ERROR", "error:", "fatal:"))]
        detail = (errors or lines or [f"exit status {e.returncode}"])[-1]
        shown = " ".join(cmd[2:] if cmd[0] == sys.executable else cmd)
        raise VersioningError(redact_text(f"`{shown}` failed in {cwd}: {detail}")) from e
    return out.stdout


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fallback identity; return its output."""
    return _run(["git", *_IDENT, *args], root)


def dvc(root: Path, *args: str) -> str:
    """Run the DVC of this Python environment in ``root``; return its output."""
    return _run([sys.executable, "-m", "dvc", *args], root)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@STORES.register
class DvcStore:
    """Version rounds in a git + DVC repository.

    ``write`` puts files in the working tree; ``commit`` runs ``dvc add`` on the tracked
    paths, pushes their data to the DVC remote, commits the ``.dvc`` files with the
    metadata in the message and tags the commit ``round-N``. A round is all or nothing:
    see the module docstring.

    Parameters
    ----------
    root : Path
        The project root (made a git + DVC repository if it is not one).
    tracked : list of str
        Paths (relative to ``root``, files or folders) whose content DVC tracks. A written
        path outside them is tracked as a file of its own.
    remote : str, optional
        The DVC remote (a folder or a URL such as ``s3://bucket/path``, the latter through
        DVC's plugins); data is pushed there on every commit. ``None`` keeps the
        repository's default remote, or sets ``.curation/dvc-remote`` when it has none.
    lock_timeout : float
        Seconds ``begin`` waits for another process's round (or its orphans) to end.

    Examples
    --------
    >>> import tempfile, polars as pl
    >>> store = DvcStore(Path(tempfile.mkdtemp()), ["data"])
    >>> store.begin(1); store.write("data/labeled.parquet", pl.DataFrame({"id": [1]}))
    >>> store.commit("round 1", {"metrics.f1": "0.8"})
    'round-1'
    """

    name: ClassVar[str] = "dvc"
    context: ClassVar[tuple[str, ...]] = ("root", "tracked", "loop")

    def __init__(
        self,
        root: Path,
        tracked: list[str],
        remote: str | None = None,
        lock_timeout: float = 120.0,
        loop: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.loop = loop
        self.names = RoundNames(loop)
        self.tracked = list(tracked)
        self.remote = remote
        self.lock_timeout = lock_timeout
        self.round_: int | None = None
        self._lock_fd: int | None = None

    @property
    def head(self) -> str:
        """``HEAD``: the working tree's branch holds the last round whose gate passed."""
        return "HEAD"

    # -- processes -----------------------------------------------------------------------

    def _fds(self) -> tuple[int, ...]:
        return (self._lock_fd,) if self._lock_fd is not None else ()

    def _git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return _run(["git", *_IDENT, *args], self.root, self._fds(), env)

    def _dvc(self, *args: str) -> str:
        return _run([sys.executable, "-m", "dvc", *args], self.root, self._fds())

    # -- repository ----------------------------------------------------------------------

    def init(self) -> None:
        """Make ``root`` a git + DVC repository with a default remote (a no-op when it is one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").exists():
            git(self.root, "init", "-q", "-b", "main")
        if not (self.root / ".dvc").exists():
            dvc(self.root, "init", "-q")
        self._configure_remote()
        try:
            initialised = bool(git(self.root, "ls-tree", "--name-only", "HEAD", "--", ".dvc/config").strip())
        except VersioningError:  # no commit yet
            initialised = False
        if not initialised:  # a new repository, or an initialisation a crash interrupted
            ignore = self.root / ".gitignore"
            lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
            if "/.curation/" not in lines:
                ignore.write_text("\n".join([*lines, "/.curation/"]) + "\n", encoding="utf-8")
            files = [".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore"]
            git(self.root, "add", "--", *files)
            git(self.root, "commit", "-q", "-m", "curation: initialise DVC", "--", *files)

    def _configure_remote(self) -> None:
        """Point DVC's default remote at ``remote`` (in ``.dvc/config``, committed), or, with
        no remote given and none configured, at ``.curation/dvc-remote`` (in the machine's own
        ``.dvc/config.local``: that folder does not travel with a clone).

        Local folders are written as absolute paths: DVC resolves a relative remote path of
        an older revision against that revision's tree, where it does not exist.
        """
        from configobj import ConfigObj

        shared = ConfigObj(str(self.root / ".dvc" / "config"))
        local = ConfigObj(str(self.root / ".dvc" / "config.local"))
        section = 'remote "default"'
        if self.remote is None:
            for conf in (local, shared):
                name = conf.get("core", {}).get("remote")
                if name and f'remote "{name}"' in conf:
                    return
            target, url = local, str((self.root / DEFAULT_REMOTE).resolve())
        else:
            target, url = shared, self.remote
            if "://" not in url:
                url = str(Path(url) if Path(url).is_absolute() else (self.root / url).resolve())
            if section in local:  # would override the shared setting
                del local[section]
                local.get("core", {}).pop("remote", None)
                local.write()
        core = target.setdefault("core", {})
        if core.get("remote") == "default" and target.get(section, {}).get("url") == url:
            return
        target.setdefault(section, {})["url"] = url
        core["remote"] = "default"
        target.write()

    def _head(self) -> str:
        return self._git("rev-parse", "HEAD").strip()

    def _tags(self) -> dict[int, str]:
        """Round number -> commit SHA of every tag of this loop's rounds."""
        out = self._git(
            "for-each-ref",
            "--format=%(refname:strip=2) %(objectname) %(*objectname)",
            f"refs/tags/{self.names.prefix}*",
        )
        tags: dict[int, str] = {}
        for line in out.splitlines():
            name, obj, *peeled = line.split()
            n = self.names.number(name)
            if n is not None:
                tags[n] = peeled[0] if peeled else obj
        return tags

    def _commits(self, shas: Iterable[str]) -> dict[str, tuple[str, str, dict[str, str]]]:
        """SHA -> (time, message, metadata) of each commit."""
        shas = list(dict.fromkeys(shas))
        if not shas:
            return {}
        out = self._git("show", "-s", "--format=%H%x1f%ct%x1f%B%x1e", *shas)
        commits = {}
        for rec in out.split("\x1e"):
            rec = rec.strip("\n")
            if not rec:
                continue
            sha, ct, body = rec.split("\x1f", 2)
            message, _, rest = body.partition("\n\n")
            try:
                meta = json.loads(rest.strip()) if rest.strip().startswith("{") else {}
            except json.JSONDecodeError:
                meta = {}
            when = datetime.fromtimestamp(int(ct), UTC).isoformat()
            commits[sha] = (when, message.strip(), {str(k): str(v) for k, v in meta.items()})
        return commits

    def _round_of(self, sha: str) -> int | None:
        meta = self._commits([sha])[sha][2]
        try:
            return int(meta[ROUND_KEY])
        except (KeyError, ValueError):
            return None

    # -- lock and journal ----------------------------------------------------------------

    def _acquire(self) -> None:
        if self._lock_fd is not None:
            return
        path = self.root / LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise VersioningError(
                        f"another process holds the round lock {path} after {self.lock_timeout:.0f} s: "
                        "wait for the other `curation run` to finish, or stop it"
                    ) from None
                time.sleep(0.05)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        held = self._lock_fd is not None
        self._acquire()
        try:
            yield
        finally:
            if not held:
                self._release()

    def _journal(self) -> dict[str, Any] | None:
        path = self.root / JOURNAL
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # written atomically, so only a foreign file lands here
            raise VersioningError(f"{path} is not a curation round journal: remove it and rerun") from None

    def _save_journal(self, journal: dict[str, Any]) -> None:
        atomic_write(self.root / JOURNAL, json.dumps(journal, indent=1).encode())

    def _clear_journal(self) -> None:
        (self.root / JOURNAL).unlink(missing_ok=True)
        shutil.rmtree(self.root / BACKUPS, ignore_errors=True)

    # -- a round -------------------------------------------------------------------------

    def begin(self, round: int) -> None:
        """Start writing round ``round``: finish or discard a crashed round, then open a journal.

        Raises
        ------
        VersioningError
            If ``round`` is not after the last committed round, or another process holds
            the round lock for longer than ``lock_timeout``.
        """
        self.init()
        self._acquire()
        try:
            self.recover()
            tags = self._tags()
            if tags and round <= max(tags):
                last = max(tags)
                raise VersioningError(
                    f"round {round} is not after the last committed round {last} "
                    f"({self.names.ref(last)}): begin round {last + 1}"
                )
            tag = self.names.ref(round)
            base = self._head()
            self._save_journal(
                {
                    "round": round,
                    "tag": tag,
                    "loop": self.loop,
                    "base": base,
                    "stage": "writing",
                    "written": {},
                }
            )
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
        """Write ``data`` at ``path`` in the working tree, atomically, for the round being written."""
        rel = norm_path(path)
        journal = self._require_round()
        dest = self.root / rel
        if rel not in journal["written"]:
            existed = dest.is_file()
            if existed:
                backup = self.root / BACKUPS / rel
                backup.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(dest, backup)
            journal["written"][rel] = existed
            self._save_journal(journal)
        elif dest.is_dir():
            raise VersioningError(f"cannot write {rel}: it is a folder")
        atomic_write(dest, data)
        checkpoint("store-write")

    def include(self, paths: list[str]) -> None:
        """Commit these files with the round, through git (they stay git files, not DVC's)."""
        journal = self._require_round()
        journal["include"] = sorted({norm_path(p) for p in paths if (self.root / p).is_file()})
        self._save_journal(journal)

    def write(self, path: str, table: pl.DataFrame) -> None:
        """Write ``table`` as Parquet at ``path`` in the working tree."""
        buf = io.BytesIO()
        table.write_parquet(buf)
        self.write_bytes(path, buf.getvalue())

    def _targets(self, written: Iterable[str]) -> list[str]:
        tracked = [norm_path(t) for t in self.tracked]
        targets = [t for t in tracked if (self.root / t).exists()]
        for w in written:
            if not any(_under(w, t) for t in tracked) and (self.root / w).exists():
                targets.append(w)
        return list(dict.fromkeys(targets))

    def _meta_files(self, targets: Iterable[str]) -> list[str]:
        """The ``.dvc`` files and ``.gitignore`` files ``dvc add`` of ``targets`` touches."""
        files = []
        for t in targets:
            files.append(f"{t}.dvc")
            parent = PurePosixPath(t).parent
            files.append(".gitignore" if str(parent) == "." else f"{parent}/.gitignore")
        return list(dict.fromkeys(files))

    def commit(self, message: str, metadata: dict[str, str]) -> str:
        """Track, push, commit and tag the round; return its tag ``round-N``.

        The git commit is the instant the round exists: a crash before it leaves the
        previous round (the next ``begin`` discards this one), a crash after it leaves this
        round (the next ``begin`` tags it).
        """
        journal = self._require_round()
        n = journal["round"]
        meta = {str(k): str(v) for k, v in metadata.items()}
        meta[ROUND_KEY] = str(n)
        passed = meta.get(GATE_KEY, "passed") == "passed"
        targets = self._targets(journal["written"])
        journal["stage"] = "adding"
        self._save_journal(journal)
        try:
            sha = self._commit_round(journal, targets, message, meta, passed)
            checkpoint("dvc:after-git-commit")
        except BaseException:
            made = None
            with contextlib.suppress(VersioningError):
                made = self._head() != journal["base"]
            if made is False:  # the commit was not made: back to the last round
                self.abort()
            else:  # made (or unknown): the next begin finishes (or discards) it
                self.round_ = None
                self._release()
            raise
        journal.update(stage="committed", commit=sha, passed=passed)
        self._save_journal(journal)
        try:
            self._finish(journal)
        finally:
            self.round_ = None
            self._release()
        return str(journal.get("tag") or round_ref(n))

    def _commit_round(
        self,
        journal: dict[str, Any],
        targets: list[str],
        message: str,
        meta: dict[str, str],
        passed: bool,
    ) -> str:
        n = journal["round"]
        checkpoint("dvc:before-add")
        if targets:
            self._dvc("add", "-q", *targets)
            self._dvc("push", "-q", *targets)
        checkpoint("dvc:before-git-commit")
        files = [f for f in self._meta_files(targets) if (self.root / f).exists()]
        files += [
            f for f in (".dvc/config", ".gitignore", *journal.get("include", [])) if (self.root / f).exists()
        ]
        files = list(dict.fromkeys(files))
        summary = " ".join(message.split()) or f"curation: round {n}"
        body = json.dumps(meta, indent=1, sort_keys=True)
        if passed:
            self._git("add", "--", *files)
            self._git("commit", "-q", "--allow-empty", "-m", summary, "-m", body, "--", *files)
            sha = self._head()
        else:  # commit beside the branch: tagged for audit, never the base of a round
            index = self.root / ".git" / "curation-index"
            index.unlink(missing_ok=True)
            env = {**ENV, "GIT_INDEX_FILE": str(index)}
            self._git("read-tree", "HEAD", env=env)
            self._git("add", "--", *files, env=env)
            tree = self._git("write-tree", env=env).strip()
            sha = self._git("commit-tree", tree, "-p", "HEAD", "-m", summary, "-m", body, env=env).strip()
            index.unlink(missing_ok=True)
        return sha

    def _finish(self, journal: dict[str, Any]) -> None:
        self._git("tag", "-f", journal.get("tag") or round_ref(journal["round"]), journal["commit"])
        checkpoint("dvc:after-tag")
        if not journal.get("passed", True):
            self._discard(journal)
        self._clear_journal()

    def _discard(self, journal: dict[str, Any]) -> None:
        """Put the working tree back to ``HEAD`` for what the journal's round touched."""
        written: dict[str, bool] = journal.get("written", {})
        targets = list(dict.fromkeys([norm_path(t) for t in self.tracked] + list(written)))
        meta = self._meta_files(targets)
        in_head = set(self._git("ls-tree", "-r", "--name-only", "HEAD", "--", *meta).splitlines())
        self._git("reset", "-q", "--", *meta)
        if in_head:
            self._git("checkout", "HEAD", "--", *sorted(in_head))
        for f in meta:
            if f.endswith(".dvc") and f not in in_head:
                (self.root / f).unlink(missing_ok=True)
        for rel, existed in written.items():
            dest = self.root / rel
            backup = self.root / BACKUPS / rel
            if existed and backup.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(backup, dest)
            elif not existed:
                _remove(dest)
            (dest.parent / f".{dest.name}.curation.tmp").unlink(missing_ok=True)
            parent = dest.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()  # folders the round made and left empty
                parent = parent.parent

    def recover(self) -> str | None:
        """Finish a crashed round whose commit was made, or discard one whose commit was not.

        Returns
        -------
        str or None
            ``"finished"``, ``"discarded"`` or ``None`` (nothing to do).
        """
        if not (self.root / JOURNAL).exists():
            return None
        with self._locked():
            journal = self._journal()
            if journal is None:
                return None
            pending = self._pending()
            if pending is not None and journal.get("stage") != "committed":
                journal.update(stage="committed", commit=pending[1], passed=True)
            if journal.get("stage") == "committed":
                self._finish(journal)
                return "finished"
            self._discard(journal)
            self._clear_journal()
            return "discarded"

    def abort(self) -> None:
        """Discard the round being written and release the round lock."""
        if self.round_ is None:
            return
        try:
            journal = self._journal()
            if journal is not None and journal.get("stage") != "committed":
                self._discard(journal)
                self._clear_journal()
        finally:
            self.round_ = None
            self._release()

    # -- reading -------------------------------------------------------------------------

    def _outs(self, ref: str) -> dict[str, dict[str, Any]]:
        """Out path -> the out entry of its ``.dvc`` file, as of ``ref``."""
        names = [
            n
            for n in self._git("ls-tree", "-r", "--name-only", ref).splitlines()
            if n.endswith(".dvc") and not n.startswith(".dvc/")
        ]
        outs: dict[str, dict[str, Any]] = {}
        for name, text in self._blobs(ref, names).items():
            data = yaml.safe_load(text) or {}
            parent = PurePosixPath(name).parent
            for out in data.get("outs", []):
                path = str(parent / out["path"]) if str(parent) != "." else out["path"]
                outs[path] = out
        return outs

    def _blobs(self, ref: str, names: list[str]) -> dict[str, str]:
        """The text of each file ``names`` at ``ref``, in one ``git cat-file --batch``."""
        if not names:
            return {}
        try:
            raw = subprocess.run(
                ["git", "cat-file", "--batch"],
                cwd=self.root,
                env=ENV,
                check=True,
                input="".join(f"{ref}:{n}\n" for n in names).encode(),
                capture_output=True,
            ).stdout
        except subprocess.CalledProcessError as e:
            raise VersioningError(f"`git cat-file` failed in {self.root}: {e.stderr.decode()}") from e
        out, pos = {}, 0
        for name in names:
            end = raw.index(b"\n", pos)
            header = raw[pos:end].split()
            if len(header) != 3:  # "<ref>:<name> missing"
                raise VersioningError(f"{name} is missing at {ref} in {self.root}")
            size = int(header[2])
            out[name] = raw[end + 1 : end + 1 + size].decode()
            pos = end + 1 + size + 1
        return out

    def _cached(self, md5: str) -> bytes | None:
        path = self.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
        return path.read_bytes() if path.exists() else None

    def _from_dvc(self, ref: str, rel: str) -> bytes:
        """Read through DVC itself (fetching from the remote when the cache lacks it)."""
        import dvc.api

        try:
            return dvc.api.read(rel, repo=str(self.root), rev=ref, mode="rb")
        except Exception as e:  # DVC raises many types; translate at the boundary
            raise VersioningError(f"cannot read {rel} at {ref} in {self.root}: {e}") from e

    def _dir_entries(self, ref: str, out: str, md5: str) -> dict[str, str]:
        raw = self._cached(md5)
        if raw is None:
            self._dvc("fetch", "-q", "--all-tags")
            raw = self._cached(md5)
        if raw is None:
            raise VersioningError(
                f"the content of {out} at {ref} is in neither the DVC cache nor the remote: "
                "push it from the repository that made it (`dvc push`)"
            )
        return {f"{out}/{e['relpath']}": e["md5"] for e in json.loads(raw)}

    def files(self, ref: str) -> dict[str, str]:
        """Every DVC-tracked file as of ``ref``: path -> MD5."""
        ref = self._check_ref(ref)
        found: dict[str, str] = {}
        for out, entry in self._outs(ref).items():
            md5 = entry.get("md5", "")
            if md5.endswith(".dir"):
                found.update(self._dir_entries(ref, out, md5))
            else:
                found[out] = md5
        return dict(sorted(found.items()))

    def _check_ref(self, ref: str) -> str:
        """``ref`` as this store's (``round-N`` names this loop's round), checked to exist."""
        ref = self.names.resolve(ref)
        try:
            self._git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
        except VersioningError:
            known = ", ".join(self.names.ref(n) for n in sorted(self._tags())) or "none yet"
            raise VersioningError(f"unknown ref {ref!r} in {self.root}; rounds: {known}") from None
        return ref

    def read_bytes(self, ref: str, path: str) -> bytes:
        """The content of ``path`` as of ``ref`` (a tag, branch or commit)."""
        rel = norm_path(path)
        ref = self._check_ref(ref)
        for out, entry in self._outs(ref).items():
            if not _under(rel, out):
                continue
            md5 = entry.get("md5", "")
            if md5.endswith(".dir"):
                md5 = self._dir_entries(ref, out, md5).get(rel, "")
                if not md5:
                    break
            elif rel != out:
                continue
            data = self._cached(md5)
            return data if data is not None else self._from_dvc(ref, rel)
        try:
            return subprocess.run(
                ["git", "show", f"{ref}:{rel}"],
                cwd=self.root,
                env=ENV,
                capture_output=True,
                check=True,
            ).stdout
        except subprocess.CalledProcessError:
            raise VersioningError(
                f"{rel} is not versioned at {ref} in {self.root}: expected one of "
                f"{', '.join(self.files(ref)) or 'no files'}"
            ) from None

    def read(self, ref: str, path: str) -> pl.DataFrame:
        """The Parquet table at ``path`` as of ``ref`` (a tag, branch or commit)."""
        return parquet_table(self.read_bytes(ref, path), path, ref)

    def history(self) -> list[RoundInfo]:
        """The committed rounds (``round-N`` tags), oldest first."""
        if not (self.root / ".git").exists():
            return []
        tags = self._tags()
        pending = self._pending()
        refs = {n: (self.names.ref(n), sha) for n, sha in tags.items()}
        if pending is not None and pending[0] not in refs:
            refs[pending[0]] = (pending[1], pending[1])
        commits = self._commits(sha for _, sha in refs.values())
        rounds = []
        for n, (ref, sha) in sorted(refs.items()):
            when, message, meta = commits[sha]
            rounds.append(RoundInfo(n, ref, sha, when, message, meta))
        return rounds

    def _pending(self) -> tuple[int, str] | None:
        """The round a crash left committed but untagged, as (round, commit SHA)."""
        journal = self._journal()
        if journal is None or journal.get("loop") != self.loop:
            return None
        if journal.get("stage") == "committed":
            return journal["round"], journal["commit"]
        head = self._head()
        if head != journal.get("base") and self._round_of(head) == journal["round"]:
            return journal["round"], head
        return None

    def changes(self) -> list[str]:
        """Tracked data (``dvc status``) and git-tracked files changed since ``HEAD``."""
        if not (self.root / ".dvc").is_dir() or not (self.root / ".git").exists():
            return []
        status = json.loads(self._dvc("status", "--json") or "{}")
        changed = sorted(
            {
                path
                for key, entries in status.items()
                if key.endswith(".dvc")  # the rounds' data, not the pipeline's stages
                for entry in entries
                if isinstance(entry, dict)
                for change in entry.values()
                if isinstance(change, dict)
                for path in change
            }
        )
        if changed:  # a tracked folder changed: name its files (``dvc diff``: HEAD to working tree)
            diff = json.loads(self._dvc("diff", "--json") or "{}")
            files = {
                e["path"]
                for kind in ("added", "deleted", "modified")
                for e in diff.get(kind, [])
                if not e["path"].endswith("/") and any(_under(e["path"], d) for d in changed)
            }
            changed = sorted(files) or changed
        lines = self._git("status", "--porcelain", "--untracked-files=no").splitlines()
        return changed + sorted(line[3:] for line in lines if line[3:])

    def checkout(self, ref: str, dest: Path | None = None) -> list[str]:
        """Restore the data of ``ref``.

        With ``dest`` unset (or the project root) the working tree is restored the DVC
        way: the ``.dvc`` files of ``ref`` are checked out (those ``ref`` lacks are
        removed) and ``dvc checkout`` brings their data; ``checkout("HEAD")`` returns to
        the last round. With another ``dest`` the files are copied there.

        Returns
        -------
        list of str
            The files restored, relative to ``dest``.
        """
        ref = self._check_ref(ref)
        files = self.files(ref)
        if dest is not None and Path(dest).resolve() != self.root.resolve():
            for rel in files:
                atomic_write(Path(dest) / rel, self.read_bytes(ref, rel))
            return list(files)
        with self._locked():
            if self._journal() is not None:
                raise VersioningError(
                    "a round is being written (or was left by a crash): run `curation run` "
                    "to finish it, or begin a round to discard it, before a checkout"
                )
            want = [f"{o}.dvc" for o in self._outs(ref)]
            have = [f for f in self._git("ls-files", "--", "*.dvc").splitlines() if not f.startswith(".dvc/")]
            gone = [f for f in have if f not in want]
            if gone:
                self._git("rm", "-q", "--cached", "--", *gone)
                for f in gone:
                    (self.root / f).unlink(missing_ok=True)
                    _remove(self.root / f.removesuffix(".dvc"))
            if want:
                self._git("checkout", ref, "--", *want)
                self._dvc("checkout", "-q", "--force", *want)
        return list(files)
