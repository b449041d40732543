"""One round of the loop: orchestration only. The steps live in their own modules.

validate -> embed -> find issues -> select -> annotate (push, pull) -> version.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from curation.config import LoopConfig, load_connector
from curation.connectors import ANNOTATORS, Project, VersionStore, task_id
from curation.connectors.base import ANNOTATION_COLUMNS, TASK_COLUMNS
from curation.connectors.dvc import DvcStore
from curation.data import read_table, require_columns, write_parquet
from curation.embed import embed_with_report
from curation.issues.run import find_issues
from curation.manifest import Manifest, build_manifest, read_manifest, write_manifest
from curation.model import accuracy, fit_predict_proba
from curation.reconcile import reconcile
from curation.strategies import STRATEGIES, Pool
from curation.validate import ValidationResult, load_schema, validate

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Progress of a round, for a terminal or a log. Library code never prints."""

    def start(self, step: str, total: int | None = None) -> None:
        """A step begins (``total`` units of work, if known)."""

    def advance(self, done: int, total: int | None = None) -> None:
        """``done`` units of the current step are finished."""

    def finish(self, summary: str) -> None:
        """The current step ended; ``summary`` says what it did."""


class LogReporter:
    """A :class:`Reporter` that writes to the ``curation`` log."""

    def start(self, step: str, total: int | None = None) -> None:
        log.info("%s ...", step)

    def advance(self, done: int, total: int | None = None) -> None:
        log.debug("%s/%s", done, total)

    def finish(self, summary: str) -> None:
        log.info("%s", summary)


@dataclass
class RoundResult:
    """What a round did: its number, its version ref, its metrics and its tables."""

    round: int
    ref: str
    metrics: dict[str, Any]
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)


class LocalStore:
    """A version store that only writes files (``version.backend: none``)."""

    name = "none"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.round_ = 0

    def begin(self, round: int) -> None:
        self.round_ = round

    def write(self, path: str, table: pl.DataFrame) -> None:
        write_parquet(table, self.root / path)

    def write_bytes(self, path: str, data: bytes) -> None:
        dest = self.root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)

    def commit(self, message: str, metadata: dict[str, str]) -> str:
        return f"round-{self.round_}"

    def read(self, ref: str, path: str) -> pl.DataFrame:
        return pl.read_parquet(self.root / path)


def rel(cfg: LoopConfig, p: Path) -> str:
    """``p`` relative to the project root, as the version store wants it."""
    full = cfg.path(p).resolve()
    try:
        return str(full.relative_to(cfg.root.resolve()))
    except ValueError:
        return str(full)


def labels_path(cfg: LoopConfig) -> str:
    """Where the loop keeps the labels its annotators gave (one row per id)."""
    return f"labels/{cfg.name}.parquet"


def round_dir(cfg: LoopConfig, n: int) -> str:
    """The folder of round ``n``'s outputs, relative to the project root."""
    return f"rounds/{cfg.name}/round-{n}"


def make_store(cfg: LoopConfig) -> VersionStore:
    """The version store the loop's ``version`` section names."""
    if cfg.version.backend == "none":
        return LocalStore(cfg.root)
    if cfg.version.backend == "lakefs":
        from curation.connectors import lakefs  # type: ignore[attr-defined]

        return lakefs.LakeFSStore.from_loop(cfg)  # type: ignore[no-any-return]
    inputs = [p for p in (cfg.dataset, cfg.eval_dataset) if p is not None]
    inside = [r for r in map(lambda p: rel(cfg, p), inputs) if not Path(r).is_absolute()]
    return DvcStore(cfg.root, [*inside, "labels", "rounds", "annotations"], cfg.version.remote)


def last_round(cfg: LoopConfig) -> tuple[int, dict[str, Any]]:
    """The number and manifest of the last finished round (0 and {} before the first)."""
    base = cfg.root / "rounds" / cfg.name
    done = sorted((int(p.parent.name.split("-")[1]), p) for p in base.glob("round-*/manifest.json"))
    if not done:
        return 0, {}
    n, path = done[-1]
    return n, json.loads(path.read_text(encoding="utf-8"))


def load_data(cfg: LoopConfig) -> pl.DataFrame:
    """The dataset with the loop's own labels laid over its label column."""
    c = cfg.columns
    df = read_table(cfg.path(cfg.dataset))
    require_columns(df, {"id": c.id, "text": c.text, "label": c.label}, str(cfg.dataset))
    lp = cfg.root / labels_path(cfg)
    if not lp.exists():
        return df
    given = pl.read_parquet(lp).select(pl.col("id").alias("_id"), pl.col("label").alias("_given"))
    df = df.with_columns(pl.col(c.id).cast(pl.String).alias("_id"))
    df = df.join(given, on="_id", how="left", maintain_order="left")
    label_dtype = df.schema[c.label]
    return df.with_columns(
        pl.coalesce(pl.col("_given").cast(label_dtype), pl.col(c.label)).alias(c.label)
    ).drop("_id", "_given")


def label_choices(cfg: LoopConfig, schema: Any, labeled: pl.DataFrame) -> list[str]:
    """The label set: the contract's ``isin`` values, else the labels seen so far."""
    col = schema.columns.get(cfg.columns.label)
    for check in getattr(col, "checks", []) or []:
        if check.name == "isin":
            return sorted(str(v) for v in check.statistics["allowed_values"])
    return sorted(labeled[cfg.columns.label].cast(pl.String).unique().to_list())


def step_validate(cfg: LoopConfig, df: pl.DataFrame, rep: Reporter) -> ValidationResult:
    """Validate against the loop's contract, applying its gate."""
    rep.start("validate", len(df))
    v = cfg.validate_
    res = validate(
        df, load_schema(cfg.path(cfg.schema_path)), text=cfg.columns.text, label=cfg.columns.label,
        source=str(cfg.dataset), engine="auto" if cfg.engine == "ray" else "local",
        max_invalid_fraction=v.max_invalid_fraction, min_per_class=v.min_per_class,
        labels=v.labels, local_below=v.local_below,
    )
    rep.finish(f"validate: {res.report['valid']} valid, {res.report['quarantined']} quarantined")
    return res


def step_embed(cfg: LoopConfig, df: pl.DataFrame, rep: Reporter, what: str = "embed") -> np.ndarray:
    """Embed the text column of ``df`` (cached); the report says how many texts were cut."""
    rep.start(what, len(df))
    res = embed_with_report(df[cfg.columns.text].to_list(), cfg.embed, ids=df[cfg.columns.id].to_list(),
                            root=cfg.root, engine=cfg.engine, progress=rep.advance)
    r = res.report
    rep.finish(f"{what}: {len(df)} texts, {r['embedded']} embedded, {r['cached']} from the cache, "
               f"{r['truncated']} truncated at {cfg.embed.max_seq_length} tokens")
    return res.vectors


def step_issues(cfg: LoopConfig, valid: pl.DataFrame, X: np.ndarray, classes: list[str],
                verdicts: pl.DataFrame | None, rep: Reporter) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every configured detector over the valid rows (unlabeled rows are neighbours, never
    label errors); one table, worst first within each issue, and the step's report."""
    rep.start("issues", None)
    c = cfg.columns
    issues, report = find_issues(
        valid[c.text].to_list(), valid[c.id].cast(pl.String).to_list(),
        valid[c.label].cast(pl.String).to_list(), classes, X, cfg.issues, verdicts=verdicts)
    report.pop("pred_probs", None)
    rep.finish(f"issues: {len(issues)} flagged ({', '.join(f'{k} {v}' for k, v in report['flagged'].items())})")
    return issues, report


def step_select(cfg: LoopConfig, pool: pl.DataFrame, pool_X: np.ndarray, lab_X: np.ndarray,
                pool_probs: np.ndarray | None, suspects: pl.DataFrame, rep: Reporter) -> pl.DataFrame:
    """Choose the next batch: pool rows to label and, with ``review_share``, suspected label
    errors to review (``suspects``: ``id`` and ``score``, worst first)."""
    rep.start("select", None)
    strategy = STRATEGIES.create(cfg.strategy.name, cfg.strategy.params(), field="strategy")
    ids = pool[cfg.columns.id].cast(pl.String).to_numpy()
    sel = strategy.select(Pool(ids, pool_X, lab_X, pool_probs, cfg.seed,
                               suspects=suspects["id"].to_numpy().astype(str),
                               suspect_scores=1.0 - suspects["score"].to_numpy()), cfg.budget)
    rep.finish(f"select: {len(sel)} of {len(pool)} with {cfg.strategy.name}")
    return sel


def make_tasks(cfg: LoopConfig, n: int, sel: pl.DataFrame, valid: pl.DataFrame,
               suggestions: dict[str, tuple[str, float]]) -> pl.DataFrame:
    """Tasks for the selected rows, in priority order, carrying every row column.

    Label tasks (pool rows) carry the model's suggestion; review tasks (labeled rows whose
    label is suspect) carry the given label and the suggested one. ``suggestions`` maps an
    id to ``(label, score)``.
    """
    c = cfg.columns
    rows = valid.with_columns(pl.col(c.id).cast(pl.String).alias("_sid"))
    rows = sel.join(rows, left_on="id", right_on="_sid", how="left", maintain_order="left")
    kinds = rows["kind"].to_list() if "kind" in rows.columns else ["label"] * len(rows)
    given = rows[c.label].cast(pl.String).to_list()
    pred = [suggestions.get(i, (None, None)) for i in rows["id"]]
    base = pl.DataFrame({
        "task_id": [task_id(k, i) for k, i in zip(kinds, rows["id"])],
        "id": rows["id"], "text": rows[c.text].cast(pl.String), "kind": kinds,
        "round": [n] * len(rows), "strategy": [cfg.strategy.name] * len(rows),
        "reason": rows["reason"], "score": rows["score"], "rank": rows["rank"],
        "prediction": [p[0] for p in pred], "prediction_score": [p[1] for p in pred],
        "given_label": [g if k == "review" else None for k, g in zip(kinds, given)],
    }, schema=TASK_COLUMNS)
    extra = [col for col in valid.columns if col not in (c.id, c.text, c.label) and col not in base.columns]
    return pl.concat([base, rows.select(extra)], how="horizontal")


LABEL_TABLE: dict[str, Any] = {"id": pl.String, "label": pl.String, "kind": pl.String,
                               "given_label": pl.String, "status": pl.String,
                               "agreement": pl.Float64, "round": pl.Int64}


def round_tables(cfg: LoopConfig, name: str, columns: dict[str, Any]) -> pl.DataFrame:
    """One table of every finished round's ``name`` table (``columns`` only)."""
    files = sorted((cfg.root / "rounds" / cfg.name).glob(f"round-*/{name}.parquet"))
    frames = [pl.read_parquet(f, columns=list(columns)) for f in files]
    return pl.concat([pl.DataFrame(schema=columns), *frames], how="vertical_relaxed")


def merge_labels(cfg: LoopConfig, annotations: pl.DataFrame, tasks: pl.DataFrame,
                 classes: list[str], n: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The loop's label table after this round: one reconciled label per id.

    ``annotations`` and ``tasks`` hold every round's (this one included). Several answers
    on a task are reconciled (majority; cleanlab's multi-annotator consensus with enough
    overlap); a review task's answer is the verdict. ``round`` is when an id's label was
    last set or changed.
    """
    rec = reconcile(annotations, classes, tasks=tasks)
    given = tasks.select("task_id", "given_label").unique("task_id", keep="last")
    new = (rec.labels.filter(pl.col("label").is_not_null())
           .join(given, on="task_id", how="left")
           .unique("id", keep="last", maintain_order=True))
    lp = cfg.root / labels_path(cfg)
    old = pl.read_parquet(lp) if lp.exists() else pl.DataFrame(schema=LABEL_TABLE)
    old = old.select(pl.col("id"), pl.col("label").alias("_old"), pl.col("round").alias("_round"))
    new = new.join(old, on="id", how="left").with_columns(
        pl.when(pl.col("_old") == pl.col("label")).then(pl.col("_round"))
        .otherwise(pl.lit(n)).cast(pl.Int64).alias("round"))
    return new.select(list(LABEL_TABLE)), rec.summary()


def review_verdicts(cfg: LoopConfig) -> pl.DataFrame | None:
    """Reviewers' verdicts on earlier label-issue flags (``id``, ``given_label``, ``label``)."""
    lp = cfg.root / labels_path(cfg)
    if not lp.exists():
        return None
    labels = pl.read_parquet(lp)
    if "given_label" not in labels.columns:
        return None
    reviews = labels.filter((pl.col("kind") == "review") & pl.col("given_label").is_not_null())
    return reviews.select("id", "given_label", "label") if len(reviews) else None


def codes(labels: pl.Series, classes: list[str]) -> np.ndarray:
    """Integer codes of ``labels`` in ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[str(v)] for v in labels.to_list()], dtype=np.int64)


def eval_accuracy(cfg: LoopConfig, X: np.ndarray, y: np.ndarray, classes: list[str],
                  rep: Reporter) -> float | None:
    """Accuracy on the loop's held-out set of a model fitted on ``(X, y)``."""
    if cfg.eval_dataset is None:
        return None
    c = cfg.columns
    ev = read_table(cfg.path(cfg.eval_dataset))
    require_columns(ev, {"id": c.id, "text": c.text, "label": c.label}, str(cfg.eval_dataset))
    ev = ev.filter(pl.col(c.text).is_not_null() & (pl.col(c.text).str.strip_chars() != "")
                   & pl.col(c.label).cast(pl.String).is_in(classes))
    ev_X = step_embed(cfg, ev, rep, what="embed held-out")
    return accuracy(X, y, ev_X, codes(ev[c.label], classes), len(classes), cfg.seed, cfg.model)


def previous_round(cfg: LoopConfig, store: VersionStore) -> tuple[int, dict[str, Any]]:
    """The last committed round of this loop and the state it left for the next one."""
    if isinstance(store, LocalStore):
        n, manifest = last_round(cfg)
        return n, manifest.get("state", {})
    rounds = [r for r in store.history() if r.metadata.get("curation.loop", cfg.name) == cfg.name]
    if not rounds:
        return 0, {}
    last = max(rounds, key=lambda r: r.round)
    return last.round, read_manifest(store, last.ref).state


def run_round(cfg: LoopConfig, rep: Reporter | None = None) -> RoundResult:
    """Run one round of the loop and version it, all or nothing.

    Parameters
    ----------
    cfg : LoopConfig
        The loop (see ``loops/*.yaml``).
    rep : Reporter, optional
        Where progress goes (the CLI passes a Rich one).

    Returns
    -------
    RoundResult
        The round number, its version ref, its metrics and its tables
        (``valid``, ``quarantine``, ``issues``, ``selection``, ``tasks``, ``annotations``,
        ``labels``).

    Notes
    -----
    A round that fails (or is killed) before its commit leaves the previous round in
    place; the next ``run_round`` discards the half-written one and starts it again.
    """
    rep = rep or LogReporter()
    if cfg.engine == "ray":
        from curation.engine import ensure_ray

        ensure_ray(cfg.ray_address)
    store = make_store(cfg)
    prev_n, state = previous_round(cfg, store)
    store.begin(prev_n + 1)
    try:
        return _round(cfg, store, prev_n + 1, state, rep)
    except BaseException:
        abort = getattr(store, "abort", None)
        if abort is not None:
            abort()
        raise


def step_annotate(cfg: LoopConfig, tasks: pl.DataFrame, classes: list[str],
                  cursor: str | None, rep: Reporter) -> tuple[int, Any]:
    """Push the tasks (idempotent), pull what changed since ``cursor``."""
    rep.start("annotate", len(tasks))
    profile = load_connector(cfg.path(cfg.connector))
    annotator = ANNOTATORS.create(profile.name, profile.params(), field="connector")
    project = Project(cfg.name, classes, cfg.root / "annotations" / cfg.name)
    pushed = annotator.push(project, tasks)
    pulled = annotator.pull(project, since=cursor)
    rep.finish(f"annotate: {pushed} tasks pushed, {len(pulled.annotations)} annotations pulled")
    return pushed, pulled


def step_version(cfg: LoopConfig, store: VersionStore, n: int, tables: dict[str, pl.DataFrame],
                 labels: pl.DataFrame, manifest: Manifest, rep: Reporter) -> str:
    """Write the round's tables and manifest through the store and commit them as one."""
    rep.start("version", None)
    rd = round_dir(cfg, n)
    for name, table in tables.items():
        store.write(f"{rd}/{name}.parquet", table)
    store.write(labels_path(cfg), labels)
    write_manifest(store, manifest)
    ref = store.commit(f"curation: {cfg.name} round {n}", manifest.commit_metadata())
    rep.finish(f"version: {ref}")
    return ref


def suggestions(pool: pl.DataFrame, pool_probs: np.ndarray | None, issues: pl.DataFrame,
                id_col: str, classes: list[str]) -> dict[str, tuple[str, float]]:
    """The model's suggested label and its score: for pool rows from the model's
    probabilities, for suspected label errors from the label-issue detector."""
    out: dict[str, tuple[str, float]] = {}
    if pool_probs is not None and len(pool):
        best = pool_probs.argmax(1)
        out.update(zip(pool[id_col].cast(pl.String).to_list(),
                       [(classes[b], float(pool_probs[i, b])) for i, b in enumerate(best)]))
    lab = issues.filter(pl.col("issue") == "label")
    out.update(zip(lab["id"].to_list(), zip(lab["suggested_label"].to_list(), lab["score"].to_list())))
    return out


TASK_STATE = {"task_id": pl.String, "id": pl.String, "kind": pl.String, "given_label": pl.String,
              "prediction": pl.String, "prediction_score": pl.Float64}


def _round(cfg: LoopConfig, store: VersionStore, n: int, state: dict[str, Any],
           rep: Reporter) -> RoundResult:
    c = cfg.columns
    schema = load_schema(cfg.path(cfg.schema_path))
    v = step_validate(cfg, load_data(cfg), rep)
    X = step_embed(cfg, v.valid, rep)
    past_tasks = round_tables(cfg, "tasks", TASK_STATE)
    past_ann = round_tables(cfg, "annotations", ANNOTATION_COLUMNS)
    ids = v.valid[c.id].cast(pl.String)
    is_lab = v.valid[c.label].is_not_null().to_numpy()
    pending = past_tasks.filter(pl.col("kind") == "label")["id"].implode()
    in_pool = ~is_lab & ~ids.is_in(pending).to_numpy()  # not queued for annotators already
    labeled, pool = v.valid.filter(is_lab), v.valid.filter(in_pool)
    lab_X, pool_X = X[is_lab], X[in_pool]
    classes = label_choices(cfg, schema, labeled)
    y = codes(labeled[c.label], classes)
    issues, issue_report = step_issues(cfg, v.valid, X, classes, review_verdicts(cfg), rep)
    trainable = len(np.unique(y)) >= 2
    pool_probs = (fit_predict_proba(lab_X, y, pool_X, len(classes), cfg.seed, cfg.model)
                  if trainable and len(pool) else None)
    reviewed = past_tasks.filter(pl.col("kind") == "review")["id"].implode()
    suspects = issues.filter((pl.col("issue") == "label") & ~pl.col("id").is_in(reviewed))
    sel = step_select(cfg, pool, pool_X, lab_X, pool_probs, suspects, rep)
    tasks = make_tasks(cfg, n, sel, v.valid, suggestions(pool, pool_probs, issues, c.id, classes))
    pushed, pulled = step_annotate(cfg, tasks, classes, state.get("cursor"), rep)
    labels, agreement = merge_labels(
        cfg, pl.concat([past_ann, pulled.annotations]),
        pl.concat([past_tasks, tasks.select(list(TASK_STATE))]), classes, n)

    final = ids.to_frame("id").with_columns(v.valid[c.label].cast(pl.String).alias("given"))
    final = final.join(labels.select("id", "label"), on="id", how="left", maintain_order="left")
    final_label = final.select(pl.coalesce("label", "given"))["label"]
    train = final_label.is_in(classes).fill_null(False).to_numpy()
    train_y = codes(final_label.filter(pl.Series(train, dtype=pl.Boolean)), classes)
    acc = eval_accuracy(cfg, X[train], train_y, classes, rep)

    metrics: dict[str, Any] = {
        "round": n, "rows": v.report["rows"], "valid": v.report["valid"],
        "quarantined": v.report["quarantined"],
        "label_issues": int((issues["issue"] == "label").sum()), "issues": len(issues),
        "selected": len(sel), "reviews": int((tasks["kind"] == "review").sum()),
        "annotations": len(pulled.annotations), "labels": int(train.sum()), "accuracy": acc,
    }
    if "precision" in issue_report:
        metrics["flag_precision"] = issue_report["precision"].get("precision")
    tables = {"quarantine": v.quarantine, "issues": issues, "selection": sel, "tasks": tasks,
              "annotations": pulled.annotations}
    inputs = {"dataset": cfg.path(cfg.dataset)}
    if cfg.eval_dataset is not None:
        inputs["eval"] = cfg.path(cfg.eval_dataset)
    manifest = build_manifest(
        round=n, loop=cfg.name, inputs=inputs, params=cfg.model_dump(mode="json", by_alias=True),
        strategy=cfg.strategy.name, strategy_params=cfg.strategy.params(), selected=sel,
        annotations=pulled.annotations, label_issues=issues,
        metrics={k: float(x) for k, x in metrics.items() if isinstance(x, (int, float))},
        validation=v.report, outputs={k: f"{round_dir(cfg, n)}/{k}.parquet" for k in tables},
        state={"cursor": pulled.cursor, "tasks_pushed": pushed, "issues": issue_report,
               "reconciliation": agreement},
    )
    ref = step_version(cfg, store, n, tables, labels, manifest, rep)
    return RoundResult(n, ref, metrics, {"valid": v.valid, **tables, "labels": labels})
