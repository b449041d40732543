"""The annotator contract: one suite, every registered connector.

``oracle`` and ``files`` run in a temporary folder; ``label_studio`` runs against a real Label
Studio server (the session's ``label_studio`` fixture). Each connector comes with a harness
that plays the annotators (answers tasks the way a person would in that tool), lists what
is queued, and breaks the connection (a bad token, a corrupt export) so the suite can check
what every connector promises:

- pushing the same tasks twice queues each once, and a push returns only the new ones;
- a pull since a cursor returns only the answers given after it;
- answers come back in the fixed shape ``ANNOTATION_COLUMNS``;
- a broken connection is a :class:`ConnectorError`, never a third-party exception.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curation.connectors.base import ANNOTATION_COLUMNS, ANNOTATORS, TASK_COLUMNS, Annotator, Project
from curation.connectors.files import Files
from curation.connectors.label_studio import LabelStudio
from curation.connectors.oracle import Oracle
from curation.errors import ConnectorError
from tests.support.label_studio_server import TOKEN, LabelStudioServer

LABELS = ["billing", "card", "transfer"]
TOKEN_ENV = "CURATION_CONTRACT_LS_TOKEN"


def tasks(ids: range) -> pl.DataFrame:
    """Label tasks for ``ids``, with the true label in ``truth`` (the oracle answers from it)."""
    rows = [str(i) for i in ids]
    base = pl.DataFrame(
        {
            "task_id": [f"label:{i}" for i in rows],
            "id": rows,
            "text": [f"text {i}" for i in rows],
            "kind": ["label"] * len(rows),
            "round": [1] * len(rows),
            "strategy": ["random"] * len(rows),
            "reason": ["random"] * len(rows),
            "score": [0.5] * len(rows),
            "rank": list(range(len(rows))),
            "prediction": [LABELS[0]] * len(rows),
            "prediction_score": [0.4] * len(rows),
            "given_label": [None] * len(rows),
        },
        schema=TASK_COLUMNS,
    )
    return base.with_columns(pl.Series("truth", [LABELS[int(i) % 3] for i in rows]))


class OracleHarness:
    """The oracle answers at push time, from the ``truth`` column."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def connector(self) -> Annotator:
        return Oracle(label_column="truth")

    def answer(self, a: Annotator, p: Project, t: pl.DataFrame) -> None:
        time.sleep(0.002)  # answers after an earlier cursor
        a.push(p, t)

    def queued(self, a: Annotator, p: Project) -> list[str]:
        return pl.read_parquet(p.state_dir / "oracle.parquet")["task_id"].to_list()

    def broken(self, a: Annotator, p: Project) -> None:
        a.push(p, tasks(range(1)).drop("truth"))  # nothing to answer from


class FilesHarness:
    """Annotators export from their tool into the inbox, in Label Studio's export format."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.exports = 0

    def connector(self) -> Annotator:
        return Files()

    def answer(self, a: Annotator, p: Project, t: pl.DataFrame) -> None:
        a.push(p, t)
        self.exports += 1
        now = datetime.now(UTC).isoformat()
        export = [
            {
                "id": i,
                "data": {"task_id": r["task_id"], "id": r["id"], "kind": r["kind"]},
                "annotations": [
                    {
                        "completed_by": {"email": "ann@example.com"},
                        "updated_at": now,
                        "result": [
                            {
                                "from_name": "label",
                                "to_name": "text",
                                "type": "choices",
                                "value": {"choices": [r["truth"]]},
                            }
                        ],
                    }
                ],
            }
            for i, r in enumerate(t.iter_rows(named=True))
        ]
        inbox = p.state_dir / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / f"export-{self.exports}.json").write_text(json.dumps(export), encoding="utf-8")
        time.sleep(0.002)

    def queued(self, a: Annotator, p: Project) -> list[str]:
        files = sorted((p.state_dir / "outbox").glob("tasks-*.json"))
        return [t["data"]["task_id"] for f in files for t in json.loads(f.read_text(encoding="utf-8"))]

    def broken(self, a: Annotator, p: Project) -> None:
        (p.state_dir / "inbox").mkdir(parents=True, exist_ok=True)
        (p.state_dir / "inbox" / "export-broken.json").write_text("[{not json", encoding="utf-8")
        a.pull(p)


class LabelStudioHarness:
    """Annotators answer in a real Label Studio, through its API."""

    def __init__(self, server: LabelStudioServer) -> None:
        self.server = server

    def connector(self, token_env: str = TOKEN_ENV) -> Annotator:
        return LabelStudio(
            url=self.server.url, token_env=token_env, backoff_s=0.05, max_backoff_s=1.0, retries=2
        )

    def answer(self, a: Annotator, p: Project, t: pl.DataFrame) -> None:
        assert isinstance(a, LabelStudio)
        a.push(p, t)
        existing = a.existing(p)
        for r in t.iter_rows(named=True):
            (ls_id,) = existing[r["task_id"]]
            a.client().annotations.create(
                id=ls_id,
                result=[
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [r["truth"]]},
                    }
                ],
            )
        time.sleep(1.1)  # Label Studio's timestamps: a later answer is a later second

    def queued(self, a: Annotator, p: Project) -> list[str]:
        assert isinstance(a, LabelStudio)
        return [tid for tid, ids in a.existing(p).items() for _ in ids]

    def broken(self, a: Annotator, p: Project) -> None:
        bad = self.connector(token_env="CURATION_CONTRACT_BAD_TOKEN")
        bad.push(p, tasks(range(2)))


#: Every registered connector runs this suite (tests/contracts/test_meta.py checks it).
ANNOTATORS_TESTED = ["files", "label_studio", "oracle"]


@pytest.fixture(params=ANNOTATORS_TESTED)
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if request.param == "label_studio":
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        monkeypatch.setenv("CURATION_CONTRACT_BAD_TOKEN", "not-a-token")
        yield LabelStudioHarness(request.getfixturevalue("label_studio"))
    elif request.param == "files":
        yield FilesHarness(tmp_path)
    else:
        yield OracleHarness(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(f"contract-{uuid.uuid4().hex[:8]}", LABELS, tmp_path / "state")


def test_the_harness_names_a_registered_connector(harness: Any) -> None:
    assert harness.connector().name in ANNOTATORS.names()


def test_pushing_twice_queues_each_task_once(harness: Any, project: Project) -> None:
    a = harness.connector()
    assert a.push(project, tasks(range(5))) == 5
    assert a.push(project, tasks(range(5))) == 0
    assert a.push(project, tasks(range(3, 8))) == 3  # only 5, 6, 7 are new
    queued = harness.queued(a, project)
    assert sorted(queued) == sorted(f"label:{i}" for i in range(8))


def test_a_pull_since_a_cursor_returns_only_newer_answers(harness: Any, project: Project) -> None:
    a = harness.connector()
    harness.answer(a, project, tasks(range(3)))
    first = a.pull(project)
    assert sorted(first.annotations["id"].to_list()) == ["0", "1", "2"]
    assert first.annotations.schema == pl.Schema(ANNOTATION_COLUMNS)
    assert set(first.annotations["label"].to_list()) <= set(LABELS)
    harness.answer(a, project, tasks(range(3, 5)))
    second = a.pull(project, since=first.cursor)
    assert sorted(second.annotations["id"].to_list()) == ["3", "4"]
    assert a.pull(project, since=second.cursor).annotations.is_empty()
    assert sorted(a.pull(project).annotations["id"].to_list()) == ["0", "1", "2", "3", "4"]


def test_a_broken_connection_is_a_connector_error(harness: Any, project: Project) -> None:
    with pytest.raises(ConnectorError):
        harness.broken(harness.connector(), project)
