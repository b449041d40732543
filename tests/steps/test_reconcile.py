"""Reconciling several annotations per task: majority, ties, skips, cleanlab's CROWDLAB, verdicts."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from curation.connectors.base import ANNOTATION_COLUMNS
from curation.errors import DataError
from curation.steps.reconcile import LABEL_COLUMNS, reconcile, review_verdicts

CLASSES = ["a", "b", "c"]


def ann(rows: list[tuple[str, str, str | None, str, str]]) -> pl.DataFrame:
    """(task_id, annotator, label, status, updated_at) rows as an annotation table."""
    return pl.DataFrame(
        [
            {
                "task_id": t,
                "id": t.split(":")[1],
                "kind": t.split(":")[0],
                "label": lab,
                "annotator": who,
                "status": status,
                "updated_at": at,
            }
            for t, who, lab, status, at in rows
        ],
        schema=ANNOTATION_COLUMNS,
    )


def test_majority_tie_skip_and_latest_answer() -> None:
    table = ann(
        [
            ("label:1", "x", "a", "done", "1"),
            ("label:1", "y", "a", "done", "1"),
            ("label:1", "z", "b", "done", "1"),
            ("label:2", "x", "a", "done", "1"),
            ("label:2", "y", "b", "done", "1"),
            ("label:3", "x", None, "skipped", "1"),
            ("label:3", "y", None, "cancelled", "1"),
            ("label:4", "x", "c", "done", "1"),
            # y first said b on task 5, then changed to c: only the newest answer counts
            ("label:5", "y", "b", "done", "1"),
            ("label:5", "y", "c", "done", "2"),
            ("label:5", "x", "c", "done", "1"),
        ]
    )
    r = reconcile(table, CLASSES)
    assert r.labels.schema == pl.Schema(LABEL_COLUMNS)
    got = {row["task_id"]: row for row in r.labels.iter_rows(named=True)}
    assert (got["label:1"]["label"], got["label:1"]["status"], got["label:1"]["answers"]) == (
        "a",
        "majority",
        "ax2, bx1",
    )
    assert (got["label:2"]["label"], got["label:2"]["status"]) == (None, "tie")
    assert (got["label:3"]["label"], got["label:3"]["status"], got["label:3"]["n_skipped"]) == (
        None,
        "skipped",
        2,
    )
    assert (got["label:4"]["label"], got["label:4"]["status"], got["label:4"]["agreement"]) == (
        "c",
        "agreed",
        1.0,
    )
    assert (got["label:5"]["label"], got["label:5"]["status"], got["label:5"]["n_done"]) == ("c", "agreed", 2)
    assert r.summary() == {
        "tasks": 5,
        "agreed": 2,
        "majority": 1,
        "tie": 1,
        "skipped": 1,
        "labeled": 3,
        "method": "majority",
    }
    assert r.notes and "cleanlab not used" in r.notes[0]
    per = {row["annotator"]: row for row in r.annotators.iter_rows(named=True)}
    assert per["z"]["agreement"] == 0.0 and per["x"]["agreement"] == 1.0 and per["x"]["n_skipped"] == 1


def test_labels_outside_the_choices_are_an_error() -> None:
    with pytest.raises(DataError, match="not choices of the loop: \\['zzz'\\]"):
        reconcile(ann([("label:1", "x", "zzz", "done", "1")]), CLASSES)


def test_crowdlab_with_enough_overlap_finds_the_careless_annotator() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 80)
    rows = []
    for t, k in enumerate(truth):
        for who, p_right in (("careful1", 0.95), ("careful2", 0.9), ("careless", 0.4)):
            lab = k if rng.random() < p_right else rng.integers(0, 3)
            rows.append((f"label:{t}", who, CLASSES[lab], "done", "1"))
    tasks = pl.DataFrame(
        {
            "task_id": [f"label:{t}" for t in range(80)],
            "prediction": [CLASSES[k] for k in truth],
            "prediction_score": [0.6] * 80,
        }
    )
    r = reconcile(ann(rows), CLASSES, tasks=tasks)
    assert r.method == "crowdlab"
    acc = np.mean([lab == CLASSES[k] for lab, k in zip(r.labels["label"].to_list(), truth)])
    assert acc > 0.95
    assert r.labels["quality"].is_not_null().all()
    q = dict(r.annotators.select("annotator", "quality").iter_rows())
    assert q["careless"] < q["careful2"] <= q["careful1"] + 1e-9
    # too little overlap: majority only
    assert reconcile(ann(rows), CLASSES, min_overlap=1000).method == "majority"
    # full probabilities from the caller are used, and checked
    with pytest.raises(DataError, match="expected 3"):
        reconcile(ann(rows), CLASSES, pred_probs={"label:0": [0.5, 0.5]})


def test_review_verdicts() -> None:
    r = reconcile(
        ann(
            [
                ("review:1", "x", "a", "done", "1"),
                ("review:2", "x", "c", "done", "1"),
                ("review:3", "x", None, "skipped", "1"),
                ("label:9", "x", "a", "done", "1"),
            ]
        ),
        CLASSES,
    )
    tasks = pl.DataFrame(
        {
            "task_id": ["review:1", "review:2", "review:3"],
            "given_label": ["a", "b", "b"],
            "prediction": ["b", "c", "c"],
        }
    )
    v = review_verdicts(r.labels, tasks)
    assert v.select("task_id", "verdict", "label", "given_label", "suggested").rows() == [
        ("review:1", "confirmed", "a", "a", "b"),
        ("review:2", "corrected", "c", "b", "c"),
        ("review:3", "unresolved", None, "b", "c"),
    ]
