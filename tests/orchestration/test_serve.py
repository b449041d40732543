"""The webhook receiver on its own: secret, routing, threshold, coalescing, failures.

(Real webhooks from a real Label Studio server: tests/test_label_studio.py.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from curation.orchestration.serve import SECRET_HEADER, WebhookReceiver

SECRET = "a-shared-secret-of-some-length"


def wait(cond: Any, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)


def post(r: WebhookReceiver, body: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    return httpx.post(r.url, json=body, headers=headers)


def test_secret_threshold_and_rounds() -> None:
    new = {"n": 0}
    rounds: list[int] = []

    def start_round() -> None:
        rounds.append(new["n"])
        new["n"] = 0

    r = WebhookReceiver(SECRET, lambda: new["n"], start_round, threshold=3, port=0, project_id=7)
    r.start()
    try:
        assert post(r, {"action": "ANNOTATION_CREATED"}, secret=None).status_code == 401
        assert post(r, {"action": "ANNOTATION_CREATED"}, secret="nope").status_code == 401
        assert httpx.post(r.url.replace("/webhook", "/other"), json={}).status_code == 404
        assert r.stats.rejected == 2 and r.stats.pulls == 0
        # another project's events, and events that are not about annotations, start nothing
        assert post(r, {"action": "ANNOTATION_CREATED", "project": {"id": 8}}).json()["queued"] is False
        assert post(r, {"action": "TASKS_CREATED", "project": {"id": 7}}).json()["queued"] is False
        for i in range(1, 4):
            new["n"] = i
            assert post(r, {"action": "ANNOTATION_CREATED", "project": {"id": 7}}).json()["queued"] is True
            wait(lambda i=i: r.stats.pending == i or rounds)
        wait(lambda: rounds == [3])
        assert r.stats.rounds == 1 and r.stats.events == 3 and r.stats.ignored == 2
        health = httpx.get(r.url.replace("/webhook", "/health")).json()
        assert health["rounds"] == 1 and health["actions"]["TASKS_CREATED"] == 1
    finally:
        r.stop()


def test_events_during_a_round_are_coalesced_and_failures_reported() -> None:
    gate = threading.Event()
    calls = {"count": 0, "rounds": 0}

    def count_new() -> int:
        calls["count"] += 1
        if calls["count"] == 1:
            raise RuntimeError("Label Studio is down")
        return 5

    def start_round() -> None:
        calls["rounds"] += 1
        gate.wait(10)

    r = WebhookReceiver(SECRET, count_new, start_round, threshold=5, port=0)
    r.start()
    try:
        post(r, {"action": "ANNOTATION_CREATED"})
        wait(lambda: r.stats.last_error is not None)
        assert "Label Studio is down" in r.stats.last_error
        post(r, {"action": "ANNOTATION_UPDATED"})  # the receiver still works after a failure
        wait(lambda: calls["rounds"] == 1)
        for _ in range(5):  # arrive while the round runs
            assert post(r, {"action": "ANNOTATIONS_DELETED"}).status_code == 200
        gate.set()
        wait(lambda: calls["rounds"] >= 2)
        time.sleep(0.3)
        # one round for the first burst, then the five events during it make one more check
        assert r.stats.last_error is None and calls == {"count": 3, "rounds": 2}
    finally:
        gate.set()
        r.stop()
