"""The annotator contract, run against every local annotator (oracle, files)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curation.connectors.base import ANNOTATION_COLUMNS, TASK_COLUMNS, Project, task_id
from curation.connectors.files import Files
from curation.connectors.ls_format import FROM_NAME, TO_NAME, labeling_config
from curation.connectors.oracle import Oracle
from curation.errors import ConnectorError


def tasks(ids: list[str], truth: list[str]) -> pl.DataFrame:
    n = len(ids)
    base = pl.DataFrame(
        {
            "task_id": [task_id("label", i) for i in ids],
            "id": ids,
            "text": [f"text {i}" for i in ids],
            "kind": ["label"] * n,
            "round": [1] * n,
            "strategy": ["kcenter"] * n,
            "reason": ["far"] * n,
            "score": [0.5] * n,
            "rank": list(range(1, n + 1)),
            "prediction": ["a"] * n,
            "prediction_score": [0.9] * n,
            "given_label": [None] * n,
        },
        schema=TASK_COLUMNS,
    )
    return base.with_columns(pl.Series("truth", truth))


def ls_export(pushed: list[dict], labels: dict[str, list[str]]) -> list[dict]:
    """What Label Studio's JSON export holds after annotators answered ``labels`` per task_id."""
    out = []
    for n, t in enumerate(pushed):
        anns = [
            {
                "id": 100 * n + k,
                "completed_by": {"id": k, "email": f"ann{k}@x"},
                "was_cancelled": False,
                "updated_at": f"2026-11-26T10:00:{k:02d}Z",
                "result": [
                    {
                        "from_name": FROM_NAME,
                        "to_name": TO_NAME,
                        "type": "choices",
                        "value": {"choices": [lab]},
                    }
                ],
            }
            for k, lab in enumerate(labels.get(t["data"]["task_id"], []))
        ]
        out.append(
            {"id": n + 1, "data": t["data"], "annotations": anns, "predictions": t.get("predictions", [])}
        )
    return out


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project("unit", ["a", "b"], tmp_path)


def test_oracle_answers_from_hidden_column_once(project: Project) -> None:
    o = Oracle(label_column="truth")
    assert o.push(project, tasks(["1", "2"], ["a", "b"])) == 2
    assert o.push(project, tasks(["1", "2", "3"], ["a", "b", "a"])) == 1  # idempotent
    pulled = o.pull(project)
    assert dict(pulled.annotations.schema) == ANNOTATION_COLUMNS
    assert sorted(zip(pulled.annotations["id"], pulled.annotations["label"])) == [
        ("1", "a"),
        ("2", "b"),
        ("3", "a"),
    ]
    assert len(o.pull(project, since=pulled.cursor).annotations) == 0


def test_oracle_without_its_column_says_which(project: Project) -> None:
    with pytest.raises(ConnectorError, match="no column 'hidden'"):
        Oracle(label_column="hidden").push(project, tasks(["1"], ["a"]))


def test_files_writes_label_studio_tasks_and_reads_exports(project: Project) -> None:
    f = Files()
    assert f.push(project, tasks(["1", "2"], ["a", "b"])) == 2
    assert f.push(project, tasks(["1", "2"], ["a", "b"])) == 0  # the same selection twice
    out = project.state_dir / "outbox"
    pushed = json.loads((out / "tasks-0001.json").read_text())
    assert [t["data"]["task_id"] for t in pushed] == ["label:1", "label:2"]
    pred = pushed[0]["predictions"][0]
    assert pred["score"] == 0.9 and pred["result"][0]["value"] == {"choices": ["a"]}
    assert (out / "config.xml").read_text() == labeling_config(["a", "b"])
    assert not (out / "tasks-0002.json").exists()

    export = ls_export(pushed, {"label:1": ["b"], "label:2": ["a", "b"]})
    export[1]["annotations"].append(
        {
            "id": 999,
            "completed_by": 7,
            "was_cancelled": True,
            "updated_at": "2026-11-26T10:00:09Z",
            "result": [],
        }
    )
    (project.state_dir / "inbox").mkdir()
    (project.state_dir / "inbox" / "export.json").write_text(json.dumps(export))
    ann = f.pull(project).annotations
    assert len(ann) == 4
    assert ann.filter(pl.col("status") == "skipped")["label"].to_list() == [None]
    done = ann.filter(pl.col("status") == "done")
    assert sorted(zip(done["id"], done["label"], done["annotator"])) == [
        ("1", "b", "ann0@x"),
        ("2", "a", "ann0@x"),
        ("2", "b", "ann1@x"),
    ]
    later = f.pull(project, since="2026-11-26T10:00:00Z").annotations
    assert sorted(later["updated_at"].to_list()) == ["2026-11-26T10:00:01Z", "2026-11-26T10:00:09Z"]


def test_files_rejects_a_file_that_is_not_an_export(project: Project) -> None:
    (project.state_dir / "inbox").mkdir(parents=True)
    (project.state_dir / "inbox" / "bad.json").write_text('{"not": "a list"}')
    with pytest.raises(ConnectorError, match="expected a JSON list of tasks"):
        Files().pull(project)


def test_the_documented_answer_file_is_merged_whole_even_without_timestamps(tmp_path: Path) -> None:
    """docs/examples/answers.json: three answers, one without updated_at; each is merged or said why."""
    import shutil

    p = Project("docs", ["card_arrival", "apple_pay_or_google_pay"], tmp_path / "state")
    (p.state_dir / "inbox").mkdir(parents=True)
    shutil.copy(
        Path(__file__).resolve().parents[2] / "docs" / "examples" / "answers.json", p.state_dir / "inbox"
    )
    pulled = Files().pull(p, since="2026-01-01T00:00:00+00:00")
    got = pulled.annotations.sort("task_id")
    assert got["task_id"].to_list() == ["label:1042", "label:2001", "review:77"]
    assert got["status"].to_list() == ["done", "skipped", "done"]
    assert got["updated_at"].str.contains(r"^\d{4}-\d\d-\d\dT").all() and pulled.skipped == []
    export = json.loads((p.state_dir / "inbox" / "answers.json").read_text())
    export.append({"id": 9, "data": {"text": "made by hand"}, "annotations": [{"result": []}]})
    (p.state_dir / "inbox" / "answers.json").write_text(json.dumps(export))
    again = Files().pull(p)
    assert len(again.annotations) == 3 and len(again.skipped) == 1 and "no task_id" in again.skipped[0]
