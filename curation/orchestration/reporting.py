"""The round report's inputs, gathered from what a round holds, and the report step.

:func:`step_report` turns a round's tables (the quarantine, the issues, the selection and
its tasks, the label table), its embeddings and the issue step's out-of-sample
probabilities into a :class:`~curation.support.round_report.RoundReport`, renders it, and
hands back the page for the version step to write as ``rounds/LOOP/round-N/report.html``
(so it is versioned with the round). The learning curve reads the loop's committed rounds
through the store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from curation.config import LoopConfig
from curation.connectors.base import VersionStore
from curation.orchestration.history import history_rows
from curation.orchestration.state import round_dir
from curation.strategies.select import make_strategy
from curation.support.progress import Reporter
from curation.support.round_report import RoundReport, render_round_report

#: The embedding map shows at most this many rows (every selected and flagged one first).
MAP_POINTS = 3000


def quarantine_rows(quarantine: pl.DataFrame, cfg: LoopConfig) -> pl.DataFrame:
    """``id``, ``text``, ``label`` and ``reason`` of the quarantined rows."""
    c = cfg.columns
    return quarantine.select(
        pl.col(c.id).cast(pl.String).alias("id"),
        pl.col(c.text).cast(pl.String).alias("text"),
        pl.col(c.label).cast(pl.String).alias("label"),
        pl.col("curation_reason").alias("reason"),
    )


def verdict_rows(labels: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """The reviewers' verdicts on flags (the label table's review rows), newest round first.

    Examples
    --------
    >>> labels = pl.DataFrame({"id": ["1", "2", "3"], "label": ["b", "a", "a"],
    ...     "kind": ["review", "review", "label"], "given_label": ["a", "a", None], "round": [1, 2, 2]})
    >>> texts = pl.DataFrame({"id": ["1", "2", "3"], "text": ["x", "y", "z"]})
    >>> verdict_rows(labels, texts).select("id", "verdict").rows()
    [('2', 'rejected: label kept'), ('1', 'confirmed: relabeled b')]
    """
    reviews = labels.filter((pl.col("kind") == "review") & pl.col("given_label").is_not_null())
    verdict = (
        pl.when(pl.col("label") != pl.col("given_label"))
        .then(pl.format("confirmed: relabeled {}", pl.col("label")))
        .otherwise(pl.lit("rejected: label kept"))
    )
    return (
        reviews.join(texts, on="id", how="left")
        .sort(["round", "id"], descending=[True, False])
        .select(
            "id",
            "text",
            pl.col("given_label").alias("flagged_label"),
            pl.col("label").alias("reviewer_label"),
            verdict.alias("verdict"),
            "round",
        )
    )


def label_issue_rows(
    issues: pl.DataFrame, texts: pl.DataFrame, verdicts: pl.DataFrame, selection: pl.DataFrame
) -> pl.DataFrame:
    """The suspected label errors, worst first, with their texts and review status."""
    reviewing = selection.filter(pl.col("kind") == "review")["id"].implode()
    done = verdicts.select("id", pl.format("reviewed in round {}: {}", "round", "verdict").alias("done"))
    return (
        issues.filter(pl.col("issue") == "label")
        .join(texts, on="id", how="left", maintain_order="left")
        .join(done, on="id", how="left", maintain_order="left")
        .select(
            "rank",
            "id",
            "text",
            "given_label",
            "suggested_label",
            "score",
            pl.coalesce(
                "done",
                pl.when(pl.col("id").is_in(reviewing)).then(pl.lit("sent to review this round")),
                pl.lit("not reviewed"),
            ).alias("status"),
        )
    )


def other_issue_rows(issues: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """The other detectors' flags with their texts (a near-duplicate with its partner's)."""
    other = issues.filter(pl.col("issue") != "label").join(texts, on="id", how="left", maintain_order="left")
    extra = [c for c in other.columns if c not in ("id", "issue", "score", "rank", "text")]
    if "partner" in other.columns:
        partner = texts.rename({"id": "partner", "text": "partner_text"})
        other = other.join(partner, on="partner", how="left", maintain_order="left")
        extra.append("partner_text")
    keep = [c for c in extra if other[c].null_count() < len(other)] if len(other) else []
    return other.select("issue", "rank", "id", "text", "score", *keep)


def selection_rows(tasks: pl.DataFrame) -> pl.DataFrame:
    """The selection in priority order: kind, text, score, the suggested label and the reason."""
    return tasks.sort("rank").select(
        "rank",
        "id",
        "kind",
        "text",
        "score",
        pl.col("prediction").alias("suggested"),
        "given_label",
        "reason",
    )


def learning_curve(store: VersionStore, loop: str, n: int, metrics: dict[str, Any]) -> pl.DataFrame:
    """``round``, ``labels``, ``accuracy`` of the loop's committed rounds before ``n``, then round ``n``."""
    rounds = [r for r in store.history() if r.metadata.get("curation.loop", loop) == loop and r.round < n]
    rows = [
        {
            "round": int(str(r["round"])),
            "labels": r.get("metric:labels"),
            "accuracy": r.get("metric:accuracy"),
        }
        for r in history_rows(sorted(rounds, key=lambda r: r.round))
    ]
    rows.append({"round": n, "labels": metrics["labels"], "accuracy": metrics["accuracy"]})
    schema = {"round": pl.Int64, "labels": pl.Int64, "accuracy": pl.Float64}
    return pl.DataFrame(rows, schema=schema, strict=False)


def map_groups(ids: pl.Series, labeled: np.ndarray, selected: pl.Series, flagged: pl.Series) -> np.ndarray:
    """Each row's group on the map: ``selected``, else ``flagged``, else ``labeled`` or ``pool``.

    Examples
    --------
    >>> ids = pl.Series(["a", "b", "c", "d"])
    >>> map_groups(ids, np.array([1, 1, 0, 0], bool), pl.Series(["c"]), pl.Series(["a"])).tolist()
    ['flagged', 'labeled', 'selected', 'pool']
    """
    group = np.where(labeled, "labeled", "pool").astype(object)
    group[ids.is_in(flagged.implode()).to_numpy()] = "flagged"
    group[ids.is_in(selected.implode()).to_numpy()] = "selected"
    return group


def embedding_map(
    X: np.ndarray, group: np.ndarray, seed: int = 0, max_points: int = MAP_POINTS
) -> pl.DataFrame:
    """A 2-D PCA projection of at most ``max_points`` rows: every selected and flagged row
    (up to the cap), then a seeded sample of the others.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    >>> g = np.array(["pool"] * 45 + ["selected"] * 5, dtype=object)
    >>> m = embedding_map(X, g, max_points=20)
    >>> len(m), m.filter(pl.col("group") == "selected").height
    (20, 5)
    """
    rng = np.random.default_rng(seed)
    marked = np.isin(group, ["selected", "flagged"])
    first, rest = np.flatnonzero(marked), np.flatnonzero(~marked)
    if len(first) > max_points:
        first = rng.choice(first, max_points, replace=False)
    if len(rest) > max_points - len(first):
        rest = rng.choice(rest, max_points - len(first), replace=False)
    rows = np.sort(np.r_[first, rest]).astype(np.int64)
    xy = np.zeros((len(rows), 2))
    k = min(2, len(rows), X.shape[1] if X.ndim == 2 else 0)
    if k:
        from sklearn.decomposition import PCA

        pca = PCA(k, svd_solver="randomized", random_state=seed)  # a few products, not a full SVD
        xy[:, :k] = pca.fit_transform(X[rows].astype(np.float64))
    return pl.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "group": group[rows].astype(str)})


def report_inputs(
    cfg: LoopConfig,
    store: VersionStore,
    n: int,
    tables: dict[str, pl.DataFrame],
    X: np.ndarray,
    pred_probs: np.ndarray,
    classes: list[str],
    metrics: dict[str, Any],
) -> RoundReport:
    """Round ``n``'s report, from its tables (``valid``, ``quarantine``, ``issues``,
    ``selection``, ``tasks``, ``labels``, ``leaks``), embeddings ``X`` of the valid rows, and the issue
    step's probabilities ``pred_probs`` (same rows)."""
    c = cfg.columns
    valid, issues, sel = tables["valid"], tables["issues"], tables["selection"]
    ids = valid[c.id].cast(pl.String)
    texts = pl.DataFrame({"id": ids, "text": valid[c.text].cast(pl.String)})
    verdicts = verdict_rows(tables["labels"], texts)
    labeled = valid[c.label].is_not_null().to_numpy()
    flagged = issues.filter(pl.col("issue") == "label")["id"]
    lab_probs = pred_probs[labeled]
    has_model = len(lab_probs) > 0 and bool((lab_probs.sum(axis=1) > 0).all())
    return RoundReport(
        loop=cfg.name,
        round=n,
        strategy=cfg.strategy.name,
        dataset=str(cfg.dataset),
        metrics=metrics,
        quarantine=quarantine_rows(tables["quarantine"], cfg),
        label_issues=label_issue_rows(issues, texts, verdicts, sel),
        verdicts=verdicts,
        other_issues=other_issue_rows(issues, texts),
        selection=selection_rows(tables["tasks"]),
        curve=learning_curve(store, cfg.name, n, metrics),
        points=embedding_map(X, map_groups(ids, labeled, sel["id"], flagged), cfg.seed),
        classes=classes,
        given=valid.filter(pl.Series(labeled))[c.label].cast(pl.String).to_list(),
        suggested=[classes[i] for i in lab_probs.argmax(axis=1)] if has_model else None,
        review=make_strategy(cfg.strategy).review_mode,
        leaks=tables.get("leaks", pl.DataFrame()),
        leak_threshold=cfg.issues.leak_threshold if cfg.eval_dataset is not None else None,
    )


def step_report(
    cfg: LoopConfig,
    store: VersionStore,
    n: int,
    tables: dict[str, pl.DataFrame],
    X: np.ndarray,
    pred_probs: np.ndarray,
    classes: list[str],
    metrics: dict[str, Any],
    rep: Reporter,
) -> tuple[str, bytes]:
    """Render round ``n``'s report (see :func:`report_inputs`); return its path in the store,
    ``rounds/LOOP/round-N/report.html``, and the page, for the version step to write."""
    rep.start("report", None)
    page = render_round_report(report_inputs(cfg, store, n, tables, X, pred_probs, classes, metrics))
    path = f"{round_dir(cfg, n)}/report.html"
    rep.finish(f"report: {path}")
    return path, page.encode("utf-8")
