"""The oracle annotator: answers from a hidden label column, for simulation and the demo."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import polars as pl

from curation.connectors.base import ANNOTATION_COLUMNS, ANNOTATORS, Project, Pulled
from curation.errors import ConnectorError
from curation.support.data import write_parquet


@ANNOTATORS.register
class Oracle:
    """Answer every pushed task with the value of ``label_column`` in the task row.

    Label tasks get the hidden label; review tasks get it too (the true label, so a
    review confirms the given label or corrects it). Answers are kept in
    ``state_dir/oracle.parquet``, so a later process can pull them.

    Parameters
    ----------
    label_column : str
        The column of the task table that holds the true label.
    annotator : str
        The name recorded as the annotator.

    Examples
    --------
    >>> import polars as pl, tempfile, pathlib
    >>> from curation.connectors.base import Project
    >>> p = Project("demo", ["a", "b"], pathlib.Path(tempfile.mkdtemp()))
    >>> o = Oracle(label_column="truth")
    >>> o.push(p, pl.DataFrame({"task_id": ["label:1"], "id": ["1"], "kind": ["label"], "truth": ["a"]}))
    1
    >>> o.pull(p).annotations["label"].to_list()
    ['a']
    """

    name: ClassVar[str] = "oracle"

    def __init__(self, label_column: str = "hidden_label", annotator: str = "oracle") -> None:
        self.label_column = label_column
        self.annotator = annotator

    def check(self) -> None:
        """Nothing to check before a round: the answers come with the tasks."""

    def _store(self, project: Project) -> pl.DataFrame:
        path = project.state_dir / "oracle.parquet"
        return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=ANNOTATION_COLUMNS)

    def push(self, project: Project, tasks: pl.DataFrame) -> int:
        """Answer the tasks not answered before; return how many were new."""
        if self.label_column not in tasks.columns:
            raise ConnectorError(
                f"oracle: tasks have no column {self.label_column!r} to answer from; "
                f"set label_column in the connector profile (columns: {', '.join(tasks.columns)})"
            )
        store = self._store(project)
        new = tasks.filter(~pl.col("task_id").is_in(store["task_id"].implode()))
        now = datetime.now(UTC).isoformat()
        answers = new.select(
            pl.col("task_id"),
            pl.col("id").cast(pl.String),
            pl.col("kind"),
            pl.col(self.label_column).cast(pl.String).alias("label"),
            pl.lit(self.annotator).alias("annotator"),
            pl.when(pl.col(self.label_column).is_null())
            .then(pl.lit("skipped"))
            .otherwise(pl.lit("done"))
            .alias("status"),
            pl.lit(now).alias("updated_at"),
        )
        write_parquet(pl.concat([store, answers]), project.state_dir / "oracle.parquet")
        return len(answers)

    def pull(self, project: Project, since: str | None = None) -> Pulled:
        """Answers recorded after ``since`` (an ISO timestamp cursor)."""
        store = self._store(project)
        if since is not None:
            store = store.filter(pl.col("updated_at") > since)
        cursor = str(store["updated_at"].max()) if len(store) else since
        return Pulled(annotations=store, cursor=cursor)
