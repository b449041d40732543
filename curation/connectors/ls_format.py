"""Label Studio's task, prediction and export JSON, shared by the ``files`` and
``label_studio`` connectors.

The labeling config names the text ``text`` and the choices ``label``; task data keeps
our stable ``task_id`` so that exports map back to our rows.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

import polars as pl

from curation.connectors.base import ANNOTATION_COLUMNS, TASK_COLUMNS

FROM_NAME = "label"
TO_NAME = "text"


def labeling_config(labels: list[str]) -> str:
    """A Label Studio labeling config: the text and one choice per label.

    Examples
    --------
    >>> print(labeling_config(["a"]).splitlines()[2].strip())
    <Choices name="label" toName="text" choice="single-radio" showInline="false">
    """
    choices = "\n".join(f"    <Choice value={quoteattr(str(v))}/>" for v in labels)
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single-radio" showInline="false">\n'
        f"{choices}\n"
        "  </Choices>\n"
        '  <Header value="$review_note" size="5"/>\n'
        "</View>"
    )


def choice_result(label: str) -> list[dict[str, Any]]:
    """A prediction's (or an annotation's) ``result``: ``label`` chosen in the label field.

    Examples
    --------
    >>> choice_result("card")[0]["value"]
    {'choices': ['card']}
    """
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [label]}}]


def review_note(row: dict[str, Any]) -> str:
    """What a review task shows above the choices: the given and the suggested label.

    Examples
    --------
    >>> review_note({"kind": "review", "given_label": "a", "prediction": "b", "prediction_score": 0.9})
    'Review: the given label is "a"; the model suggests "b" (90%). Choose the correct label.'
    >>> review_note({"kind": "label"})
    ''
    """
    if row.get("kind") != "review":
        return ""
    note = f'Review: the given label is "{row.get("given_label") or ""}"'
    if row.get("prediction") is not None:
        score = row.get("prediction_score")
        pct = f" ({float(score):.0%})" if score is not None else ""
        note += f'; the model suggests "{row["prediction"]}"{pct}'
    return note + ". Choose the correct label."


def to_ls_task(row: dict[str, Any], model_version: str = "curation") -> dict[str, Any]:
    """One row of a task table as a Label Studio import task (data plus a prediction).

    Review tasks (``kind == "review"``) also carry ``review_note``, shown above the choices.
    """
    data = {k: row.get(k) for k in TASK_COLUMNS}
    data["given_label"] = data.get("given_label") or ""
    data["review_note"] = review_note(row)
    task: dict[str, Any] = {"data": data}
    if row.get("prediction") is not None:
        task["predictions"] = [
            {
                "model_version": model_version,
                "score": float(row.get("prediction_score") or 0.0),
                "result": choice_result(str(row["prediction"])),
            }
        ]
    return task


def _annotator(ann: dict[str, Any]) -> str:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(who) if who is not None else "unknown"


def _label(ann: dict[str, Any]) -> str | None:
    for r in ann.get("result") or []:
        if r.get("from_name") == FROM_NAME and r.get("type") == "choices":
            choices = r.get("value", {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None


def unusable(tasks: list[dict[str, Any]]) -> list[str]:
    """Why each task of an export (or its answers) cannot be used: no curation ``task_id``.

    Examples
    --------
    >>> unusable([{"id": 7, "data": {"text": "hi"}, "annotations": [{}]}])
    ['export task 7: no task_id in its data (not a task curation made): 1 answer not used']
    """
    out = []
    for t in tasks:
        if (t.get("data") or {}).get("task_id") is None and t.get("annotations"):
            n = len(t["annotations"])
            out.append(
                f"export task {t.get('id')}: no task_id in its data (not a task curation made): "
                f"{n} answer{'s' if n > 1 else ''} not used"
            )
    return out


def from_ls_export(tasks: list[dict[str, Any]]) -> pl.DataFrame:
    """Annotations (``ANNOTATION_COLUMNS``) from a Label Studio JSON export.

    Tasks that did not come from curation (no ``task_id`` in their data) are ignored.
    A cancelled annotation (the annotator skipped) has status ``"skipped"``; an
    annotation with no choice has status ``"cancelled"``.
    """
    rows = []
    for t in tasks:
        data = t.get("data") or {}
        tid = data.get("task_id")
        if tid is None:
            continue
        for ann in t.get("annotations") or []:
            label = _label(ann)
            status = "skipped" if ann.get("was_cancelled") else ("done" if label else "cancelled")
            rows.append(
                {
                    "task_id": str(tid),
                    "id": str(data.get("id")),
                    "kind": str(data.get("kind") or "label"),
                    "label": label if status == "done" else None,
                    "annotator": _annotator(ann),
                    "status": status,
                    "updated_at": str(ann.get("updated_at") or ann.get("created_at") or ""),
                }
            )
    return pl.DataFrame(rows, schema=ANNOTATION_COLUMNS)
