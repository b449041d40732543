"""The two outside-system contracts: an annotation queue and a version store.

Annotation tables have fixed columns (see ``TASK_COLUMNS`` and ``ANNOTATION_COLUMNS``);
a connector may carry more task columns through as task data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import polars as pl

#: Columns every task table has. ``task_id`` is stable (``"{kind}:{id}"``): pushing the
#: same task twice must create one task. ``kind`` is ``"label"`` (label a new sample) or
#: ``"review"`` (check a suspected label error: ``given_label`` vs ``prediction``).
TASK_COLUMNS: dict[str, Any] = {
    "task_id": pl.String,
    "id": pl.String,
    "text": pl.String,
    "kind": pl.String,
    "round": pl.Int64,
    "strategy": pl.String,
    "reason": pl.String,
    "score": pl.Float64,
    "rank": pl.Int64,
    "prediction": pl.String,
    "prediction_score": pl.Float64,
    "given_label": pl.String,
}

#: Columns every annotation table has. ``status`` is ``"done"``, ``"skipped"`` or
#: ``"cancelled"`` (``label`` is null unless done). ``updated_at`` is ISO 8601, UTC.
ANNOTATION_COLUMNS: dict[str, Any] = {
    "task_id": pl.String,
    "id": pl.String,
    "kind": pl.String,
    "label": pl.String,
    "annotator": pl.String,
    "status": pl.String,
    "updated_at": pl.String,
}


def task_id(kind: str, row_id: object) -> str:
    """The stable task id of one sample for one kind of task."""
    return f"{kind}:{row_id}"


def empty_annotations() -> pl.DataFrame:
    """An annotation table with no rows."""
    return pl.DataFrame(schema=ANNOTATION_COLUMNS)


@dataclass(frozen=True)
class Project:
    """What a connector needs to know about the loop it serves.

    Attributes
    ----------
    name : str
        The loop's name (a Label Studio project title, a folder name, ...).
    labels : list of str
        The label choices.
    state_dir : Path
        A folder the connector may keep local state in (cursors, outboxes).
    """

    name: str
    labels: list[str]
    state_dir: Path


@dataclass
class Pulled:
    """The result of a pull: new or changed annotations, and the cursor to pull from next."""

    annotations: pl.DataFrame
    cursor: str | None


@runtime_checkable
class Annotator(Protocol):
    """An annotation queue. Idempotent: pushing the same ``task_id`` twice creates one task."""

    name: ClassVar[str]

    def push(self, project: Project, tasks: pl.DataFrame) -> int:
        """Queue ``tasks`` (``TASK_COLUMNS`` at least), in row order; return how many were new."""
        ...

    def pull(self, project: Project, since: str | None = None) -> Pulled:
        """Annotations created or changed after the cursor ``since`` (all when ``None``)."""
        ...


@runtime_checkable
class VersionStore(Protocol):
    """Where rounds are versioned. A round is all or nothing: ``begin``, ``write``..., ``commit``."""

    name: ClassVar[str]

    def begin(self, round: int) -> None:
        """Start round ``round``: check the store is ready, discard a half-written round."""
        ...

    def write(self, path: str, table: pl.DataFrame) -> None:
        """Stage ``table`` at ``path`` (relative to the project root) for the round being written."""
        ...

    def commit(self, message: str, metadata: dict[str, str]) -> str:
        """Make the round permanent, in one step; return its ref (for example ``round-3``)."""
        ...

    def read(self, ref: str, path: str) -> pl.DataFrame:
        """The table at ``path`` as of ``ref``."""
        ...
