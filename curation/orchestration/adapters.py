"""The steps as a loop runs them: each takes the loop config, hands its section to the
step function, and reports progress. ``curation run``, the DVC stages, the sweep, the
simulation and the webhook queue all call these, and nothing else, to run a step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from curation.config import Columns, LoopConfig
from curation.connectors.base import ANNOTATORS, Annotator, Project, Pulled, VersionStore
from curation.errors import ConfigError
from curation.issues.find import find_issues
from curation.issues.leaks import LEAK_COLUMNS, find_leaks, leaked_rows
from curation.issues.memory import IssueMemory
from curation.load import load_connector
from curation.orchestration.state import codes, labels_path, round_dir
from curation.orchestration.state import rel as st_rel
from curation.steps.embed import embed_with_report
from curation.steps.model import accuracy, correct, fit_predict_proba, unlabeled_rows
from curation.steps.validate import ValidationResult, load_schema, validate
from curation.strategies.select import select
from curation.support.data import read_table, require_columns
from curation.support.faults import checkpoint
from curation.support.manifest import Manifest, write_manifest
from curation.support.progress import Reporter

log = logging.getLogger(__name__)

#: A round's ``leaks`` table: the pairs of :func:`~curation.issues.leaks.find_leaks`, both
#: texts and labels, and whether the dataset row is a training row of the round's model.
LEAK_TABLE: dict[str, Any] = {
    **LEAK_COLUMNS,
    "eval_text": pl.String,
    "eval_label": pl.String,
    "pool_text": pl.String,
    "pool_label": pl.String,
    "in_train": pl.Boolean,
}


def step_validate(cfg: LoopConfig, df: pl.DataFrame, rep: Reporter) -> ValidationResult:
    """Validate against the loop's contract, applying its gate."""
    rep.start("validate", len(df))
    res = validate(
        df,
        load_schema(cfg.path(cfg.schema_path)),
        cfg.validate_,
        cfg.columns,
        source=str(cfg.dataset),
        engine="auto" if cfg.engine == "ray" else "local",
    )
    rep.finish(f"validate: {res.report['valid']} valid, {res.report['quarantined']} quarantined")
    checkpoint("after-validate")
    return res


def step_embed(cfg: LoopConfig, df: pl.DataFrame, rep: Reporter, what: str = "embed") -> np.ndarray:
    """Embed the text column of ``df`` (cached); the report says how many texts were cut."""
    rep.start(what, len(df))
    res = embed_with_report(
        df[cfg.columns.text].to_list(),
        cfg.embed,
        ids=df[cfg.columns.id].to_list(),
        root=cfg.root,
        engine=cfg.engine,
        progress=rep.advance,
    )
    r = res.report
    rep.finish(
        f"{what}: {len(df)} texts, {r['embedded']} embedded, {r['cached']} from the cache, "
        f"{r['truncated']} truncated at {cfg.embed.max_seq_length} tokens"
    )
    checkpoint(f"after-{what.replace(' ', '-')}")
    return res.vectors


def step_issues(
    cfg: LoopConfig,
    valid: pl.DataFrame,
    X: np.ndarray,
    classes: list[str],
    verdicts: pl.DataFrame | None,
    rep: Reporter,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every configured detector over the valid rows (unlabeled rows are neighbours, never
    label errors); one table, worst first within each issue, and the step's report."""
    found = step_issues_with_probs(cfg, valid, X, classes, verdicts, rep)
    return found.issues, found.report


@dataclass
class IssueStep:
    """What the issue step found: the flags, the JSON-ready report, and what stays out of it:
    the combined out-of-sample class probabilities (one row per valid row; all zeros without a
    model), the kNN graph (``None`` when no detector needed one) and every labeled row by
    label quality (:func:`quality_table`). The round report's confusion of given and
    suggested labels reads the probabilities, ``curation explain`` both."""

    issues: pl.DataFrame
    report: dict[str, Any]
    probs: np.ndarray
    knn: csr_matrix | None
    quality: pl.DataFrame


def step_issues_with_probs(
    cfg: LoopConfig,
    valid: pl.DataFrame,
    X: np.ndarray,
    classes: list[str],
    verdicts: pl.DataFrame | None,
    rep: Reporter,
) -> IssueStep:
    """:func:`step_issues`, with what stays out of its JSON report (:class:`IssueStep`)."""
    rep.start("issues", None)
    c = cfg.columns
    kept = memory_path(cfg)
    issues, report = find_issues(
        valid[c.text].to_list(),
        valid[c.id].cast(pl.String).to_list(),
        valid[c.label].cast(pl.String).to_list(),
        classes,
        X,
        cfg.issues,
        verdicts=verdicts,
        memory=IssueMemory.load(kept) if cfg.issues.reuse_above is not None else None,
    )
    memory = report.pop("memory")
    if memory is not None:
        memory.save(kept)
    probs, knn = report.pop("pred_probs"), report.pop("knn")
    report.pop("evidence")  # each view's probabilities: its figures are in report["members"]
    quality = quality_table(valid[c.id], report.pop("label_quality"))
    reused = report["reused"]
    rep.finish(
        f"issues: {len(issues)} flagged ({', '.join(f'{k} {v}' for k, v in report['flagged'].items())})"
        + (f"; the last round's work reused, {reused['new']} of {reused['rows']} rows new" if reused else "")
    )
    checkpoint("after-issues")
    return IssueStep(issues, report, probs, knn, quality)


def memory_path(cfg: LoopConfig) -> Path:
    """Where the loop's issue step keeps its work for the next round (a cache: deleting it
    only makes the next round run in full; see :mod:`curation.issues.memory`)."""
    return cfg.root / ".curation" / "issues" / f"{cfg.name}.pkl"


def quality_table(ids: pl.Series, quality: np.ndarray) -> pl.DataFrame:
    """Every labeled row by label quality, lowest (likeliest error) first, with its ``rank``.

    Examples
    --------
    >>> quality_table(pl.Series("id", ["a", "b", "c"]), np.array([0.9, np.nan, 0.2])).rows()
    [('c', 0.2, 1), ('a', 0.9, 2)]
    """
    df = pl.DataFrame({ids.name: ids, "label_quality": quality}).filter(pl.col("label_quality").is_not_nan())
    return (
        df.sort("label_quality", maintain_order=True)
        .with_row_index("rank", offset=1)
        .select(ids.name, "label_quality", pl.col("rank").cast(pl.Int64))
    )


def pool_probs(
    cfg: LoopConfig, lab_X: np.ndarray, y: np.ndarray, pool_X: np.ndarray, n_classes: int
) -> np.ndarray | None:
    """The round model's class probabilities for the pool rows (``None`` without two classes
    labeled, or without a pool): what the strategy ranks by. A semi-supervised model
    (``curation.steps.model.SEMI_SUPERVISED``) also learns from the pool rows."""
    if len(np.unique(y)) < 2 or len(pool_X) == 0:
        return None
    return fit_predict_proba(lab_X, y, pool_X, n_classes, cfg.seed, cfg.model, unlabeled=pool_X)


def verdict_changes(verdicts: pl.DataFrame) -> int:
    """How many reviews changed the label (``given_label`` to another ``label``)."""
    return int((verdicts["given_label"].cast(pl.String) != verdicts["label"].cast(pl.String)).sum())


def step_select(
    cfg: LoopConfig,
    pool: pl.DataFrame,
    pool_X: np.ndarray,
    lab_X: np.ndarray,
    pool_probs: np.ndarray | None,
    suspects: pl.DataFrame,
    rep: Reporter,
    verdicts: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Choose the next batch: pool rows to label and, as the strategy's ``review`` decides,
    suspected label errors to review (``suspects``: ``id`` and ``score``, worst first;
    ``verdicts``: earlier reviews, ``given_label`` and ``label``, whose share of changed
    labels ``review: decision`` reads as the flags' precision)."""
    rep.start("select", None)
    sel = select(
        pool_X,
        cfg.budget,
        ids=pool[cfg.columns.id].cast(pl.String).to_list(),
        labeled=lab_X,
        probs=pool_probs,
        strategy=cfg.strategy,
        seed=cfg.seed,
        suspects=suspects["id"].to_list(),
        suspect_scores=1.0 - suspects["score"].to_numpy(),
        verdicts=(0, 0) if verdicts is None else (len(verdicts), verdict_changes(verdicts)),
    )
    rep.finish(f"select: {len(sel)} of {len(pool)} with {cfg.strategy.name}")
    checkpoint("after-select")
    return sel


def annotator_for(cfg: LoopConfig, classes: list[str]) -> tuple[Annotator, Project]:
    """The loop's annotation connector (from its profile) and the project it serves."""
    profile = load_connector(cfg.path(cfg.connector))
    annotator = ANNOTATORS.create(profile.name, profile.params(), source=str(cfg.connector))
    return annotator, Project(cfg.name, classes, cfg.root / "annotations" / cfg.name)


def step_annotate(
    cfg: LoopConfig, tasks: pl.DataFrame, classes: list[str], cursor: str | None, rep: Reporter
) -> tuple[int, Pulled]:
    """Push the tasks (idempotent: a rerun after a crash queues nothing twice), pull what changed
    since ``cursor``; return how many tasks were new and what was pulled."""
    rep.start("annotate", len(tasks))
    annotator, project = annotator_for(cfg, classes)
    pushed = annotator.push(project, tasks)
    checkpoint("after-push")
    pulled = annotator.pull(project, since=cursor)
    again = f" ({len(tasks) - pushed} already queued)" if pushed < len(tasks) else ""
    for why in pulled.skipped:
        log.warning("annotate: an answer was not used: %s", why)
    unused = (
        f"; {len(pulled.skipped)} answers not used (see the log and the manifest)" if pulled.skipped else ""
    )
    rep.finish(
        f"annotate: {len(tasks)} tasks in the queue{again}, {len(pulled.annotations)} annotations pulled{unused}"
    )
    checkpoint("after-annotate")
    return pushed, pulled


def step_version(
    cfg: LoopConfig,
    store: VersionStore,
    n: int,
    tables: dict[str, pl.DataFrame],
    labels: pl.DataFrame,
    manifest: Manifest,
    rep: Reporter,
    files: dict[str, bytes] | None = None,
) -> str:
    """Write the round's tables, ``files`` (path to bytes, e.g. the report) and manifest
    through the store and commit them as one."""
    rep.start("version", None)
    checkpoint("before-version")
    rd = round_dir(cfg, n)
    for name, table in tables.items():
        store.write(f"{rd}/{name}.parquet", table)
    for path, data in (files or {}).items():
        store.write_bytes(path, data)
    store.write(labels_path(cfg), labels)
    store.include(config_paths(cfg))
    write_manifest(store, manifest)
    ref = store.commit(f"curation: {cfg.name} round {n}", manifest.commit_metadata())
    rep.finish(f"version: {ref}")
    return ref


def config_paths(cfg: LoopConfig) -> list[str]:
    """What a round ran with, versioned with it: the loop file, its contract, its connector
    profile, and the project's ``dvc.yaml`` and ``params.yaml`` (those inside the project)."""
    inside = []
    for p in (
        cfg.source or cfg.root / "loops" / f"{cfg.name}.yaml",
        cfg.path(cfg.schema_path),
        cfg.path(cfg.connector),
        cfg.root / "dvc.yaml",
        cfg.root / "params.yaml",
    ):
        rel = st_rel(cfg, p)
        if not Path(rel).is_absolute() and (cfg.root / rel).is_file():
            inside.append(rel)
    return sorted(set(inside))


def held_out(cfg: LoopConfig, classes: list[str], rep: Reporter) -> tuple[pl.DataFrame, np.ndarray]:
    """The loop's ``eval_dataset`` rows with a text and a known label, and their vectors."""
    if cfg.eval_dataset is None:
        raise ConfigError(
            "the loop has no held-out set: set eval_dataset in the loop file", field="eval_dataset"
        )
    c = cfg.columns
    ev = read_table(cfg.path(cfg.eval_dataset))
    require_columns(ev, {"id": c.id, "text": c.text, "label": c.label}, str(cfg.eval_dataset))
    ev = ev.filter(
        pl.col(c.text).is_not_null()
        & (pl.col(c.text).str.strip_chars() != "")
        & pl.col(c.label).cast(pl.String).is_in(classes)
    )
    return ev, step_embed(cfg, ev, rep, what="embed held-out")


def eval_accuracy(
    cfg: LoopConfig,
    X: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    rep: Reporter,
    unlabeled: np.ndarray | None = None,
) -> float | None:
    """Accuracy on the loop's held-out set of a model fitted on ``(X, y)`` (and ``unlabeled``)."""
    if cfg.eval_dataset is None:
        return None
    ev, ev_X = held_out(cfg, classes, rep)
    ev_y = codes(ev[cfg.columns.label], classes)
    return accuracy(X, y, ev_X, ev_y, len(classes), cfg.seed, cfg.model, unlabeled)


def step_leaks(
    cfg: LoopConfig,
    ev: pl.DataFrame,
    ev_X: np.ndarray,
    valid: pl.DataFrame,
    X: np.ndarray,
    train: np.ndarray,
    rep: Reporter,
) -> pl.DataFrame:
    """Leaky splits: the held-out rows ``ev`` that nearly repeat a valid row of the dataset
    (:func:`~curation.issues.leaks.find_leaks` at ``issues.leak_threshold``), with both texts
    and ``in_train`` (the dataset row is among the rows the round's model learns from)."""
    rep.start("leaks", None)
    c = cfg.columns
    leaks = leak_pairs(ev, ev_X, valid, X, c, cfg.issues.leak_threshold)
    trained = valid[c.id].cast(pl.String).filter(pl.Series(train, dtype=pl.Boolean)).implode()
    leaks = leaks.with_columns(pl.col("pool_id").is_in(trained).alias("in_train"))
    rep.finish(
        f"leaks: {leaked_rows(leaks).len()} of {len(ev)} held-out rows nearly repeat a dataset row "
        f"({len(leaks)} pairs at cosine >= {cfg.issues.leak_threshold})"
    )
    return leaks


def leak_pairs(
    ev: pl.DataFrame, ev_X: np.ndarray, pool: pl.DataFrame, X: np.ndarray, c: Columns, threshold: float
) -> pl.DataFrame:
    """:func:`~curation.issues.leaks.find_leaks` between ``ev`` and ``pool`` (string ids),
    with ``eval_text``, ``eval_label``, ``pool_text`` and ``pool_label``."""
    e_ids, p_ids = ev[c.id].cast(pl.String), pool[c.id].cast(pl.String)
    leaks = find_leaks(ev_X, X, e_ids.to_list(), p_ids.to_list(), threshold)
    for side, ids, df in (("eval", e_ids, ev), ("pool", p_ids, pool)):
        rows = pl.DataFrame(
            {
                f"{side}_id": ids,
                f"{side}_text": df[c.text].cast(pl.String),
                f"{side}_label": df[c.label].cast(pl.String),
            }
        ).unique(f"{side}_id", keep="first")
        leaks = leaks.join(rows, on=f"{side}_id", how="left", maintain_order="left")
    return leaks


def step_evaluate(
    cfg: LoopConfig,
    valid: pl.DataFrame,
    X: np.ndarray,
    labels: pl.DataFrame,
    classes: list[str],
    rep: Reporter,
) -> tuple[int, dict[str, Any], pl.DataFrame]:
    """Rows with a final label (given, or from the annotators), the held-out figures of a
    model fitted on them (``accuracy``, ``accuracy_without_leaks``, ``leaked_rows``: the
    held-out rows that nearly repeat a dataset row, left out of the second accuracy; all
    ``None`` without an ``eval_dataset``) and the leaks (see :func:`step_leaks`)."""
    c = cfg.columns
    final = valid.select(
        pl.col(c.id).cast(pl.String).alias("id"), pl.col(c.label).cast(pl.String).alias("given")
    )
    final = final.join(labels.select("id", "label"), on="id", how="left", maintain_order="left")
    final_label = final.select(pl.coalesce("label", "given"))["label"]
    train = final_label.is_in(classes).fill_null(False).to_numpy()
    y = codes(final_label.filter(pl.Series(train, dtype=pl.Boolean)), classes)
    figures: dict[str, Any] = dict.fromkeys(("accuracy", "accuracy_without_leaks", "leaked_rows"))
    if cfg.eval_dataset is None:
        return int(train.sum()), figures, pl.DataFrame(schema=LEAK_TABLE)
    ev, ev_X = held_out(cfg, classes, rep)
    leaks = step_leaks(cfg, ev, ev_X, valid, X, train, rep)
    leaked = ev[c.id].cast(pl.String).is_in(leaked_rows(leaks).implode()).to_numpy()
    right = np.full(len(ev), np.nan)  # no training row: no accuracy
    if train.any():
        ev_y = codes(ev[c.label], classes)
        unlabeled = unlabeled_rows(cfg.model, X, ~train)
        right = correct(X[train], y, ev_X, ev_y, len(classes), cfg.seed, cfg.model, unlabeled)
    figures.update(
        accuracy=_mean(right),
        accuracy_without_leaks=_mean(right[~leaked]),
        leaked_rows=int(leaked.sum()),
    )
    return int(train.sum()), figures, leaks


def _mean(right: np.ndarray) -> float:
    return float(np.mean(right)) if len(right) else float("nan")
