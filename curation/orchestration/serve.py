"""``curation serve``: a webhook receiver that keeps the annotator queue full.

Label Studio sends an event for every annotation created, updated or deleted. The
receiver checks the shared secret (a header Label Studio sends with each event), answers
at once, and in a worker thread pulls the annotations made since the last round; when at
least ``threshold`` new finished annotations have arrived, it starts the next round (which
pulls them for good and pushes the next selection), so annotators never wait on an empty
queue. Events that arrive while a pull or a round runs are coalesced into one more pull.

The same server speaks Label Studio's ML-backend protocol (``/health``, ``/setup``,
``/predict``, and "Start training" as a ``START_TRAINING`` event or ``POST /train``), so a
project connected to it shows the loop's round model's predictions on any task an annotator
opens (:mod:`curation.orchestration.ml_backend`); "Start training" starts a round as soon as
one new answer is in. Its requests carry the shared secret as the password of HTTP basic
auth (Label Studio's "Basic Authentication" of a connected model).

Only the standard library serves HTTP (:mod:`http.server`), on a thread per request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from curation.connectors.label_studio import LabelStudio
from curation.errors import ConfigError, ConnectorError
from curation.load import load_loop
from curation.orchestration.adapters import annotator_for
from curation.orchestration.ml_backend import ROUTES, ModelBackend
from curation.orchestration.round import run_round
from curation.orchestration.state import last_round, store_for

log = logging.getLogger(__name__)

#: The header Label Studio sends the shared secret in.
SECRET_HEADER = "X-Curation-Secret"
#: The events that count: annotation created, updated, deleted.
ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
#: The event Label Studio's "Start training" sends to a connected model (1.23; older: POST /train).
TRAIN_ACTION = "START_TRAINING"


#: The shortest shared secret the receiver accepts.
MIN_SECRET = 16


class _Server(ThreadingHTTPServer):
    """A thread per request, at most ``limit`` at once (more get 503), a long listen queue, and
    errors logged (never a traceback on the terminal)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(limit)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("serve: a request from %s failed", client_address, exc_info=True)


@dataclass
class ServeStats:
    """What the receiver has done, as ``GET /health`` shows it."""

    events: int = 0
    rejected: int = 0
    ignored: int = 0
    pulls: int = 0
    pending: int = 0
    rounds: int = 0
    trainings: int = 0
    last_error: str | None = None
    actions: dict[str, int] = field(default_factory=dict)


class WebhookReceiver:
    """Receive Label Studio webhooks; pull, and start a round past a threshold.

    Parameters
    ----------
    secret : str
        The shared secret; an event without it in ``SECRET_HEADER`` gets 401 and is dropped.
    count_new : callable
        Pulls and returns how many finished annotations arrived since the last round.
    start_round : callable
        Starts (and runs to the end) the next round.
    threshold : int
        Start a round when ``count_new()`` reaches this many.
    host, port : str, int
        Where to listen; port 0 picks a free one (see :attr:`url`).
    path : str
        The URL path events are posted to.
    project_id : int, optional
        Ignore events about other Label Studio projects.
    max_body_bytes : int
        A larger event is answered 413 without being read.
    client_timeout_s : float
        A client that sends nothing for this long is dropped.
    max_connections : int
        Requests served at once; more are refused (503) at once, so stalled clients cannot
        hold a thread each.
    backend : ModelBackend, optional
        Answer Label Studio's ML-backend requests (``/setup``, ``/predict``) with it.
    max_ml_body_bytes : int
        The cap of an ML-backend request (a batch of tasks to predict), read only after
        the secret was checked.

    Examples
    --------
    >>> r = WebhookReceiver("a-long-shared-secret", count_new=lambda: 0, start_round=lambda: None, port=0)
    >>> r.start(); r.url.startswith("http://127.0.0.1:"); r.stop()
    True
    """

    def __init__(
        self,
        secret: str,
        count_new: Callable[[], int],
        start_round: Callable[[], Any],
        threshold: int = 50,
        host: str = "127.0.0.1",
        port: int = 8765,
        path: str = "/webhook",
        project_id: int | None = None,
        max_body_bytes: int = 1_000_000,
        client_timeout_s: float = 10.0,
        max_connections: int = 64,
        backend: ModelBackend | None = None,
        max_ml_body_bytes: int = 64_000_000,
    ) -> None:
        if len(secret) < MIN_SECRET:
            raise ConfigError(
                f"the shared secret has {len(secret)} characters; use at least {MIN_SECRET} "
                f"(for example: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        self.secret = secret
        self.max_body_bytes = max_body_bytes
        self.client_timeout_s = client_timeout_s
        self.max_connections = max_connections
        self.count_new = count_new
        self.start_round = start_round
        self.threshold = threshold
        self.host = host
        self.port = port
        self.path = path
        self.project_id = project_id
        self.backend = backend
        self.max_ml_body_bytes = max_ml_body_bytes
        self.stats = ServeStats()
        self._train = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        """The URL to connect the model at in Label Studio (with the port actually bound)."""
        port = self._server.server_address[1] if self._server else self.port
        return f"http://{self.host}:{port}"

    @property
    def url(self) -> str:
        """The URL to give Label Studio's webhook (with the port actually bound)."""
        return f"{self.base_url}{self.path}"

    # -------------------------------------------------------------- HTTP side

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = receiver.client_timeout_s  # a stalled client is dropped, its thread freed

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("serve: " + format, *args)

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(*receiver.get(self.path))

            def do_POST(self) -> None:
                code, body = receiver.respond(self.path, self.headers, self.rfile, self.client_address[0])
                self._reply(code, body)

        return Handler

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """The answer to one GET: ``/health`` (counts, the model), ``/versions`` (the model)."""
        route = path.split("?")[0]
        version = self.backend.version if self.backend is not None else None
        if route in ("/health", "/"):
            with self._lock:
                return 200, {
                    "status": "UP",
                    "model_class": "curation",
                    "model_version": version,
                    **self.stats.__dict__,
                }
        if route == "/versions" and self.backend is not None:
            return 200, {"versions": [version] if version else []}
        return 404, {"error": "not found"}

    def authorized(self, headers: Any) -> bool:
        """Whether a request carries the secret: in ``SECRET_HEADER`` (webhooks) or as the
        password of HTTP basic auth (a connected model)."""
        given = headers.get(SECRET_HEADER) or ""
        auth = headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):  # a malformed one: no secret
                given = given or base64.b64decode(auth[6:], validate=True).decode().partition(":")[2]
        return hmac.compare_digest(given.encode(), self.secret.encode())

    def respond(self, path: str, headers: Any, body: Any, client: str) -> tuple[int, dict[str, Any]]:
        """The answer to one POST: the path and the secret are checked before the body is read;
        the body is capped at ``max_body_bytes`` (``max_ml_body_bytes`` for the model) and must
        be one UTF-8 JSON object."""
        route = path.split("?")[0]
        ml = self.backend is not None and route in (*ROUTES, "/train")
        if route != self.path and not ml:
            return 404, {"error": "not found"}
        if not self.authorized(headers):
            with self._lock:
                self.stats.rejected += 1
            log.warning("serve: rejected a request without the shared secret from %s", client)
            return 401, {"error": f"missing or wrong {SECRET_HEADER} (or basic-auth password)"}
        cap = self.max_ml_body_bytes if ml else self.max_body_bytes
        try:
            size = int(headers.get("Content-Length") or 0)
        except ValueError:
            return 400, {"error": "Content-Length is not a number"}
        if size < 0 or size > cap:
            return 413, {"error": f"body of {size} bytes; at most {cap}"}
        try:
            event = json.loads(body.read(size).decode("utf-8")) if size else {}
        except (UnicodeDecodeError, json.JSONDecodeError, OSError):
            return 400, {"error": "expected a UTF-8 JSON object"}
        if not isinstance(event, dict):
            return 400, {"error": f"expected a JSON object, found a {type(event).__name__}"}
        if route == "/train":
            return 200, {"ok": True, "queued": self.train()}
        if ml and self.backend is not None:
            return self.backend.respond(route, event)
        return 200, {"ok": True, "queued": self.accept(event)}

    def train(self) -> bool:
        """Label Studio's "Start training": start a round as soon as one new answer is in."""
        with self._lock:
            self.stats.trainings += 1
            self._train = True
        self._wake.set()
        return True

    def accept(self, event: dict[str, Any]) -> bool:
        """Count one event; wake the worker if it is an annotation event of our project."""
        action = str(event.get("action") or "")
        if action == TRAIN_ACTION:
            return self.train()
        project = event.get("project")
        pid = project.get("id") if isinstance(project, dict) else None
        with self._lock:
            self.stats.actions[action] = self.stats.actions.get(action, 0) + 1
            ours = action in ACTIONS and (self.project_id is None or pid is None or pid == self.project_id)
            if ours:
                self.stats.events += 1
            else:
                self.stats.ignored += 1
        if ours:
            self._wake.set()
        return ours

    # -------------------------------------------------------------- worker

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.5):
                continue
            self._wake.clear()
            try:
                self.check()
            except Exception as e:  # a failed pull or round must not stop the receiver
                log.exception("serve: pull or round failed")
                with self._lock:
                    self.stats.last_error = f"{type(e).__name__}: {e}"

    def check(self) -> bool:
        """Pull; start a round if ``threshold`` new annotations are in (one after "Start
        training"). Return whether one ran."""
        n = self.count_new()
        with self._lock:
            self.stats.pulls += 1
            self.stats.pending = n
            need = 1 if self._train else self.threshold
            self._train = False
        if n < need:
            log.info("serve: %d new annotations, %d needed for a round", n, need)
            return False
        log.info("serve: %d new annotations: starting a round", n)
        self.start_round()
        with self._lock:
            self.stats.rounds += 1
            self.stats.pending = 0
            self.stats.last_error = None
        return True  # events that arrived during the round have set the wake flag again

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Listen and work in background threads."""
        self._server = _Server((self.host, self.port), self._handler(), self.max_connections)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="curation-serve-http", daemon=True),
            threading.Thread(target=self._work, name="curation-serve-worker", daemon=True),
        ]
        for t in self._threads:
            t.start()
        log.info("serve: listening on %s", self.url)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening; wait for a running pull or round to end (up to ``timeout``)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def serve_forever(self) -> None:
        """Start, and block until interrupted (Ctrl-C)."""
        self.start()
        try:
            self._stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


def serve_loop(
    loop: str | Path,
    *,
    threshold: int = 50,
    host: str = "127.0.0.1",
    port: int = 8765,
    secret_env: str = "CURATION_WEBHOOK_SECRET",
    public_url: str | None = None,
    register: bool = True,
    model: bool = True,
) -> WebhookReceiver:
    """A receiver for the loop file ``loop``, wired to its Label Studio project and to
    :func:`curation.orchestration.round.run_round` (not started: call ``start`` or ``serve_forever``).

    Parameters
    ----------
    loop : str or Path
        The loop file; its connector must be ``label_studio``.
    threshold : int
        New finished annotations that start a round.
    host, port : str, int
        Where to listen.
    secret_env : str
        The environment variable holding the shared secret.
    public_url : str, optional
        The URL Label Studio reaches the receiver at (default ``http://host:port/webhook``).
    register : bool
        Register (or update) the project's webhook in Label Studio.
    model : bool
        Also answer as Label Studio's ML backend (connect the model at ``http://host:port``):
        the round model is fitted now and again after every round.
    """
    secret = os.environ.get(secret_env, "")
    if not secret:
        raise ConfigError(
            f"set ${secret_env} to a shared secret for Label Studio's webhooks (any long random string)"
        )
    cfg = load_loop(loop)
    annotator, project = annotator_for(cfg, [])
    if not isinstance(annotator, LabelStudio):
        raise ConfigError(
            f"curation serve needs the label_studio connector, found {annotator.name!r}",
            field="connector",
            source=str(loop),
        )
    try:
        pid = annotator.project_id_for(project)
    except ConnectorError as e:
        raise ConnectorError(
            f"{e} (curation serve starts from a loop that has run at least one round)"
        ) from e
    store = store_for(cfg)

    def count_new() -> int:
        """Finished annotations since the cursor the last round left (its manifest's state)."""
        _, state = last_round(store, cfg.name)
        pulled = annotator.pull(project, since=state.get("cursor"))
        return int((pulled.annotations["status"] == "done").sum())

    backend = ModelBackend(cfg) if model else None  # its own store: it reads from other threads
    if backend is not None:
        backend.refit()

    def start_round() -> Any:
        now = load_loop(loop)
        result = run_round(now)
        if backend is not None:
            backend.refit(now)
        return result

    receiver = WebhookReceiver(
        secret,
        count_new,
        start_round,
        threshold=threshold,
        host=host,
        port=port,
        project_id=pid,
        backend=backend,
    )
    if register:
        annotator.ensure_webhook(
            project, public_url or f"http://{host}:{port}{receiver.path}", {SECRET_HEADER: secret}
        )
    return receiver
