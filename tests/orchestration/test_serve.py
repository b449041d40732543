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


def raw(r: WebhookReceiver, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the receiver; what it answers (b"" if it closed without a word)."""
    import socket

    host, port = r.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_secret_is_checked_before_the_body_is_read_and_the_body_is_capped() -> None:
    r = WebhookReceiver(SECRET, lambda: 0, lambda: None, port=0, max_body_bytes=1000)
    r.start()
    try:
        huge = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n{"
        assert raw(r, huge).startswith(b"HTTP/1.0 401")  # answered at once: the body was never read
        with_secret = huge.replace(b"\r\n\r\n", f"\r\n{SECRET_HEADER}: {SECRET}\r\n\r\n".encode())
        assert raw(r, with_secret).startswith(b"HTTP/1.0 413")
        headers = {SECRET_HEADER: SECRET}
        assert httpx.post(r.url, content=b"[1, 2]", headers=headers).status_code == 400
        assert httpx.post(r.url, content=b'{"action": "\xff\xfe"}', headers=headers).status_code == 400
        assert httpx.post(r.url, content=b"{not json", headers=headers).status_code == 400
        bad_length = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
        assert raw(r, bad_length + f"{SECRET_HEADER}: {SECRET}\r\n\r\n".encode()).startswith(b"HTTP/1.0 400")
        assert post(r, {"action": "ANNOTATION_CREATED"}).status_code == 200  # still serving
        assert r.stats.rejected == 1
    finally:
        r.stop()


def test_stalled_clients_are_dropped_and_hold_no_more_than_the_connection_limit() -> None:
    import socket

    r = WebhookReceiver(SECRET, lambda: 0, lambda: None, port=0, client_timeout_s=1.0, max_connections=16)
    r.start()
    host, port = r.url.split("//")[1].split("/")[0].split(":")
    before = threading.active_count()
    stalled = [socket.create_connection((host, int(port))) for _ in range(200)]
    try:
        for s in stalled:
            s.sendall(b"POST /webhook HTTP/1.1\r\n")  # and then nothing
        time.sleep(0.5)
        assert threading.active_count() <= before + 16
        wait(lambda: threading.active_count() <= before + 1, timeout=10)  # all timed out
        assert post(r, {"action": "ANNOTATION_CREATED"}).status_code == 200
    finally:
        for s in stalled:
            s.close()
        r.stop()


def test_a_short_secret_is_refused() -> None:
    import pytest

    from curation.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 16"):
        WebhookReceiver("short", lambda: 0, lambda: None, port=0)


def test_start_training_starts_a_round_with_one_new_answer_and_basic_auth_carries_the_secret() -> None:
    import base64

    new = {"n": 0}
    rounds: list[int] = []
    r = WebhookReceiver(SECRET, lambda: new["n"], lambda: rounds.append(new["n"]), threshold=50, port=0)
    r.start()
    try:
        auth = {"Authorization": "Basic " + base64.b64encode(f"curation:{SECRET}".encode()).decode()}
        wrong = {"Authorization": "Basic " + base64.b64encode(b"curation:nope").decode()}
        train = {"action": "START_TRAINING", "project": {"id": 3}}
        assert httpx.post(r.url, json=train, headers=wrong).status_code == 401
        # "Start training" with nothing new: a check, no round
        assert httpx.post(r.url, json=train, headers=auth).json() == {"ok": True, "queued": True}
        wait(lambda: r.stats.pulls == 1)
        time.sleep(0.2)
        assert rounds == [] and r.stats.trainings == 1
        # one new answer: an annotation event waits for the threshold, "Start training" does not
        new["n"] = 1
        post(r, {"action": "ANNOTATION_CREATED"})
        wait(lambda: r.stats.pulls == 2)
        time.sleep(0.2)
        assert rounds == []
        httpx.post(r.url, json=train, headers=auth)
        wait(lambda: rounds == [1])
        post(r, {"action": "ANNOTATION_CREATED"})  # and the threshold holds again afterwards
        wait(lambda: r.stats.pulls == 4)
        time.sleep(0.2)
        assert rounds == [1] and r.stats.rejected == 1
        # without a model, the model's routes are not served
        assert httpx.post(r.url.replace("/webhook", "/predict"), json={}, headers=auth).status_code == 404
        assert httpx.post(r.url.replace("/webhook", "/train"), json={}, headers=auth).status_code == 404
    finally:
        r.stop()
