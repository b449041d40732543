"""The files annotator: Label Studio import JSON out, Label Studio export JSON in.

For teams that move files by hand (or by a script of their own) between curation and
an annotation tool.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import polars as pl

from curation.connectors.base import ANNOTATORS, Project, Pulled, empty_annotations
from curation.connectors.ls_format import from_ls_export, labeling_config, to_ls_task, unusable
from curation.errors import ConnectorError


@ANNOTATORS.register
class Files:
    """Write tasks as Label Studio import files; read annotations from export files.

    Parameters
    ----------
    outbox : str
        Folder the task files go to (``tasks-0001.json``, ...), plus ``config.xml``,
        the labeling config to paste into the Label Studio project.
    inbox : str
        Folder of Label Studio JSON exports to read annotations from.

    Relative folders are under the project's state folder.
    """

    name: ClassVar[str] = "files"

    def __init__(self, outbox: str = "outbox", inbox: str = "inbox") -> None:
        self.outbox = outbox
        self.inbox = inbox

    def check(self) -> None:
        """Nothing to check before a round: the folders are made when first used."""

    def _dir(self, project: Project, sub: str) -> Path:
        p = Path(sub)
        p = p if p.is_absolute() else project.state_dir / p
        p.mkdir(parents=True, exist_ok=True)
        return p

    def _pushed(self, outbox: Path) -> set[str]:
        done: set[str] = set()
        for f in sorted(outbox.glob("tasks-*.json")):
            done.update(t["data"]["task_id"] for t in json.loads(f.read_text(encoding="utf-8")))
        return done

    def push(self, project: Project, tasks: pl.DataFrame) -> int:
        """Write the tasks not written before to a new ``tasks-NNNN.json``; return how many."""
        outbox = self._dir(project, self.outbox)
        (outbox / "config.xml").write_text(labeling_config(project.labels), encoding="utf-8")
        done = self._pushed(outbox)
        new = [to_ls_task(r) for r in tasks.iter_rows(named=True) if r["task_id"] not in done]
        if not new:
            return 0
        n = len(list(outbox.glob("tasks-*.json"))) + 1
        path = outbox / f"tasks-{n:04d}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(new, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)
        return len(new)

    def pull(self, project: Project, since: str | None = None) -> Pulled:
        """Annotations in every export file of the inbox, updated after ``since``."""
        inbox = self._dir(project, self.inbox)
        frames, skipped = [empty_annotations()], []
        for f in sorted(inbox.glob("*.json")):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConnectorError(f"{f}: not a Label Studio JSON export: {e}") from e
            if not isinstance(data, list):
                raise ConnectorError(f"{f}: expected a JSON list of tasks, found {type(data).__name__}")
            skipped += [f"{f.name}: {why}" for why in unusable(data)]
            frames.append(_stamped(from_ls_export(data), f))
        ann = pl.concat(frames).unique(subset=["task_id", "annotator", "updated_at"], maintain_order=True)
        if since is not None:
            ann = ann.filter(pl.col("updated_at") > since)
        cursor = str(ann["updated_at"].max()) if len(ann) else since
        return Pulled(annotations=ann, cursor=cursor, skipped=skipped)


def _stamped(ann: pl.DataFrame, export: Path) -> pl.DataFrame:
    """Every answer with an ``updated_at``: Label Studio's own is kept as written; an answer
    without one, or with one that is not ISO 8601 (a hand-made or third-party export), takes
    the export file's modification time in Label Studio's format, so it is merged, never
    dropped by the cursor."""
    mtime = datetime.fromtimestamp(export.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def utc(value: str | None) -> str:
        if not value:
            return mtime
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return mtime
        return value

    return ann.with_columns(pl.col("updated_at").map_elements(utc, return_dtype=pl.String))
