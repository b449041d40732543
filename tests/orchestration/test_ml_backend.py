"""``curation serve`` as Label Studio's ML backend: the round model, its HTTP protocol, and a
real Label Studio that shows our predictions on the tasks it opens and trains by a round."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import yaml

from curation.connectors.label_studio import LabelStudio
from curation.connectors.ls_format import labeling_config
from curation.load import load_loop
from curation.orchestration.ml_backend import ModelBackend, label_fields
from curation.orchestration.round import run_round
from curation.orchestration.serve import WebhookReceiver, serve_loop
from tests.support.label_studio_server import TOKEN, LabelStudioServer, free_port
from tests.support.projects import make_project

SECRET = "a-shared-secret-for-the-model"
TOKEN_ENV = "CURATION_ML_LS_TOKEN"


def wait(cond: Any, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.1)


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"curation:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def one_round(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A loop (oracle connector, local store) after one round."""
    tmp = tmp_path_factory.mktemp("ml")
    loop = make_project(
        tmp, data_dir, n_classes=3, per_class=40, budget=10, engine="local", version={"name": "local"}
    )
    run_round(load_loop(loop))
    return loop


@pytest.fixture(scope="module")
def backend(one_round: Path) -> ModelBackend:
    b = ModelBackend(load_loop(one_round))
    assert b.refit() is not None, b.error_
    return b


@pytest.fixture
def receiver(backend: ModelBackend) -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET, count_new=lambda: 0, start_round=lambda: None, port=0, backend=backend)
    r.start()
    yield r
    r.stop()


def test_the_round_model_is_fitted_on_every_label_as_of_the_last_round(
    one_round: Path, backend: ModelBackend
) -> None:
    m = backend.model_
    assert m is not None and m.round == 1 and m.version == "curation-unit-round-1"
    labels = pl.read_parquet(one_round.parent.parent / "labels" / "unit.parquet")
    assert len(labels) == 10  # the oracle answered the round's 10 tasks
    new = int((labels["kind"] == "label").sum())
    assert new > 0 and m.rows == 3 * 20 + new  # the given labels (the broken row quarantined), the answers
    # the default model (logreg_knn) also reads the pool, as in the round: it keeps pool rows
    assert m.model.estimator_.n_kept_ > m.rows
    test = pl.read_parquet(one_round.parent.parent / "data" / "test.parquet")
    got = backend.predict_texts(test["text"].to_list())
    accuracy = sum(g is not None and g[0] == y for g, y in zip(got, test["label"], strict=True)) / len(test)
    assert accuracy > 0.8 and all(g is not None and 0 < g[1] <= 1 for g in got)
    assert backend.predict_texts([None, "  "]) == [None, None]


def test_setup_and_predict_speak_the_protocol_behind_the_secret(
    receiver: WebhookReceiver, backend: ModelBackend
) -> None:
    base = receiver.base_url
    config = labeling_config(backend.model_.classes if backend.model_ else [])
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "UP" and health["model_version"] == "curation-unit-round-1"
    assert httpx.get(f"{base}/versions").json() == {"versions": ["curation-unit-round-1"]}
    for headers in ({}, basic("wrong-secret-of-some-length"), {"Authorization": "Basic !!"}):
        r = httpx.post(f"{base}/setup", json={"schema": config}, headers=headers)
        assert r.status_code == 401
    r = httpx.post(f"{base}/setup", json={"schema": config}, headers=basic(SECRET))
    assert r.status_code == 200 and r.json() == {"model_version": "curation-unit-round-1"}
    r = httpx.post(
        f"{base}/setup", json={"schema": "<View><Text name='x' value='$x'/></View>"}, headers=basic(SECRET)
    )
    assert r.status_code == 400 and 'Choices name="label"' in r.json()["error"]

    tasks = [{"id": 1, "data": {"text": "I still have not received my new card"}}, {"id": 2, "data": {}}]
    r = httpx.post(f"{base}/predict", json={"tasks": tasks, "label_config": config}, headers=basic(SECRET))
    assert r.status_code == 200
    first, second = r.json()["results"]
    (label, score), _ = backend.predict_texts([tasks[0]["data"]["text"], None])
    assert first["result"] == [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
    ]
    assert first["score"] == pytest.approx(score) and first["model_version"] == "curation-unit-round-1"
    assert second["result"] == []  # a task without a text gets an empty prediction, in its place
    r = httpx.post(f"{base}/predict", json={"tasks": "nope"}, headers=basic(SECRET))
    assert r.status_code == 400


def test_label_fields_name_what_is_missing() -> None:
    assert label_fields(labeling_config(["x"])) == ("text", ["x"])
    with pytest.raises(ValueError, match="not XML"):
        label_fields("<View>")
    with pytest.raises(ValueError, match='toName="text"'):
        label_fields('<View><Text name="text" value="$t"/><Choices name="label" toName="t"/></View>')


def test_a_round_made_elsewhere_is_picked_up_at_the_next_setup(
    one_round: Path, backend: ModelBackend
) -> None:
    """(Last of the tests on ``one_round``: it adds round 2.) ``curation run`` commits a round
    while the server runs: the next ``/setup`` refits in the background, the old model
    answering meanwhile."""
    config = labeling_config(backend.model_.classes if backend.model_ else [])
    before = backend.version
    run_round(load_loop(one_round))
    assert backend.setup({"schema": config})[1] == {"model_version": before}  # at once, the old one
    wait(lambda: backend.version == "curation-unit-round-2", timeout=120)
    assert backend.model_ is not None and backend.model_.rows > 70


@pytest.mark.slow
def test_label_studio_shows_the_round_models_predictions_and_trains_by_a_round(
    tmp_path: Path, data_dir: Path, label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("CURATION_WEBHOOK_SECRET", SECRET)
    title = f"ml-{tmp_path.name}"
    (tmp_path / "connectors").mkdir(parents=True)
    (tmp_path / "connectors" / "ls.yaml").write_text(
        yaml.safe_dump(
            {"name": "label_studio", "url": label_studio.url, "token_env": TOKEN_ENV, "project_title": title}
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
    run_round(load_loop(loop))  # round 1 pushes 6 tasks, each with the round's suggestion

    receiver = serve_loop(loop, threshold=50, port=free_port(), register=True)
    receiver.start()
    try:
        backend = receiver.backend
        assert backend is not None and backend.version == "curation-unit-round-1"
        c = LabelStudio(url=label_studio.url, token_env=TOKEN_ENV, project_title=title).client()
        pid = receiver.project_id
        assert pid is not None
        # "Connect model" in the project's settings, through Label Studio's API
        ml = c.ml.create(
            project=pid,
            url=receiver.base_url,
            title="curation",
            auth_method="BASIC_AUTH",
            basic_auth_user="curation",
            basic_auth_pass=SECRET,
        )
        got = c.ml.get(id=ml.id)
        assert got.state == "CO" and got.model_version == "curation-unit-round-1", got.error_message
        hooks = c.webhooks.list(project=str(pid))  # ours, at the model's /webhook: no second one
        assert [h.url for h in hooks] == [receiver.url]

        api = httpx.Client(
            base_url=label_studio.url, headers={"Authorization": f"Token {TOKEN}"}, timeout=120
        )

        def ours(task: dict[str, Any], version: str) -> dict[str, Any]:
            found = [p for p in task["predictions"] if p["model_version"] == version]
            assert len(found) == 1, task["predictions"]
            label, score = backend.predict_texts([task["data"]["text"]])[0] or ("", 0.0)
            assert found[0]["result"][0]["value"]["choices"] == [label]
            assert found[0]["score"] == pytest.approx(score)
            return found[0]

        # an annotator opens the next task of the queue: it shows the model's prediction
        ours(api.get(f"/api/projects/{pid}/next").raise_for_status().json(), "curation-unit-round-1")
        # a task curation never pushed, opened through the API, gets one too
        made = c.projects.import_tasks(
            id=pid, request=[{"text": "Where is my new card?"}], return_task_ids=True
        )
        new_id = made.task_ids[0]  # type: ignore[index]
        ours(api.get(f"/api/tasks/{new_id}").raise_for_status().json(), "curation-unit-round-1")

        # one answer, then "Start training": a round runs at once (the threshold is 50)
        task = next(t for t in c.tasks.list(project=pid) if (t.data or {}).get("task_id"))
        choice = labeling_config(backend.model_.classes if backend.model_ else [])
        c.annotations.create(
            id=task.id,
            result=[
                {
                    "from_name": "label",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": [label_fields(choice)[1][0]]},
                }
            ],
        )
        c.ml.train(id=ml.id)
        wait(lambda: receiver.stats.rounds == 1)
        wait(lambda: backend.version == "curation-unit-round-2")
        assert receiver.stats.trainings == 1 and receiver.stats.last_error is None
        # the next task opened shows the new round's model
        ours(api.get(f"/api/projects/{pid}/next").raise_for_status().json(), "curation-unit-round-2")
    finally:
        receiver.stop()
