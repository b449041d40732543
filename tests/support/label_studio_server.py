"""A real Label Studio server for tests and benchmarks, and a fault-injecting proxy.

The server runs from ``.venv-ls`` (its own virtual environment: its pins clash with ours;
``make test`` creates it) on a free port, with a temporary data folder and a known token.
It can be killed, paused (SIGSTOP) and brought back on the same port and data.

:class:`FaultProxy` sits between the connector and the real server and answers some
requests itself (503, 429, a reset connection) or forwards them and then drops the answer
(the server did the work, the client never hears): the faults a real network has.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LS_VENV = ROOT / ".venv-ls"
LS_BIN = LS_VENV / "bin" / "label-studio"
TOKEN = "curation-test-token-0123456789abcdef"
USER = "admin@example.com"
PASSWORD = "curation-test-password"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LabelStudioServer:
    """One Label Studio process: start, stop, kill, pause, resume, on a fixed port and data dir.

    Parameters
    ----------
    data_dir : Path
        ``LABEL_STUDIO_BASE_DATA_DIR`` (the SQLite database and uploads live there).
    port : int
        The port to listen on.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "label-studio.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_USERNAME": USER,
                "LABEL_STUDIO_PASSWORD": PASSWORD,
                "LABEL_STUDIO_USER_TOKEN": TOKEN,
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "SSRF_PROTECTION_ENABLED": "false",  # test server only: lets webhooks reach 127.0.0.1
                "ML_BLOCK_LOCAL_IP": "false",  # and a connected model (curation serve) on 127.0.0.1
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "PATH": f"{LS_VENV / 'bin'}:{os.environ.get('PATH', '')}",
            }
        )
        return env

    def start(self, timeout: float = 300.0) -> None:
        """Start the process and wait until ``/health`` answers."""
        if not LS_BIN.exists():
            pytest.fail(
                f"Label Studio is not installed at {LS_VENV}: the Label Studio tests need a real "
                f"server. Run `make test` (it creates .venv-ls), or: python3 -m venv .venv-ls && "
                f".venv-ls/bin/pip install label-studio==1.23.2",
                pytrace=False,
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the server process writes to it until stop)
        self.proc = subprocess.Popen(
            [str(LS_BIN), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.data_dir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.wait_up(timeout)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_up(self, timeout: float = 300.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(1.0)
        raise RuntimeError(f"Label Studio did not answer on {self.url} within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server and its children, as a crash would."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


#: What the proxy does with one request: pass it on, answer 503 or 429 itself, reset the
#: connection, or forward it and answer 502 instead of the server's answer.
Fault = str  # "pass" | "503" | "429" | "reset" | "drop-answer"


class FaultProxy:
    """An HTTP proxy to ``upstream`` that applies ``rule(method, path, n)`` to request ``n``.

    Examples
    --------
    ``FaultProxy(url, lambda m, p, n: "503" if n % 3 == 2 else "pass")`` fails every third
    request with 503.
    """

    def __init__(self, upstream: str, rule: Callable[[str, str, int], Fault]) -> None:
        self.upstream = upstream.rstrip("/")
        self.rule = rule
        self.counter = itertools.count()
        self.log: list[tuple[str, str, Fault]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _any(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                fault = proxy.rule(self.command, self.path, next(proxy.counter))
                proxy.log.append((self.command, self.path, fault))
                if fault == "503":
                    self._send(503, b'{"detail": "injected 503"}', {"Content-Type": "application/json"})
                    return
                if fault == "429":
                    self._send(
                        429,
                        b'{"detail": "injected 429"}',
                        {"Content-Type": "application/json", "Retry-After": "0"},
                    )
                    return
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
                }
                req = urllib.request.Request(
                    proxy.upstream + self.path, data=body, method=self.command, headers=headers
                )
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        code, data, rh = r.status, r.read(), dict(r.headers)
                except urllib.error.HTTPError as e:
                    code, data, rh = e.code, e.read(), dict(e.headers)
                if fault == "drop-answer":
                    self._send(502, b"<html>injected: answer lost</html>", {"Content-Type": "text/html"})
                    return
                keep = {
                    k: v
                    for k, v in rh.items()
                    if k.lower()
                    not in ("content-length", "connection", "transfer-encoding", "server", "date")
                }
                self._send(code, data, keep)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        return Handler
