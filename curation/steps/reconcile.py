"""Reconcile several annotations of one task into one label, and report disagreement.

Per task: the newest answer of each annotator counts; skipped and cancelled answers count
as no vote. The majority label wins; a tie is reported (and left without a label unless
cleanlab settles it). With enough overlap (``min_overlap`` tasks with two or more votes),
cleanlab's CROWDLAB (:func:`cleanlab.multiannotator.get_label_quality_multiannotator`)
gives the consensus label, a consensus quality score per task and a quality score per
annotator.

Review tasks (a suspected label error: given label vs the model's suggestion) become
verdicts with :func:`review_verdicts`: ``confirmed`` (the given label stands) or
``corrected`` (annotators chose another label).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from curation.errors import DataError

#: Columns of :attr:`Reconciliation.labels`.
LABEL_COLUMNS: dict[str, Any] = {
    "task_id": pl.String,
    "id": pl.String,
    "kind": pl.String,
    "label": pl.String,
    "status": pl.String,
    "majority_label": pl.String,
    "votes": pl.Int64,
    "n_done": pl.Int64,
    "n_skipped": pl.Int64,
    "agreement": pl.Float64,
    "answers": pl.String,
    "quality": pl.Float64,
    "method": pl.String,
}

#: Columns of :attr:`Reconciliation.annotators`.
ANNOTATOR_COLUMNS: dict[str, Any] = {
    "annotator": pl.String,
    "n_done": pl.Int64,
    "n_skipped": pl.Int64,
    "agreement": pl.Float64,
    "quality": pl.Float64,
}

#: Columns of the table :func:`review_verdicts` returns.
VERDICT_COLUMNS: dict[str, Any] = {
    "task_id": pl.String,
    "id": pl.String,
    "given_label": pl.String,
    "suggested": pl.String,
    "label": pl.String,
    "verdict": pl.String,
    "agreement": pl.Float64,
}


@dataclass
class Reconciliation:
    """The outcome of :func:`reconcile`.

    Attributes
    ----------
    labels : pl.DataFrame
        One row per task (``LABEL_COLUMNS``). ``status`` is ``agreed`` (every vote the
        same, one vote included), ``majority``, ``tie`` or ``skipped`` (no vote: only
        skipped or cancelled answers). ``label`` is the final label: the majority's, or
        cleanlab's consensus when ``method`` is ``crowdlab``; null for a tie that cleanlab
        did not settle and for skipped tasks.
    annotators : pl.DataFrame
        One row per annotator (``ANNOTATOR_COLUMNS``): answers, agreement with the final
        labels and, with cleanlab, its annotator quality.
    method : str
        ``majority`` or ``crowdlab``.
    """

    labels: pl.DataFrame
    annotators: pl.DataFrame
    method: str
    notes: list[str] = field(default_factory=list)

    @property
    def disagreements(self) -> pl.DataFrame:
        """Tasks whose annotators did not all give the same label (majority or tie)."""
        return self.labels.filter(pl.col("status").is_in(["majority", "tie"]))

    def summary(self) -> dict[str, Any]:
        """Counts per status, the method, and how many tasks got a final label."""
        counts = dict(self.labels.group_by("status").len().iter_rows())
        return {
            "tasks": len(self.labels),
            **{s: int(counts.get(s, 0)) for s in ("agreed", "majority", "tie", "skipped")},
            "labeled": int(self.labels["label"].is_not_null().sum()),
            "method": self.method,
        }


def latest_answers(annotations: pl.DataFrame) -> pl.DataFrame:
    """The newest answer of each annotator on each task (annotations pulled twice count once)."""
    return annotations.sort("updated_at").unique(
        subset=["task_id", "annotator"], keep="last", maintain_order=True
    )


def _pred_probs(
    task_ids: list[str],
    classes: list[str],
    pred_probs: Mapping[str, Sequence[float]] | None,
    tasks: pl.DataFrame | None,
) -> np.ndarray:
    """``(N, K)`` model probabilities for the tasks: given ones, else the task's suggestion
    (its score on the suggested class, the rest spread evenly), else uniform."""
    k = len(classes)
    out = np.full((len(task_ids), k), 1.0 / k)
    index = {c: i for i, c in enumerate(classes)}
    sugg: dict[str, tuple[str, float]] = {}
    if tasks is not None and {"task_id", "prediction", "prediction_score"} <= set(tasks.columns):
        for tid, pred, score in tasks.select("task_id", "prediction", "prediction_score").iter_rows():
            if pred is not None and score is not None and pred in index:
                sugg[str(tid)] = (pred, float(score))
    for n, tid in enumerate(task_ids):
        if pred_probs is not None and tid in pred_probs:
            p = np.asarray(pred_probs[tid], dtype=float)
            if p.shape != (k,):
                raise DataError(
                    f"pred_probs for task {tid!r} has {p.shape[0]} values, expected {k} (one per class)"
                )
            out[n] = p
        elif tid in sugg and k > 1:
            pred, score = sugg[tid]
            score = min(max(score, 1e-6), 1 - 1e-6)
            out[n] = (1 - score) / (k - 1)
            out[n, index[pred]] = score
    out = np.clip(out, 1e-9, None)  # type: ignore[assignment]
    return out / out.sum(axis=1, keepdims=True)


def reconcile(
    annotations: pl.DataFrame,
    classes: list[str] | None = None,
    *,
    tasks: pl.DataFrame | None = None,
    pred_probs: Mapping[str, Sequence[float]] | None = None,
    min_overlap: int = 10,
) -> Reconciliation:
    """One label per task from the annotations (``ANNOTATION_COLUMNS``).

    Parameters
    ----------
    annotations : pl.DataFrame
        What the annotators answered (one or more pulls; repeated answers count once).
    classes : list of str, optional
        The label choices; needed for cleanlab (without them, majority vote only).
    tasks : pl.DataFrame, optional
        The pushed task table: its ``prediction`` and ``prediction_score`` stand in for the
        model's probabilities cleanlab needs.
    pred_probs : mapping of task_id to K probabilities, optional
        The model's full class probabilities, when the caller has them.
    min_overlap : int
        cleanlab runs when at least this many tasks have two or more votes, from at least
        two annotators.

    Returns
    -------
    Reconciliation

    Examples
    --------
    >>> ann = pl.DataFrame({"task_id": ["label:1"] * 3 + ["label:2"] * 2, "id": ["1"] * 3 + ["2"] * 2,
    ...     "kind": ["label"] * 5, "label": ["a", "a", "b", "a", "b"], "annotator": ["x", "y", "z", "x", "y"],
    ...     "status": ["done"] * 5, "updated_at": ["t"] * 5})
    >>> r = reconcile(ann)
    >>> r.labels.select("task_id", "label", "status").rows()
    [('label:1', 'a', 'majority'), ('label:2', None, 'tie')]
    """
    ans = latest_answers(annotations)
    done = ans.filter((pl.col("status") == "done") & pl.col("label").is_not_null())
    if classes is not None:
        unknown = sorted(set(done["label"].to_list()) - set(classes))
        if unknown:
            raise DataError(
                f"annotations use labels that are not choices of the loop: {unknown} "
                f"(choices: {classes}); add them to the loop's labels or fix the project"
            )
    labels = _majority(ans, done)
    method = "majority"
    notes: list[str] = []
    annotator_quality: dict[str, float] = {}

    multi = labels.filter(pl.col("n_done") >= 2)
    n_annotators = done["annotator"].n_unique()
    if classes is not None and len(classes) >= 2 and len(multi) >= min_overlap and n_annotators >= 2:
        labels, annotator_quality = _crowdlab(labels, done, classes, tasks, pred_probs)
        method = "crowdlab"
    elif classes is not None:
        notes.append(
            f"cleanlab not used: {len(multi)} tasks with 2+ votes (needs {min_overlap}), "
            f"{n_annotators} annotators (needs 2)"
        )
    annotators = _annotators(ans, labels, annotator_quality)
    return Reconciliation(labels=labels, annotators=annotators, method=method, notes=notes)


def _majority(ans: pl.DataFrame, done: pl.DataFrame) -> pl.DataFrame:
    """One row per task: the majority label of its done answers (``None`` on a tie)."""
    tasks_meta = ans.group_by("task_id", maintain_order=True).agg(
        pl.col("id").first(),
        pl.col("kind").first(),
        (pl.col("status") != "done").sum().cast(pl.Int64).alias("n_skipped"),
    )
    counts = done.group_by("task_id", "label").agg(pl.len().cast(pl.Int64).alias("n"))
    by_task: dict[str, list[tuple[str, int]]] = {}
    for tid, lab, n in counts.iter_rows():
        by_task.setdefault(tid, []).append((lab, n))
    rows: list[dict[str, Any]] = []
    for tid, rid, kind, n_skipped in tasks_meta.iter_rows():
        votes = sorted(by_task.get(tid, []), key=lambda v: (-v[1], v[0]))
        n_done = sum(n for _, n in votes)
        if not votes:
            status, majority, top = "skipped", None, 0
        else:
            top = votes[0][1]
            tie = len(votes) > 1 and votes[1][1] == top
            status = "tie" if tie else ("agreed" if len(votes) == 1 else "majority")
            majority = None if tie else votes[0][0]
        rows.append(
            {
                "task_id": tid,
                "id": rid,
                "kind": kind,
                "label": majority,
                "status": status,
                "majority_label": majority,
                "votes": top,
                "n_done": n_done,
                "n_skipped": int(n_skipped),
                "agreement": (top / n_done) if n_done else None,
                "answers": ", ".join(f"{lab}x{n}" for lab, n in votes),
                "quality": None,
                "method": "majority",
            }
        )
    return pl.DataFrame(rows, schema=LABEL_COLUMNS)


def _annotators(ans: pl.DataFrame, labels: pl.DataFrame, quality: dict[str, float]) -> pl.DataFrame:
    """Per annotator: answers done and skipped, agreement with the final labels, quality."""
    final = labels.select("task_id", pl.col("label").alias("final"))
    per = (
        ans.join(final, on="task_id", how="left")
        .group_by("annotator", maintain_order=True)
        .agg(
            (pl.col("status") == "done").sum().cast(pl.Int64).alias("n_done"),
            (pl.col("status") != "done").sum().cast(pl.Int64).alias("n_skipped"),
            ((pl.col("status") == "done") & (pl.col("label") == pl.col("final"))).sum().alias("_agree"),
            ((pl.col("status") == "done") & pl.col("final").is_not_null()).sum().alias("_judged"),
        )
    )
    return per.select(
        "annotator",
        "n_done",
        "n_skipped",
        pl.when(pl.col("_judged") > 0)
        .then(pl.col("_agree") / pl.col("_judged"))
        .otherwise(None)
        .cast(pl.Float64)
        .alias("agreement"),
        pl.col("annotator").replace_strict(quality, default=None, return_dtype=pl.Float64).alias("quality"),
    ).cast(ANNOTATOR_COLUMNS)  # type: ignore[arg-type]


def _crowdlab(
    labels: pl.DataFrame,
    done: pl.DataFrame,
    classes: list[str],
    tasks: pl.DataFrame | None,
    pred_probs: Mapping[str, Sequence[float]] | None,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """cleanlab's consensus label and quality for every task with a vote."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    voted = labels.filter(pl.col("n_done") > 0)
    tids = voted["task_id"].to_list()
    annotators = sorted(done["annotator"].unique().to_list())
    row = {t: i for i, t in enumerate(tids)}
    col = {a: j for j, a in enumerate(annotators)}
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.full((len(tids), len(annotators)), np.nan)
    for tid, who, lab in done.select("task_id", "annotator", "label").iter_rows():
        matrix[row[tid], col[who]] = index[lab]
    import pandas as pd

    frame = pd.DataFrame(matrix, columns=annotators)
    probs = _pred_probs(tids, classes, pred_probs, tasks)
    out = get_label_quality_multiannotator(frame, probs, verbose=False, return_detailed_quality=False)
    lq = out["label_quality"]
    consensus = pl.DataFrame(
        {
            "task_id": tids,
            "_label": [classes[int(i)] for i in lq["consensus_label"].to_numpy()],
            "_quality": lq["consensus_quality_score"].to_numpy().astype(float),
        }
    )
    stats = out["annotator_stats"]
    quality = {str(a): float(q) for a, q in zip(stats.index, stats["annotator_quality"].to_numpy())}
    labels = (
        labels.join(consensus, on="task_id", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce("_label", "label").alias("label"),
            pl.col("_quality").alias("quality"),
            pl.when(pl.col("_label").is_not_null())
            .then(pl.lit("crowdlab"))
            .otherwise(pl.col("method"))
            .alias("method"),
        )
        .drop("_label", "_quality")
    )
    return labels.select(list(LABEL_COLUMNS)), quality


def review_verdicts(labels: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """Verdicts on review tasks, for the label-issue step.

    Parameters
    ----------
    labels : pl.DataFrame
        :attr:`Reconciliation.labels`.
    tasks : pl.DataFrame
        The pushed review tasks (``task_id``, ``given_label``, ``prediction``).

    Returns
    -------
    pl.DataFrame
        ``VERDICT_COLUMNS``, one row per reconciled review task: ``confirmed`` (the final
        label is the given one), ``corrected`` (another label: ``label`` is the correction)
        or ``unresolved`` (a tie or only skips).

    Examples
    --------
    >>> labels = pl.DataFrame({"task_id": ["review:1", "review:2"], "id": ["1", "2"], "kind": ["review"] * 2,
    ...     "label": ["a", "c"], "agreement": [1.0, 0.5]})
    >>> tasks = pl.DataFrame({"task_id": ["review:1", "review:2"], "given_label": ["a", "b"],
    ...     "prediction": ["b", "c"]})
    >>> review_verdicts(labels, tasks)["verdict"].to_list()
    ['confirmed', 'corrected']
    """
    rev = labels.filter(pl.col("kind") == "review").select("task_id", "id", "label", "agreement")
    t = tasks.select(
        pl.col("task_id"),
        pl.col("given_label").cast(pl.String),
        pl.col("prediction").cast(pl.String).alias("suggested"),
    )
    out = rev.join(t, on="task_id", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("label").is_null())
        .then(pl.lit("unresolved"))
        .when(pl.col("label") == pl.col("given_label"))
        .then(pl.lit("confirmed"))
        .otherwise(pl.lit("corrected"))
        .alias("verdict")
    )
    return out.select(list(VERDICT_COLUMNS)).cast(VERDICT_COLUMNS)  # type: ignore[arg-type]
