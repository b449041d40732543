"""The state a loop carries from round to round, and where it lives in the version store.

Layout (paths relative to the project root, versioned by the loop's store):

- ``labels/LOOP.parquet``: the labels the annotators gave, one row per id (``LABEL_TABLE``);
- ``rounds/LOOP/round-N/``: round N's tables (``quarantine``, ``issues``, ``selection``,
  ``tasks``, ``annotations``, ``leaks``, ``evidence``), its ``report.html`` and its
  ``manifest.json``.

Everything here is read through the store at its head (:func:`load_state`), never from
the working tree, so every store (DVC, lakeFS, local) gives the next round the same state,
and a round that was killed before its commit leaves nothing a later round reads.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.config import LoopConfig
from curation.connectors.base import ANNOTATION_COLUMNS, TASK_COLUMNS, VersionStore, open_store, task_id
from curation.steps.reconcile import reconcile
from curation.steps.validate import RESERVED
from curation.support.data import read_table, require_columns
from curation.support.manifest import Manifest, build_manifest, read_manifest
from curation.support.redact import redact_tree

#: The loop's label table: one reconciled label per id, with where it came from.
LABEL_TABLE: dict[str, Any] = {
    "id": pl.String,
    "label": pl.String,
    "kind": pl.String,
    "given_label": pl.String,
    "status": pl.String,
    "agreement": pl.Float64,
    "round": pl.Int64,
}
#: The task columns the next rounds read back.
TASK_STATE: dict[str, Any] = {
    "task_id": pl.String,
    "id": pl.String,
    "kind": pl.String,
    "given_label": pl.String,
    "prediction": pl.String,
    "prediction_score": pl.Float64,
}


def labels_path(cfg: LoopConfig) -> str:
    """Where the loop keeps the labels its annotators gave (one row per id)."""
    return f"labels/{cfg.name}.parquet"


def round_dir(cfg: LoopConfig, n: int) -> str:
    """The folder of round ``n``'s outputs, relative to the project root."""
    return f"rounds/{cfg.name}/round-{n}"


def rel(cfg: LoopConfig, p: Path) -> str:
    """``p`` relative to the project root, as the version store wants it."""
    full = cfg.path(p).resolve()
    try:
        return str(full.relative_to(cfg.root.resolve()))
    except ValueError:
        return str(full)


def store_for(cfg: LoopConfig) -> VersionStore:
    """The version store the loop's ``version`` section names (see :func:`open_store`)."""
    inputs = [p for p in (cfg.dataset, cfg.eval_dataset) if p is not None]
    inside = [r for r in (rel(cfg, p) for p in inputs) if not Path(r).is_absolute()]
    tracked = [*inside, "labels", "rounds", "annotations"]
    return open_store(cfg.version.name, cfg.version.params(), cfg.root, tracked, loop=cfg.name)


def last_round(store: VersionStore, loop: str) -> tuple[int, dict[str, Any]]:
    """The number of the loop's last committed round and the state its manifest left for the
    next one (``cursor``, ``tasks_pushed``, ...); ``(0, {})`` before the first.

    Examples
    --------
    >>> import tempfile
    >>> from curation.connectors.local import LocalStore
    >>> last_round(LocalStore(Path(tempfile.mkdtemp())), "demo")
    (0, {})
    """
    rounds = [r for r in store.history() if r.metadata.get("curation.loop", loop) == loop]
    if not rounds:
        return 0, {}
    last = max(rounds, key=lambda r: r.round)
    return last.round, read_manifest(store, last.ref).state


@dataclass
class RoundState:
    """What the earlier rounds of a loop left, as of the store's head.

    Attributes
    ----------
    round : int
        The last committed round (0 before the first).
    state : dict
        Its manifest's ``state`` (the annotation ``cursor``, ...).
    labels : polars.DataFrame
        The loop's label table (``LABEL_TABLE``).
    tasks : polars.DataFrame
        Every earlier round's tasks (``TASK_STATE``).
    annotations : polars.DataFrame
        Every earlier round's annotations (``ANNOTATION_COLUMNS``).
    """

    round: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    labels: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=LABEL_TABLE))
    tasks: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TASK_STATE))
    annotations: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ANNOTATION_COLUMNS))

    def pending(self) -> pl.Series:
        """Ids already queued as label tasks (they leave the pool)."""
        return self.tasks.filter(pl.col("kind") == "label")["id"]

    def reviewed(self) -> pl.Series:
        """Ids already sent for review."""
        return self.tasks.filter(pl.col("kind") == "review")["id"]


def _read(store: VersionStore, ref: str, path: str, columns: dict[str, Any]) -> pl.DataFrame:
    table = pl.read_parquet(io.BytesIO(store.read_bytes(ref, path)))
    return table.select([c for c in columns if c in table.columns])


def load_state(cfg: LoopConfig, store: VersionStore) -> RoundState:
    """The loop's state as of the store's head (empty before the first round)."""
    n, state = last_round(store, cfg.name)
    if n == 0:
        return RoundState()
    files = store.files(store.head)
    prefix = f"rounds/{cfg.name}/round-"
    frames: dict[str, list[pl.DataFrame]] = {"tasks": [], "annotations": []}
    for name, columns in (("tasks", TASK_STATE), ("annotations", ANNOTATION_COLUMNS)):
        paths = sorted(
            (p for p in files if p.startswith(prefix) and p.endswith(f"/{name}.parquet")),
            key=lambda p: int(p[len(prefix) :].split("/")[0]),
        )
        frames[name] = [_read(store, store.head, p, columns) for p in paths]
    labels = (
        _read(store, store.head, labels_path(cfg), LABEL_TABLE)
        if labels_path(cfg) in files
        else pl.DataFrame(schema=LABEL_TABLE)
    )
    return RoundState(
        n,
        state,
        labels,
        pl.concat([pl.DataFrame(schema=TASK_STATE), *frames["tasks"]], how="vertical_relaxed"),
        pl.concat([pl.DataFrame(schema=ANNOTATION_COLUMNS), *frames["annotations"]], how="vertical_relaxed"),
    )


def load_data(cfg: LoopConfig, labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """The dataset with the loop's own labels (``labels``: ``LABEL_TABLE``) laid over its
    label column."""
    c = cfg.columns
    df = read_table(cfg.path(cfg.dataset))
    require_columns(df, {"id": c.id, "text": c.text, "label": c.label}, str(cfg.dataset))
    if labels is None or len(labels) == 0:
        return df
    key, given_col = f"{RESERVED}id", f"{RESERVED}given"
    given = labels.select(pl.col("id").alias(key), pl.col("label").alias(given_col))
    df = df.with_columns(pl.col(c.id).cast(pl.String).alias(key))
    df = df.join(given, on=key, how="left", maintain_order="left")
    label_dtype = df.schema[c.label]
    return df.with_columns(
        pl.coalesce(pl.col(given_col).cast(label_dtype), pl.col(c.label)).alias(c.label)
    ).drop(key, given_col)


def label_choices(cfg: LoopConfig, schema: Any, labeled: pl.DataFrame) -> list[str]:
    """The label set: the contract's ``isin`` values, else the labels seen so far."""
    col = schema.columns.get(cfg.columns.label)
    for check in getattr(col, "checks", []) or []:
        if check.name == "isin":
            return sorted(str(v) for v in check.statistics["allowed_values"])
    return sorted(labeled[cfg.columns.label].cast(pl.String).unique().to_list())


def codes(labels: pl.Series, classes: list[str]) -> np.ndarray:
    """Integer codes of ``labels`` in ``classes``.

    Examples
    --------
    >>> codes(pl.Series(["b", "a"]), ["a", "b"]).tolist()
    [1, 0]
    """
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[str(v)] for v in labels.to_list()], dtype=np.int64)


def suggestions(
    pool: pl.DataFrame, pool_probs: np.ndarray | None, issues: pl.DataFrame, id_col: str, classes: list[str]
) -> dict[str, tuple[str, float]]:
    """The model's suggested label and its score: for pool rows from the model's
    probabilities, for suspected label errors from the label-issue detector."""
    out: dict[str, tuple[str, float]] = {}
    if pool_probs is not None and len(pool):
        best = pool_probs.argmax(1)
        out.update(
            zip(
                pool[id_col].cast(pl.String).to_list(),
                [(classes[b], float(pool_probs[i, b])) for i, b in enumerate(best)],
            )
        )
    lab = issues.filter(pl.col("issue") == "label")
    out.update(zip(lab["id"].to_list(), zip(lab["suggested_label"].to_list(), lab["score"].to_list())))
    return out


def make_tasks(
    cfg: LoopConfig, n: int, sel: pl.DataFrame, valid: pl.DataFrame, suggested: dict[str, tuple[str, float]]
) -> pl.DataFrame:
    """Tasks for the selected rows, in priority order, carrying every row column (a column
    whose name is a task field, e.g. ``score``, is carried as ``data.score``).

    Label tasks (pool rows) carry the model's suggestion; review tasks (labeled rows whose
    label is suspect) carry the given label and the suggested one. ``suggested`` maps an
    id to ``(label, score)``.
    """
    c = cfg.columns
    key, text, label = (f"{RESERVED}{n}" for n in ("id", "text", "label"))
    extra = [col for col in valid.columns if col not in (c.id, c.text, c.label)]
    clash = {col: f"data.{col}" for col in extra if col in TASK_COLUMNS}  # a user column is never lost
    rows = valid.select(
        pl.col(c.id).cast(pl.String).alias(key),
        pl.col(c.text).alias(text),
        pl.col(c.label).alias(label),
        *(pl.col(x).alias(clash.get(x, x)) for x in extra),
    )
    rows = sel.join(rows, left_on="id", right_on=key, how="left", maintain_order="left")
    kinds = rows["kind"].to_list() if "kind" in rows.columns else ["label"] * len(rows)
    given = rows[label].cast(pl.String).to_list()
    pred = [suggested.get(i, (None, None)) for i in rows["id"]]
    base = pl.DataFrame(
        {
            "task_id": [task_id(k, i) for k, i in zip(kinds, rows["id"])],
            "id": rows["id"],
            "text": rows[text].cast(pl.String),
            "kind": kinds,
            "round": [n] * len(rows),
            "strategy": [cfg.strategy.name] * len(rows),
            "reason": rows["reason"],
            "score": rows["score"],
            "rank": rows["rank"],
            "prediction": [p[0] for p in pred],
            "prediction_score": [p[1] for p in pred],
            "given_label": [g if k == "review" else None for k, g in zip(kinds, given)],
        },
        schema=TASK_COLUMNS,
    )
    return pl.concat([base, rows.select([clash.get(x, x) for x in extra])], how="horizontal")


def merge_labels(
    old: pl.DataFrame, annotations: pl.DataFrame, tasks: pl.DataFrame, classes: list[str], n: int
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The loop's label table after round ``n``: one reconciled label per id.

    ``old`` is the label table before the round; ``annotations`` and ``tasks`` hold every
    round's (this one included). Several answers on a task are reconciled (majority;
    cleanlab's multi-annotator consensus with enough overlap); a review task's answer is the
    verdict. ``round`` is when an id's label was last set or changed.
    """
    rec = reconcile(annotations, classes, tasks=tasks)
    given = tasks.select("task_id", "given_label").unique("task_id", keep="last")
    new = (
        rec.labels.filter(pl.col("label").is_not_null())
        .join(given, on="task_id", how="left")
        .unique("id", keep="last", maintain_order=True)
    )
    before = old.select(pl.col("id"), pl.col("label").alias("_old"), pl.col("round").alias("_round"))
    new = new.join(before, on="id", how="left").with_columns(
        pl.when(pl.col("_old") == pl.col("label"))
        .then(pl.col("_round"))
        .otherwise(pl.lit(n))
        .cast(pl.Int64)
        .alias("round")
    )
    return new.select(list(LABEL_TABLE)), rec.summary()


def review_verdicts(labels: pl.DataFrame) -> pl.DataFrame | None:
    """Reviewers' verdicts on earlier label-issue flags (``id``, ``given_label``, ``label``)."""
    if "given_label" not in labels.columns:
        return None
    reviews = labels.filter((pl.col("kind") == "review") & pl.col("given_label").is_not_null())
    return reviews.select("id", "given_label", "label") if len(reviews) else None


def round_metrics(
    n: int,
    validation: dict[str, Any],
    tables: dict[str, pl.DataFrame],
    labels: int,
    evaluation: dict[str, Any],
    issue_report: dict[str, Any],
) -> dict[str, Any]:
    """The figures of round ``n`` (what ``curation run`` prints and the commit carries);
    ``evaluation`` holds the held-out ones (``accuracy``, ``accuracy_without_leaks``,
    ``leaked_rows``)."""
    issues, tasks = tables["issues"], tables["tasks"]
    metrics: dict[str, Any] = {
        "round": n,
        "rows": validation["rows"],
        "valid": validation["valid"],
        "quarantined": validation["quarantined"],
        "label_issues": int((issues["issue"] == "label").sum()),
        "issues": len(issues),
        "selected": len(tables["selection"]),
        "reviews": int((tasks["kind"] == "review").sum()),
        "annotations": len(tables["annotations"]),
        "labels": labels,
        **evaluation,
    }
    if "precision" in issue_report:
        metrics["flag_precision"] = issue_report["precision"].get("precision")
    return metrics


def round_manifest(
    cfg: LoopConfig,
    n: int,
    metrics: dict[str, Any],
    tables: dict[str, pl.DataFrame],
    validation: dict[str, Any],
    state: dict[str, Any],
) -> Manifest:
    """Round ``n``'s manifest: its inputs, settings, selection, answers, issues, figures and state."""
    inputs = {"dataset": cfg.path(cfg.dataset)}
    if cfg.eval_dataset is not None:
        inputs["eval"] = cfg.path(cfg.eval_dataset)
    return build_manifest(
        round=n,
        loop=cfg.name,
        inputs=inputs,
        params=redact_tree(cfg.model_dump(mode="json", by_alias=True)),
        strategy=cfg.strategy.name,
        strategy_params=cfg.strategy.params(),
        selected=tables["selection"],
        annotations=tables["annotations"],
        label_issues=tables["issues"],
        metrics={k: float(x) for k, x in metrics.items() if isinstance(x, (int, float))},
        validation=validation,
        outputs={k: f"{round_dir(cfg, n)}/{k}.parquet" for k in tables},
        state=state,
    )
