"""Shared fixtures: paths to the real data, a session-wide local Ray, a real Label Studio.

``make test`` runs the suite on two pytest-xdist workers (``-n 2 --dist loadgroup``); the tests
that share an expensive fixture run on one worker (see :func:`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.label_studio_server import LabelStudioServer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``: the real public data sets (read-only)."""
    assert (DATA / "banking77_train.parquet").exists(), f"missing shared data in {DATA}"
    return DATA


@pytest.fixture(scope="session", autouse=True)
def shared_embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One embedding cache for the whole session (``CURATION_CACHE_DIR``), shared by the xdist
    workers, so that the same real texts are embedded once, not once per test project.

    The tests of the cache itself (tests/steps/test_embed.py) unset it and use their own."""
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "embedding-cache"
    before = os.environ.get("CURATION_CACHE_DIR")
    os.environ["CURATION_CACHE_DIR"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("CURATION_CACHE_DIR", None)
    else:
        os.environ["CURATION_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the tests that need it (started once, shut down at the end)."""
    import ray

    from curation.support.engine import ensure_ray

    ensure_ray(None)
    yield
    ray.shutdown()


#: The Label Studio server of this process, once started (see :func:`label_studio`).
_SERVERS: dict[str, LabelStudioServer] = {}


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> LabelStudioServer:
    """A real Label Studio server for the whole test session (started once, about a minute).

    A pytest-xdist worker that runs out of tests tears its session fixtures down and sets them
    up again for the next ones; the server outlives that and stops when the session ends
    (:func:`pytest_sessionfinish`)."""
    server = _SERVERS.get("label_studio")
    if server is None or not server.healthy():
        server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"))
        server.start()
        _SERVERS["label_studio"] = server
    return server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the Label Studio server this process started."""
    for server in _SERVERS.values():
        server.stop()
    _SERVERS.clear()


#: Fixtures too costly to build on every worker: the tests that use one share a worker.
SHARED = {"label_studio": "label-studio", "reference": "fault-suite"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every test that uses a :data:`SHARED` fixture in that fixture's xdist group, so
    one worker starts one Label Studio server (about a minute) and computes one fault-suite
    reference, whatever the order the tests are handed out in."""
    for item in items:
        for fixture, group in SHARED.items():
            # a fixture asked for by name, or by the contract suites' parameter (``[label_studio]``)
            if fixture in getattr(item, "fixturenames", ()) or f"[{fixture}]" in item.nodeid:
                item.add_marker(pytest.mark.xdist_group(group))
                break
