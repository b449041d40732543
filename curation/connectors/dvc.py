"""The DVC version store: the project is a git + DVC repository, a round is a tagged commit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import polars as pl

from curation.data import write_parquet
from curation.errors import VersioningError

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        out = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or e.stdout or "").strip().splitlines()
        raise VersioningError(
            f"`{' '.join(cmd[2:] if cmd[0] == sys.executable else cmd)}` failed in {cwd}: "
            f"{detail[-1] if detail else e.returncode}"
        ) from e
    return out.stdout


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fallback identity; return its output."""
    ident = ["-c", "user.name=curation", "-c", "user.email=curation@localhost"]
    return _run(["git", *ident, *args], root)


def dvc(root: Path, *args: str) -> str:
    """Run the DVC of this Python environment in ``root``; return its output."""
    return _run([sys.executable, "-m", "dvc", *args], root)


class DvcStore:
    """Version rounds in a git + DVC repository.

    ``write`` puts tables in the working tree; ``commit`` runs ``dvc add`` on the
    tracked paths, commits the ``.dvc`` files with the metadata in the message, tags the
    commit ``round-N`` and pushes the data to the DVC remote if one is set.

    Parameters
    ----------
    root : Path
        The project root (made a git + DVC repository if it is not one).
    tracked : list of str
        Paths (relative to ``root``) whose content DVC tracks.
    remote : str, optional
        A DVC remote URL or folder; data is pushed there on every commit.
    """

    name: ClassVar[str] = "dvc"

    def __init__(self, root: Path, tracked: list[str], remote: str | None = None) -> None:
        self.root = Path(root)
        self.tracked = tracked
        self.remote = remote
        self.round_: int | None = None

    def init(self) -> None:
        """Make ``root`` a git + DVC repository (a no-op when it is one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").exists():
            git(self.root, "init", "-q", "-b", "main")
        if not (self.root / ".dvc").exists():
            dvc(self.root, "init", "-q")
            dvc(self.root, "config", "core.analytics", "false")
            git(self.root, "add", ".dvc", ".dvcignore")
            git(self.root, "commit", "-q", "-m", "curation: initialise DVC")
        if self.remote:
            dvc(self.root, "remote", "add", "-d", "-f", "default", self.remote)

    def begin(self, round: int) -> None:
        """Start writing round ``round``."""
        self.init()
        self.round_ = round

    def write(self, path: str, table: pl.DataFrame) -> None:
        """Write ``table`` as Parquet at ``path`` in the working tree."""
        write_parquet(table, self.root / path)

    def commit(self, message: str, metadata: dict[str, str]) -> str:
        """Track, commit and tag the round; return the tag."""
        if self.round_ is None:
            raise VersioningError("commit() before begin(): no round is being written")
        paths = [p for p in self.tracked if (self.root / p).exists()]
        dvc(self.root, "add", "-q", *paths)
        meta_files = [f"{p}.dvc" for p in paths]
        ignores = [str(Path(p).parent / ".gitignore") for p in paths]
        git(self.root, "add", *meta_files, *[g for g in set(ignores) if (self.root / g).exists()])
        body = json.dumps(metadata, indent=1, sort_keys=True, default=str)
        git(self.root, "commit", "-q", "--allow-empty", "-m", message, "-m", body)
        tag = f"round-{self.round_}"
        git(self.root, "tag", "-f", tag)
        if self.remote:
            dvc(self.root, "push", "-q")
        self.round_ = None
        return tag

    def read(self, ref: str, path: str) -> pl.DataFrame:
        """The Parquet table at ``path`` as of ``ref`` (a tag, branch or commit)."""
        import dvc.api

        try:
            with dvc.api.open(path, repo=str(self.root), rev=ref, mode="rb") as f:
                return pl.read_parquet(io.BytesIO(f.read()))
        except Exception as e:  # DVC raises many types; translate at the boundary
            raise VersioningError(f"cannot read {path} at {ref} in {self.root}: {e}") from e
