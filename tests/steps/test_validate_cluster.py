"""The same validation job on a 2-node Ray cluster gives the same outputs as on local Ray."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import ray

from curation.config import ValidateConfig
from curation.steps.validate import read_outputs, validate_source
from curation.support.engine import ensure_ray
from tests.steps.test_validate import contract, make_data, write_parts
from tests.support.ray_cluster import two_node_ray


def run_job(src: Path, out: Path) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    report = validate_source(
        src,
        contract(),
        out,
        ValidateConfig(min_per_class=3, max_invalid_fraction=1.0),
        engine="ray",
        block_rows=256,
    )
    valid, quarantine = read_outputs(out)
    return report, valid, quarantine


@pytest.mark.slow
def test_two_node_cluster_matches_local_ray(tmp_path: Path) -> None:
    df, expected = make_data()
    write_parts(df, tmp_path / "in")
    if ray.is_initialized():  # another test's local Ray: this test starts its own
        ray.shutdown()
    ensure_ray(None)
    try:
        local = run_job(tmp_path / "in", tmp_path / "local")
    finally:
        ray.shutdown()
    with two_node_ray():
        remote = run_job(tmp_path / "in", tmp_path / "cluster")
    assert local[0]["engine"] == remote[0]["engine"] == "ray"
    assert {k: v for k, v in local[0].items() if k != "seconds"} == {
        k: v for k, v in remote[0].items() if k != "seconds"
    }
    assert local[1].equals(remote[1]) and local[2].equals(remote[2])
    assert len(remote[2]) == len(expected) and len(remote[1]) + len(remote[2]) == len(df)
