"""One round of a loop, wired: validate -> embed -> find issues -> select -> annotate -> version.

The steps live in :mod:`curation.orchestration.adapters`, the state carried between rounds
in :mod:`curation.orchestration.state`; this module only wires them, all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from curation.config import LoopConfig
from curation.connectors.base import VersionStore
from curation.orchestration import adapters as step
from curation.orchestration import state as st
from curation.orchestration.explain import row_evidence
from curation.orchestration.reporting import step_report
from curation.orchestration.schedule import run_lock
from curation.orchestration.state import RoundState
from curation.steps.validate import load_schema
from curation.support.display import result_html
from curation.support.progress import LogReporter, Reporter


@dataclass
class RoundResult:
    """What a round did: its number, its version ref, its metrics, its tables and where its
    report is (relative to the project root)."""

    round: int
    ref: str
    metrics: dict[str, Any]
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    report: str | None = None

    def _repr_html_(self) -> str:
        return result_html(f"round {self.round} ({self.ref})", self.metrics, self.tables)


def run_round(
    cfg: LoopConfig, rep: Reporter | None = None, *, push: bool = True, dry_run: bool = False
) -> RoundResult:
    """Run one round of the loop and version it, all or nothing.

    Parameters
    ----------
    cfg : LoopConfig
        The loop (see ``loops/*.yaml`` and :func:`curation.config.load_loop`).
    rep : Reporter, optional
        Where progress goes (the CLI passes a Rich one).
    push : bool
        Queue the selection for annotators (``False``: pull answers and version the round, but
        queue nothing; the selection is kept for audit, no task becomes pending).
    dry_run : bool
        Stop after the selection: show what would be chosen; nothing is pushed, pulled,
        written or committed (``RoundResult.ref`` is ``"dry run"``).

    Returns
    -------
    RoundResult
        The round number, its version ref, its metrics (``accuracy`` on ``eval_dataset``,
        ``accuracy_without_leaks``, ``leaked_rows``, ...) and its tables (``valid``,
        ``quarantine``, ``issues``, ``selection``, ``tasks``, ``annotations``, ``leaks``,
        ``evidence``, ``labels``).

    Raises
    ------
    BusyError
        Another run of the same loop holds its run lock.

    Notes
    -----
    A round that fails (or is killed) before its commit leaves the previous round in
    place; the next ``run_round`` discards the half-written one and starts it again.
    """
    rep = rep or LogReporter()
    step.annotator_for(cfg, [])[0].check()  # a missing token fails before any compute
    with run_lock(cfg.root / ".curation" / "locks" / f"{cfg.name}.lock"):
        if cfg.engine == "ray" and cfg.ray_address:  # else a local Ray starts when a step needs it
            from curation.support.engine import ensure_ray

            ensure_ray(cfg.ray_address)
        store = st.store_for(cfg)
        if dry_run:
            return _round(cfg, store, st.load_state(cfg, store), rep, push=False, dry_run=True)
        store.recover()  # what a killed run committed is finished before its state is read
        past = st.load_state(cfg, store)
        store.begin(past.round + 1)
        try:
            return _round(cfg, store, past, rep, push=push)
        except BaseException:
            store.abort()
            raise


def _round(
    cfg: LoopConfig,
    store: VersionStore,
    past: RoundState,
    rep: Reporter,
    *,
    push: bool = True,
    dry_run: bool = False,
) -> RoundResult:
    c, n = cfg.columns, past.round + 1
    v = step.step_validate(cfg, st.load_data(cfg, past.labels), rep)
    X = step.step_embed(cfg, v.valid, rep)
    ids = v.valid[c.id].cast(pl.String)
    is_lab = v.valid[c.label].is_not_null().to_numpy()
    in_pool = ~is_lab & ~ids.is_in(past.pending().implode()).to_numpy()  # not queued already
    labeled, pool = v.valid.filter(is_lab), v.valid.filter(in_pool)
    classes = st.label_choices(cfg, load_schema(cfg.path(cfg.schema_path)), labeled)
    y = st.codes(labeled[c.label], classes)
    verdicts = st.review_verdicts(past.labels)
    found = step.step_issues_with_probs(cfg, v.valid, X, classes, verdicts, rep)
    issues, issue_report, oos, knn = found.issues, found.report, found.probs, found.knn
    pool_probs = step.pool_probs(cfg, X[is_lab], y, X[in_pool], len(classes))
    suspects = issues.filter((pl.col("issue") == "label") & ~pl.col("id").is_in(past.reviewed().implode()))
    sel = step.step_select(cfg, pool, X[in_pool], X[is_lab], pool_probs, suspects, rep, verdicts)
    tasks = st.make_tasks(cfg, n, sel, v.valid, st.suggestions(pool, pool_probs, issues, c.id, classes))
    if dry_run:
        return RoundResult(
            n, "dry run", {"round": n, "selected": len(sel)}, {"selection": sel, "tasks": tasks}
        )
    tasks = tasks if push else tasks.clear()  # --no-push: nothing queued, so nothing pending
    pushed, pulled = step.step_annotate(cfg, tasks, classes, past.state.get("cursor"), rep)
    labels, agreement = st.merge_labels(
        past.labels,
        pl.concat([past.annotations, pulled.annotations], how="vertical_relaxed"),
        pl.concat([past.tasks, tasks.select(list(st.TASK_STATE))], how="vertical_relaxed"),
        classes,
        n,
    )
    train, evaluation, leaks = step.step_evaluate(cfg, v.valid, X, labels, classes, rep)
    tables = {"quarantine": v.quarantine, "issues": issues, "selection": sel, "tasks": tasks}
    tables.update(annotations=pulled.annotations, leaks=leaks, label_quality=found.quality)
    tables["evidence"] = row_evidence(ids, v.valid[c.label], in_pool, classes, oos, knn, pool_probs)
    metrics = st.round_metrics(n, v.report, tables, train, evaluation, issue_report)
    state: dict[str, Any] = {"cursor": pulled.cursor, "tasks_pushed": len(tasks), "tasks_new": pushed}
    state.update(issues=issue_report, reconciliation=agreement, answers_not_used=pulled.skipped)
    manifest = st.round_manifest(cfg, n, metrics, tables, v.report, state)
    out = {"valid": v.valid, **tables, "labels": labels}
    page, html = step_report(cfg, store, n, out, X, oos, classes, metrics, rep)
    manifest.outputs["report"] = page
    ref = step.step_version(cfg, store, n, tables, labels, manifest, rep, files={page: html})
    return RoundResult(n, ref, metrics, out, page)
