"""lakefs:// URIs of the lakeFS store, through lakefs-spec: fsspec readers and Ray Data.

Against the lakeFS-compatible test server (or a real lakeFS, see test_versioning_contract).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curation.connectors.lakefs import LakeFSStore
from tests.support.lakefs_server import LakeFSTarget, lakefs_target
from tests.support.round_worker import labeled, run_round

TABLE = "data/labeled.parquet"


@pytest.fixture(scope="module")
def lakefs() -> Iterator[LakeFSTarget]:
    with lakefs_target() as target:
        yield target


@pytest.fixture
def store(lakefs: LakeFSTarget) -> Iterator[LakeFSStore]:
    repo = f"uris-{uuid.uuid4().hex[:10]}"
    seen = len(lakefs.server.contract_errors) if lakefs.server else 0
    yield LakeFSStore(
        repo,
        endpoint=lakefs.endpoint,
        access_key_id=lakefs.access_key_id,
        secret_access_key=lakefs.secret_access_key,
        storage_namespace=lakefs.namespace(repo),
    )
    if lakefs.server is None:
        lakefs.delete_repo(repo)
    else:
        assert lakefs.server.contract_errors[seen:] == []


def test_fsspec_reads_rounds_by_uri(store: LakeFSStore) -> None:
    run_round(store, 1)
    fs = store.filesystem()
    uri = store.uri("round-1", TABLE)
    assert uri == f"lakefs://{store.repository}/round-1/{TABLE}"
    assert fs.exists(uri) and not fs.exists(store.uri("round-1", "data/missing.parquet"))
    assert fs.ls(store.uri("round-1", "data/"), detail=False) == [f"{store.repository}/round-1/{TABLE}"]
    with fs.open(uri, "rb") as f:
        assert_frame_equal(pl.read_parquet(f), labeled(1))


@pytest.mark.slow
def test_ray_data_reads_and_writes_lakefs_uris(store: LakeFSStore, ray_local: None) -> None:
    import pyarrow.fs as pafs
    import ray

    run_round(store, 1)
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(store.filesystem()))
    ds = ray.data.read_parquet(store.uri("round-1", TABLE), filesystem=fs)
    assert_frame_equal(pl.from_pandas(ds.to_pandas()), labeled(1))

    store.begin(2)  # Ray writes into the round's branch; the commit makes it part of round 2
    ds.write_parquet(store.uri("round-2", "ray-out"), filesystem=fs)
    store.commit("round 2: written by Ray Data", {})
    written = [p for p in store.files("round-2") if p.startswith("ray-out/")]
    assert written and all(p.endswith(".parquet") for p in written)
    back = ray.data.read_parquet(store.uri("round-2", "ray-out"), filesystem=fs).to_pandas()
    assert_frame_equal(pl.from_pandas(back).sort("id"), labeled(1))
