"""The Label Studio connector against a real Label Studio server (started once per session).

Push, re-push, pull, multi-annotator reconciliation, review tasks, the webhook receiver
fed by the server's real webhooks, clear errors, and faults: 503, 429, reset connections,
lost answers, a frozen server and a killed one in the middle of a push of 2,000 tasks.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from curation.connectors.base import ANNOTATORS, TASK_COLUMNS, Annotator, Project
from curation.connectors.label_studio import LabelStudio
from curation.connectors.ls_format import to_ls_task
from curation.connectors.retry import Backoff, Transient
from curation.errors import ConnectorError
from curation.orchestration.serve import SECRET_HEADER, WebhookReceiver
from curation.steps.reconcile import reconcile, review_verdicts
from tests.support.label_studio_server import TOKEN, FaultProxy, LabelStudioServer, free_port

TOKEN_ENV = "CURATION_TEST_LS_TOKEN"
LABELS = ["billing", "card", "transfer"]


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def connector(server: LabelStudioServer | str, **kw: Any) -> LabelStudio:
    url = server if isinstance(server, str) else server.url
    params = {"url": url, "token_env": TOKEN_ENV, "backoff_s": 0.05, "max_backoff_s": 1.0, **kw}
    return ANNOTATORS.create("label_studio", params)  # type: ignore[return-value]


def project(tmp_path: Path, name: str) -> Project:
    return Project(name, LABELS, tmp_path / "state")


def make_tasks(n: int, start: int = 0, kind: str = "label", round: int = 1) -> pl.DataFrame:
    ids = [str(i) for i in range(start, start + n)]
    return pl.DataFrame(
        {
            "task_id": [f"{kind}:{i}" for i in ids],
            "id": ids,
            "text": [f"sample text number {i}" for i in ids],
            "kind": [kind] * n,
            "round": [round] * n,
            "strategy": ["kcenter"] * n,
            "reason": [f"far from labeled data (rank {r})" for r in range(n)],
            "score": [1.0 - r / max(n, 1) for r in range(n)],
            "rank": list(range(n)),
            "prediction": [LABELS[int(i) % 3] for i in ids],
            "prediction_score": [0.5 + (int(i) % 5) / 10 for i in ids],
            "given_label": [LABELS[(int(i) + 1) % 3] if kind == "review" else None for i in ids],
        },
        schema=TASK_COLUMNS,
    )


def choice(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def user(ls: LabelStudio, email: str) -> int:
    c = ls.client()
    for u in c.users.list():
        if u.email == email:
            return int(u.id)
    return int(c.users.create(username=email.split("@")[0], email=email).id)


def annotate(
    ls: LabelStudio, ls_task: int, label: str | None, who: int | None = None, skipped: bool = False
) -> int:
    kw: dict[str, Any] = {"completed_by": who} if who is not None else {}
    a = ls.client().annotations.create(
        id=ls_task, result=[] if skipped else choice(str(label)), was_cancelled=skipped, **kw
    )
    return int(a.id)


def as_dict(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else obj.model_dump()


def task_ids_in(ls: LabelStudio, p: Project) -> list[str]:
    """Every curation task_id in the project, one entry per Label Studio task."""
    return [tid for tid, ids in ls.existing(p).items() for _ in ids]


# ---------------------------------------------------------------------------- no server needed


def test_protocol_and_registry() -> None:
    ls = ANNOTATORS.create("label_studio", {"url": "http://x", "token_env": "T", "chunk_size": 10})
    assert isinstance(ls, LabelStudio) and isinstance(ls, Annotator)
    assert ls.chunk_size == 10


def test_backoff_retries_then_gives_up() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Transient("HTTP 503")
        return "ok"

    b = Backoff(retries=4, base_s=1.0, max_s=8.0)
    assert b.call(flaky, "flaky", sleep=waits.append) == "ok"
    assert len(calls) == 3 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0
    with pytest.raises(Transient):
        Backoff(retries=2, base_s=0.0).call(
            lambda: (_ for _ in ()).throw(Transient("down")), "x", sleep=waits.append
        )
    assert Backoff(base_s=1.0).delay(0, retry_after=3.0) >= 3.0  # Retry-After is honoured


def test_missing_token_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ConnectorError, match=f"no token in \\${TOKEN_ENV}"):
        connector("http://127.0.0.1:9").push(project(tmp_path, "x"), make_tasks(1))


def test_server_down_is_retried_then_a_clear_error(tmp_path: Path) -> None:
    ls = connector(f"http://127.0.0.1:{free_port()}", retries=2)
    t0 = time.monotonic()
    with pytest.raises(ConnectorError, match=r"still failing after 2 retries.*is the server up"):
        ls.push(project(tmp_path, "down"), make_tasks(3))
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------------------- real server


def test_push_creates_project_config_predictions_and_priority_order(label_studio, tmp_path: Path) -> None:
    ls = connector(label_studio, chunk_size=7)
    p = project(tmp_path, "push-order")
    tasks = make_tasks(30)
    assert ls.push(p, tasks) == 30
    c = ls.client()
    pid = ls.project_id_for(p)
    proj = c.projects.get(id=pid)
    assert proj.title == "push-order"
    for label in LABELS:
        assert f'<Choice value="{label}"/>' in proj.label_config
    full = list(c.tasks.list(project=pid, fields="all", page_size=100))
    assert len(full) == 30
    by_ls_id = sorted(full, key=lambda t: t.id)
    # imported in the loop's priority order: Label Studio ids follow rank
    assert [t.data["rank"] for t in by_ls_id] == list(range(30))
    first = by_ls_id[0]
    assert first.data["task_id"] == "label:0" and first.data["round"] == 1
    assert first.data["strategy"] == "kcenter" and first.data["reason"].startswith("far from")
    assert first.data["score"] == pytest.approx(1.0)
    pred = as_dict(first.predictions[0])
    assert pred["score"] == pytest.approx(0.5) and pred["model_version"] == "curation"
    assert pred["result"][0]["value"]["choices"] == ["billing"]
    # the annotator's queue serves the most valuable task first
    nxt = httpx.get(
        f"{label_studio.url}/api/projects/{pid}/next/", headers={"Authorization": f"Token {TOKEN}"}
    )
    assert nxt.status_code == 200 and nxt.json()["data"]["rank"] == 0
    # the project id is remembered with the loop's state
    assert (p.state_dir / "label_studio.json").is_file()


def test_repush_creates_no_duplicates(label_studio, tmp_path: Path) -> None:
    ls = connector(label_studio, chunk_size=10)
    p = project(tmp_path, "repush")
    assert ls.push(p, make_tasks(25)) == 25
    assert ls.push(p, make_tasks(25)) == 0
    # a new process (fresh connector) finds the project and the tasks again
    again = connector(label_studio, chunk_size=10)
    assert again.push(p, make_tasks(40)) == 15
    # the same task_id twice in one table is one task
    assert again.push(p, pl.concat([make_tasks(3, start=100), make_tasks(3, start=100)])) == 3
    ids = task_ids_in(again, p)
    assert len(ids) == 43 and len(set(ids)) == 43


def test_pull_only_what_changed_with_skips(label_studio, tmp_path: Path) -> None:
    ls = connector(label_studio)
    p = project(tmp_path, "pull")
    ls.push(p, make_tasks(12))
    ex = {k: v[0] for k, v in ls.existing(p).items()}
    empty = ls.pull(p)
    assert empty.annotations.is_empty() and empty.cursor is not None
    a1 = annotate(ls, ex["label:0"], "card")
    annotate(ls, ex["label:1"], "billing")
    annotate(ls, ex["label:2"], None, skipped=True)
    first = ls.pull(p, since=empty.cursor)
    got = {r["task_id"]: r for r in first.annotations.iter_rows(named=True)}
    assert set(got) == {"label:0", "label:1", "label:2"}
    assert got["label:0"]["label"] == "card" and got["label:0"]["status"] == "done"
    assert got["label:0"]["annotator"] == "admin@example.com" and got["label:0"]["id"] == "0"
    assert got["label:2"]["status"] == "skipped" and got["label:2"]["label"] is None
    assert first.cursor > empty.cursor
    # nothing changed: nothing pulled, the cursor stays
    same = ls.pull(p, since=first.cursor)
    assert same.annotations.is_empty() and same.cursor == first.cursor
    # one new annotation and one update: exactly those two tasks come back
    annotate(ls, ex["label:5"], "transfer")
    ls.client().annotations.update(id=a1, result=choice("transfer"))
    second = ls.pull(p, since=first.cursor)
    assert sorted(second.annotations["task_id"].to_list()) == ["label:0", "label:5"]
    assert second.annotations.filter(pl.col("task_id") == "label:0")["label"].item() == "transfer"
    # from the start, everything
    assert len(ls.pull(p).annotations) == 4


def test_multi_annotator_reconciliation(label_studio, tmp_path: Path) -> None:
    ls = connector(label_studio, overlap=3)
    p = project(tmp_path, "overlap")
    tasks = make_tasks(12)
    ls.push(p, tasks)
    assert ls.client().projects.get(id=ls.project_id_for(p)).maximum_annotations == 3
    ex = {k: v[0] for k, v in ls.existing(p).items()}
    ann = [user(ls, f"annotator{i}@example.com") for i in range(3)]
    # tasks 0-7: two of three agree on the truth; tasks 8-9: unanimous;
    # task 10: a tie (one skip, two different labels); task 11: all skipped
    for i in range(8):
        truth = LABELS[i % 3]
        annotate(ls, ex[f"label:{i}"], truth, ann[0])
        annotate(ls, ex[f"label:{i}"], truth, ann[1])
        annotate(ls, ex[f"label:{i}"], LABELS[(i + 1) % 3], ann[2])
    for i in (8, 9):
        for a in ann:
            annotate(ls, ex[f"label:{i}"], "card", a)
    annotate(ls, ex["label:10"], "card", ann[0])
    annotate(ls, ex["label:10"], "billing", ann[1])
    annotate(ls, ex["label:10"], None, ann[2], skipped=True)
    for a in ann[:2]:
        annotate(ls, ex["label:11"], None, a, skipped=True)
    pulled = ls.pull(p)
    assert len(pulled.annotations) == 8 * 3 + 2 * 3 + 3 + 2

    majority = reconcile(pulled.annotations, LABELS, min_overlap=1000)
    assert majority.method == "majority"
    lab = {r["task_id"]: r for r in majority.labels.iter_rows(named=True)}
    assert lab["label:0"]["label"] == "billing" and lab["label:0"]["status"] == "majority"
    assert lab["label:0"]["agreement"] == pytest.approx(2 / 3)
    assert lab["label:8"]["status"] == "agreed"
    assert lab["label:10"]["status"] == "tie" and lab["label:10"]["label"] is None
    assert lab["label:10"]["n_skipped"] == 1
    assert lab["label:11"]["status"] == "skipped" and lab["label:11"]["label"] is None
    assert majority.summary() == {
        "tasks": 12,
        "agreed": 2,
        "majority": 8,
        "tie": 1,
        "skipped": 1,
        "labeled": 10,
        "method": "majority",
    }
    assert set(majority.disagreements["task_id"]) == {f"label:{i}" for i in range(8)} | {"label:10"}

    crowd = reconcile(pulled.annotations, LABELS, tasks=tasks, min_overlap=10)
    assert crowd.method == "crowdlab"
    clab = {r["task_id"]: r for r in crowd.labels.iter_rows(named=True)}
    assert all(clab[f"label:{i}"]["label"] == LABELS[i % 3] for i in range(8))
    assert clab["label:10"]["status"] == "tie" and clab["label:10"]["label"] in ("card", "billing")
    assert clab["label:0"]["quality"] is not None
    q = dict(crowd.annotators.select("annotator", "quality").iter_rows())
    # the annotator who always disagreed is rated below the two who agree
    assert q["annotator2@example.com"] < min(q["annotator0@example.com"], q["annotator1@example.com"])


def test_review_tasks_show_given_and_suggested_and_give_verdicts(label_studio, tmp_path: Path) -> None:
    ls = connector(label_studio)
    p = project(tmp_path, "review")
    reviews = make_tasks(3, kind="review")
    assert ls.push(p, pl.concat([make_tasks(2), reviews])) == 5
    c = ls.client()
    pid = ls.project_id_for(p)
    full = {t.data["task_id"]: t for t in c.tasks.list(project=pid, fields="all", page_size=100)}
    r0 = full["review:0"]
    assert r0.data["given_label"] == "card" and r0.data["prediction"] == "billing"
    assert r0.data["review_note"] == (
        'Review: the given label is "card"; the model suggests "billing" (50%). Choose the correct label.'
    )
    assert as_dict(r0.predictions[0])["result"][0]["value"]["choices"] == ["billing"]
    assert full["label:0"].data["review_note"] == ""
    assert "$review_note" in c.projects.get(id=pid).label_config
    annotate(ls, r0.id, "card")  # the given label stands
    annotate(ls, full["review:1"].id, "card")  # corrected, as the model suggested
    annotate(ls, full["review:2"].id, None, skipped=True)
    rec = reconcile(ls.pull(p).annotations, LABELS)
    verdicts = {r["task_id"]: r for r in review_verdicts(rec.labels, reviews).iter_rows(named=True)}
    assert verdicts["review:0"]["verdict"] == "confirmed" and verdicts["review:0"]["label"] == "card"
    assert verdicts["review:1"]["verdict"] == "corrected" and verdicts["review:1"]["label"] == "card"
    assert verdicts["review:1"]["given_label"] == "transfer" and verdicts["review:1"]["suggested"] == "card"
    assert verdicts["review:2"]["verdict"] == "unresolved"


def test_webhook_receiver_gets_real_webhooks_and_starts_a_round(label_studio, tmp_path: Path) -> None:
    ls = connector(label_studio)
    p = project(tmp_path, "webhooks")
    ls.push(p, make_tasks(6))
    ex = {k: v[0] for k, v in ls.existing(p).items()}
    state = {"cursor": ls.pull(p).cursor, "round": 1}
    rounds: list[int] = []

    def count_new() -> int:
        pulled = ls.pull(p, since=state["cursor"])
        return int((pulled.annotations["status"] == "done").sum())

    def start_round() -> None:  # what a round does with the queue: pull for good, push the next batch
        state["cursor"] = ls.pull(p, since=state["cursor"]).cursor
        state["round"] += 1
        ls.push(p, make_tasks(6, start=100 * state["round"], round=state["round"]))
        rounds.append(state["round"])

    secret = "s3cret-" + "x" * 24
    receiver = WebhookReceiver(
        secret, count_new, start_round, threshold=3, port=0, project_id=ls.project_id_for(p)
    )
    receiver.start()
    try:
        hook = ls.ensure_webhook(p, receiver.url, {SECRET_HEADER: secret})
        assert ls.ensure_webhook(p, receiver.url, {SECRET_HEADER: secret}) == hook  # reused
        who = user(ls, "hooked@example.com")

        def wait(cond: Any, timeout: float = 60.0) -> None:
            t0 = time.monotonic()
            while not cond():
                assert time.monotonic() - t0 < timeout, receiver.stats
                time.sleep(0.2)

        a = annotate(ls, ex["label:0"], "card", who)
        annotate(ls, ex["label:1"], "billing", who)
        wait(lambda: receiver.stats.pulls >= 1 and receiver.stats.pending == 2)
        assert rounds == [] and receiver.stats.events >= 2
        ls.client().annotations.update(id=a, result=choice("transfer"))  # an update is not new
        wait(lambda: receiver.stats.actions.get("ANNOTATION_UPDATED", 0) == 1 and receiver.stats.pending == 2)
        assert rounds == []
        annotate(ls, ex["label:2"], "card", who)
        wait(lambda: rounds == [2])
        assert receiver.stats.rounds == 1 and receiver.stats.last_error is None
        assert "label:200" in ls.existing(p)  # the next round's tasks are in the queue
        # an event without the shared secret is refused and starts nothing
        bad = httpx.post(
            receiver.url, json={"action": "ANNOTATION_CREATED"}, headers={SECRET_HEADER: "wrong"}
        )
        assert bad.status_code == 401 and receiver.stats.rejected == 1
        health = httpx.get(receiver.url.replace("/webhook", "/health")).json()
        assert health["rounds"] == 1 and health["status"] == "UP"
    finally:
        receiver.stop()


def test_bad_token_is_a_clear_error(label_studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-a-valid-token")
    with pytest.raises(ConnectorError, match=f"refused the token in \\${TOKEN_ENV}"):
        connector(label_studio).push(project(tmp_path, "badtoken"), make_tasks(1))


def test_deleted_project_is_a_clear_error(label_studio, tmp_path: Path) -> None:
    ls = connector(label_studio)
    p = project(tmp_path, "deleted")
    ls.push(p, make_tasks(3))
    ls.client().projects.delete(id=ls.project_id_for(p))
    for fresh in (ls, connector(label_studio)):  # the same process, and a later one
        with pytest.raises(ConnectorError, match=r"was deleted.*label_studio.json"):
            fresh.push(p, make_tasks(4))
        with pytest.raises(ConnectorError, match="was deleted"):
            fresh.pull(p)


@pytest.mark.parametrize("fault", ["503", "429", "reset", "drop-answer"])
def test_faults_on_the_wire_are_retried_without_duplicates(label_studio, tmp_path: Path, fault: str) -> None:
    def rule(method: str, path: str, n: int) -> str:
        # every other import fails; every fifth other request too
        if "/import" in path:
            rule.imports += 1  # type: ignore[attr-defined]
            return fault if rule.imports % 2 == 1 else "pass"  # type: ignore[attr-defined]
        return fault if n % 5 == 4 and fault != "drop-answer" else "pass"

    rule.imports = 0  # type: ignore[attr-defined]
    with FaultProxy(label_studio.url, rule) as proxy:
        ls = connector(proxy.url, chunk_size=20)
        p = project(tmp_path, f"fault-{fault}")
        assert ls.push(p, make_tasks(100)) == 100
    assert any(f == fault for _, path, f in proxy.log if "/import" in path)
    ids = task_ids_in(connector(label_studio), p)
    assert len(ids) == 100 and len(set(ids)) == 100


@pytest.mark.slow
def test_frozen_server_mid_push_times_out_and_resumes(
    label_studio, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="curation")
    ls = connector(label_studio, chunk_size=50, timeout_s=3.0, retries=30, backoff_s=0.5, max_backoff_s=2.0)
    p = project(tmp_path, "frozen")
    ls.project_id_for(p)
    result: dict[str, Any] = {}
    watcher = connector(label_studio)

    def push() -> None:
        try:
            result["n"] = ls.push(p, make_tasks(1000))
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=push)
    t.start()
    try:
        t0 = time.monotonic()
        while len(watcher.existing(p)) < 200:
            assert time.monotonic() - t0 < 120 and t.is_alive(), result
            time.sleep(0.2)
        assert t.is_alive()  # frozen in the middle of the push
        label_studio.pause()
        time.sleep(8)  # longer than the request timeout: the push sees timeouts
    finally:
        label_studio.resume()
    t.join(300)
    assert "error" not in result, result.get("error")
    assert result["n"] == 1000
    assert any("timed out" in r.getMessage() for r in caplog.records)
    ids = task_ids_in(watcher, p)
    assert len(ids) == 1000 and len(set(ids)) == 1000


@pytest.mark.slow
def test_killed_server_mid_push_of_2000_then_back_holds_exactly_2000(
    label_studio, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="curation")
    ls = connector(label_studio, chunk_size=100, timeout_s=20.0, retries=40, backoff_s=0.5, max_backoff_s=5.0)
    p = project(tmp_path, "killed")
    ls.project_id_for(p)
    watcher = connector(label_studio, retries=0)
    result: dict[str, Any] = {}

    def push() -> None:
        try:
            result["n"] = ls.push(p, make_tasks(2000))
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=push)
    t.start()
    t0 = time.monotonic()
    while len(watcher.existing(p)) < 500:
        assert time.monotonic() - t0 < 180 and t.is_alive(), result
        time.sleep(0.2)
    label_studio.kill()
    assert not label_studio.healthy()  # really down
    time.sleep(3)
    assert t.is_alive() and "error" not in result  # the push is waiting, retrying
    label_studio.start()
    t.join(600)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    assert result["n"] == 2000
    assert any("Connection refused" in r.getMessage() for r in caplog.records)  # it did retry
    ids = task_ids_in(connector(label_studio), p)
    assert len(ids) == 2000 and len(set(ids)) == 2000  # none lost, none twice
    assert ls.push(p, make_tasks(2000)) == 0


def test_a_later_push_removes_duplicates_left_by_a_lost_answer(label_studio, tmp_path: Path) -> None:
    """An import that timed out but was committed late, then an outage that used up the
    retries, leaves copies; the next push, with nothing missing, still ends with one task per
    id, and keeps the copy an annotator worked on."""
    ls, p = connector(label_studio), project(tmp_path, "late-import")
    tasks = make_tasks(6)
    assert ls.push(p, tasks) == 6
    pid = ls.project_id_for(p)
    late = [to_ls_task(r) for r in tasks.head(3).to_dicts()]  # the committed-late import
    ls.client().projects.import_tasks(id=pid, request=late, commit_to_project=True)
    copies = ls.existing(p)
    assert sum(len(v) for v in copies.values()) == 9
    worked_on = max(copies["label:1"])  # an annotator answers the later copy of task 1
    annotate(ls, worked_on, "card")
    assert ls.push(p, tasks) == 0  # nothing missing
    after = ls.existing(p)
    assert sorted(after) == sorted(tasks["task_id"].to_list())
    assert all(len(v) == 1 for v in after.values())
    assert after["label:1"] == [worked_on]
