"""Reading inputs: formats, file/folder/glob, fsspec URIs, and errors that name the file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import fsspec
import polars as pl
import pytest

from curation.errors import ConfigError, DataError
from curation.support.data import (
    ROW_BITS,
    column_names,
    estimate_rows,
    list_files,
    plan_blocks,
    read_block,
    read_table,
)

TABLE = pl.DataFrame({"id": [1, 2, 3], "text": ["a", "b", "c"], "label": ["x", "y", None]})


def test_parquet_csv_and_jsonl_read_the_same(tmp_path: Path) -> None:
    TABLE.write_parquet(tmp_path / "t.parquet")
    TABLE.write_csv(tmp_path / "t.csv")
    TABLE.write_ndjson(tmp_path / "t.jsonl")
    for name in ("t.parquet", "t.csv", "t.jsonl"):
        assert read_table(tmp_path / name).equals(TABLE), name
        assert column_names(tmp_path / name) == TABLE.columns


def test_folder_and_glob_list_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    TABLE.head(1).write_parquet(tmp_path / "b.parquet")
    TABLE.tail(2).write_csv(tmp_path / "sub" / "c.csv")
    (tmp_path / "notes.txt").write_text("not data")
    assert [Path(f).name for f in list_files(tmp_path)] == ["b.parquet", "c.csv"]
    assert [Path(f).name for f in list_files(f"{tmp_path}/*.parquet")] == ["b.parquet"]
    assert read_table(tmp_path).sort("id").equals(TABLE)


def test_blocks_are_whole_row_groups_with_global_row_numbers(tmp_path: Path) -> None:
    big = pl.DataFrame({"id": range(1000)})
    big.write_parquet(tmp_path / "a.parquet", row_group_size=100)
    big.write_parquet(tmp_path / "b.parquet", row_group_size=100)
    blocks = plan_blocks(tmp_path, block_rows=250)
    assert [b.rows for b in blocks] == [300, 300, 300, 100] * 2
    assert [b.first_row for b in blocks[4:6]] == [1 << ROW_BITS, (1 << ROW_BITS) + 300]
    assert estimate_rows(blocks) == 2000
    got = pl.concat([read_block(b) for b in blocks])
    assert got.equals(pl.concat([big, big]))


def test_a_local_block_reads_as_the_same_block_through_fsspec(tmp_path: Path) -> None:
    """Local Parquet is read by polars, a URI through Arrow: the same rows, types and values."""
    df = pl.DataFrame(
        {
            "id": range(500),
            "text": [None if i % 7 == 0 else f"t{i}" for i in range(500)],
            "label": pl.Series([f"c{i % 3}" for i in range(500)], dtype=pl.Categorical),
            "at": pl.datetime_range(
                pl.datetime(2020, 1, 1), pl.datetime(2020, 1, 1, 8, 19), "1m", eager=True
            ).dt.replace_time_zone("UTC"),
            "tags": [[i, i + 1] if i % 5 else None for i in range(500)],
        }
    )
    path = tmp_path / "a.parquet"
    df.write_parquet(path, row_group_size=64)
    for local, uri in zip(plan_blocks(path, 150), plan_blocks(f"file://{path}", 150), strict=True):
        a, b = read_block(local), read_block(uri, columns=None)
        assert a.schema == b.schema and a.equals(b) and len(a) == local.rows
    assert pl.concat([read_block(b) for b in plan_blocks(path, 150)]).equals(df)
    assert read_block(plan_blocks(path, 150)[1], columns=["id"])["id"][0] == 192


def test_fsspec_uris_are_read_like_local_paths() -> None:
    fs = fsspec.filesystem("memory")
    with fs.open("/bucket/data/part-0.parquet", "wb") as f:
        TABLE.write_parquet(f)
    with fs.open("/bucket/data/part-1.csv", "wb") as f:
        TABLE.write_csv(f)
    try:
        files = list_files("memory://bucket/data/")
        assert all(f.startswith("memory://") for f in files)
        assert [f.rsplit("/", 1)[1] for f in files] == ["part-0.parquet", "part-1.csv"]
        assert len(read_table("memory://bucket/data/")) == 6
        assert len(read_table("memory://bucket/data/*.parquet")) == 3
    finally:
        fs.rm("/bucket", recursive=True)


def test_truncated_parquet_names_the_file(tmp_path: Path, data_dir: Path) -> None:
    data = (data_dir / "banking77_train.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    for fn in (read_table, plan_blocks):
        with pytest.raises(DataError, match="expected a complete") as e:
            fn(tmp_path / "cut.parquet")
        assert e.value.path == str(tmp_path / "cut.parquet")


def test_csv_in_another_encoding_names_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes("id,text,label\n1,ok,a\n2,caf\xe9 au lait,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 3: byte 0xe9 is not UTF-8; expected UTF-8") as e:
        read_table(tmp_path / "latin.csv")
    assert (e.value.path, e.value.column) == (str(tmp_path / "latin.csv"), "text")


def test_missing_files_and_unknown_types_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.parquet")
    (tmp_path / "t.xlsx").write_text("")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        list_files(tmp_path / "t.xlsx")
    with pytest.raises(DataError, match="no data files found"):
        list_files(f"{tmp_path}/*.parquet")


def test_remote_schemes_fail_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as without the s3 extra
    with pytest.raises(ConfigError, match=r"pip install 'curation\[s3\]'"):
        read_table("s3://bucket/x.parquet")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.lakectl.yaml, no LAKECTL_* variables
    for name in [k for k in os.environ if k.startswith("LAKECTL")]:
        monkeypatch.delenv(name)
    with pytest.raises(DataError, match=r"lakefs://.*check the credentials") as e:
        read_table("lakefs://repo/main/x.parquet")
    assert e.value.path == "lakefs://repo/main/x.parquet"
