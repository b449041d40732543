"""The real ``serve_loop`` against a real Label Studio: replayed events never start a round;
finishing ``threshold`` annotations starts exactly one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from curation.connectors.base import Project
from curation.connectors.label_studio import LabelStudio
from curation.load import load_loop
from curation.orchestration.round import run_round
from curation.orchestration.serve import SECRET_HEADER, serve_loop
from curation.orchestration.state import store_for
from tests.support.label_studio_server import TOKEN, LabelStudioServer
from tests.support.projects import make_project

TOKEN_ENV = "CURATION_SERVE_LS_TOKEN"
SECRET = "a-shared-secret-for-the-webhook"


def wait(cond: Any, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_replayed_events_start_no_round_and_threshold_answers_start_one(
    tmp_path: Path, data_dir: Path, label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("CURATION_WEBHOOK_SECRET", SECRET)
    (tmp_path / "connectors").mkdir(parents=True)
    (tmp_path / "connectors" / "ls.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "label_studio",
                "url": label_studio.url,
                "token_env": TOKEN_ENV,
                "project_title": f"serve-{tmp_path.name}",
                "backoff_s": 0.05,
            }
        )
    )
    loop = make_project(
        tmp_path,
        data_dir,
        n_classes=3,
        per_class=30,
        budget=6,
        engine="local",
        connector="connectors/ls.yaml",
        version={"name": "local"},
    )
    run_round(load_loop(loop))  # round 1 pushes 6 tasks
    store = store_for(load_loop(loop))
    assert [r.round for r in store.history()] == [1]

    receiver = serve_loop(loop, threshold=3, port=0, register=False)
    receiver.start()
    try:
        event = {
            "action": "ANNOTATION_CREATED",
            "annotation": {"id": 1},
            "project": {"id": receiver.project_id},
        }

        def post() -> None:
            r = httpx.post(receiver.url, json=event, headers={SECRET_HEADER: SECRET})
            assert r.status_code == 200 and r.json()["queued"] is True

        for _ in range(3):  # the same event, three times, and no annotation: no round
            pulls = receiver.stats.pulls
            post()
            wait(lambda p=pulls: receiver.stats.pulls > p)
        time.sleep(1.0)
        assert receiver.stats.rounds == 0 and [r.round for r in store.history()] == [1]

        ls = LabelStudio(url=label_studio.url, token_env=TOKEN_ENV, project_title=f"serve-{tmp_path.name}")
        project = Project("unit", [], tmp_path / "annotations" / "unit")
        existing = ls.existing(project)
        labels = ls.client().projects.get(id=ls.project_id_for(project)).parsed_label_config
        choice = next(iter(labels.values()))["labels"][0]
        for tid in sorted(existing)[:3]:  # an annotator finishes three tasks
            ls.client().annotations.create(
                id=existing[tid][0],
                result=[
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [choice]},
                    }
                ],
            )
        post()
        wait(lambda: receiver.stats.rounds == 1)
        wait(lambda: [r.round for r in store.history()] == [1, 2])

        for _ in range(3):  # replays of the same event after the round: no second round
            pulls = receiver.stats.pulls
            post()
            wait(lambda p=pulls: receiver.stats.pulls > p)
        time.sleep(1.0)
        assert receiver.stats.rounds == 1 and [r.round for r in store.history()] == [1, 2]
        assert receiver.stats.last_error is None
    finally:
        receiver.stop()
