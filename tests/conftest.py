"""Shared fixtures: paths to the real data, a session-wide local Ray."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``: the real public data sets (read-only)."""
    assert (DATA / "banking77_train.parquet").exists(), f"missing shared data in {DATA}"
    return DATA


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the tests that need it (started once, shut down at the end)."""
    import ray

    from curation.engine import ensure_ray

    ensure_ray(None)
    yield
    ray.shutdown()
