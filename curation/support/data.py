"""Reading and writing tables: Parquet, CSV and JSON Lines; a file, a folder or a glob.

Sources are local paths or fsspec URIs: ``s3://bucket/prefix/`` (the ``s3`` extra,
s3fs) and ``lakefs://repo/ref/path`` (the ``lakefs`` extra, lakefs-spec). Large inputs
are read in blocks (:func:`plan_blocks`, :func:`read_block`) so no process holds the
whole table; small ones are read whole (:func:`read_table`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import ConfigError, DataError

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
EXTRAS = {"s3": "s3", "s3a": "s3", "lakefs": "lakefs"}
ROW_BITS = 40  # a block's first row number is file_index << ROW_BITS plus its offset in the file


@dataclass(frozen=True)
class Block:
    """A slice of one input file that one task reads: whole row groups or a whole file.

    Attributes
    ----------
    url : str
        The file, as a local path or an fsspec URI.
    file_index : int
        The file's position among the source's files (sorted by name).
    row_groups : tuple of int, optional
        The Parquet row groups in this block; ``None`` means the whole file.
    first_row : int
        The global row number of the block's first row (see :data:`ROW_BITS`).
    rows : int, optional
        How many rows the block holds, when known before reading.
    """

    url: str
    file_index: int
    row_groups: tuple[int, ...] | None
    first_row: int
    rows: int | None


def _filesystem(source: str) -> tuple[fsspec.AbstractFileSystem, str]:
    protocol = source.split("://", 1)[0] if "://" in source else "file"
    try:
        return fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as e:
        extra = EXTRAS.get(protocol)
        hint = f"pip install 'curation[{extra}]'" if extra else "use a local path, s3:// or lakefs://"
        raise ConfigError(f"cannot open {protocol}:// sources ({e}); {hint}", source=source) from e
    except Exception as e:  # credentials and endpoints: each client raises its own types
        raise DataError(
            f"cannot connect to {protocol}:// ({type(e).__name__}: {e}); check the "
            f"credentials and endpoint of this filesystem",
            path=source,
        ) from e


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if "file" in fs.protocol or "local" in fs.protocol else fs.unstrip_protocol(path)


def list_files(source: str | Path) -> list[str]:
    """The data files a source names: one file, every data file under a folder, or a glob.

    Parameters
    ----------
    source : str or Path
        A local path, folder or glob, or the same as an fsspec URI (``s3://``, ``lakefs://``).

    Returns
    -------
    list of str
        Local paths or full URIs, sorted.

    Raises
    ------
    DataError
        Nothing found, a file missing, or a file of an unsupported type.
    """
    s = str(source)
    fs, path = _filesystem(s)
    try:
        if any(c in path for c in "*?["):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if Path(p).suffix in FORMATS)
        elif fs.exists(path):
            found = [path]
        else:
            raise DataError("file not found; check the path", path=s)
    except OSError as e:
        raise DataError(f"cannot list files ({e})", path=s) from e
    if not found:
        raise DataError(f"no data files found (expected {', '.join(FORMATS)})", path=s)
    for f in found:
        if Path(f).suffix not in FORMATS:
            raise DataError(
                f"unsupported file type {Path(f).suffix!r}; expected one of {', '.join(FORMATS)}",
                path=_url(fs, f),
            )
    return [_url(fs, f) for f in found]


def _utf8_error(data: bytes, url: str, cause: Exception) -> DataError:
    """Where in a text file the first byte that is not UTF-8 sits: its line (and CSV column)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as u:
        line_no = data.count(b"\n", 0, u.start) + 1
        start = data.rfind(b"\n", 0, u.start) + 1
        header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", "replace")]), [])
        field = data[start : u.start].decode("utf-8", "replace").count(",")
        column = header[field] if field < len(header) and url.endswith(".csv") else None
        return DataError(
            f"line {line_no}: byte {data[u.start]:#04x} is not UTF-8; expected UTF-8 text, "
            f"re-save the file as UTF-8",
            path=url,
            column=column,
        )
    return DataError(f"cannot read the file: {_first_line(cause)}", path=url)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_text_file(url: str, fmt: str) -> pl.DataFrame:
    with fsspec.open(url, "rb") as f:
        data = f.read()
    if not data.strip():
        raise DataError(
            f"the file is empty; expected {'a header line and rows' if fmt == 'csv' else 'one JSON object a line'}",
            path=url,
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(data, url, e) from e
    if fmt == "csv":
        check_csv(data, url)
    try:
        df = pl.read_csv(io.BytesIO(data)) if fmt == "csv" else pl.read_ndjson(io.BytesIO(data))
    except pl.exceptions.PolarsError as e:
        raise (_csv_error(data, url, e) if fmt == "csv" else _jsonl_error(data, url, e)) from e
    return df


def check_header(names: list[str], url: str) -> None:
    """A column named twice in a file's header is an error naming the file and the column.

    Examples
    --------
    >>> check_header(["id", "text", "label", "label"], "a.csv")
    Traceback (most recent call last):
    ...
    curation.errors.DataError: a.csv, column 'label': appears 2 times in the header; expected each column once (rename or drop the copy)
    """
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            raise DataError(
                f"appears {names.count(name)} times in the header; expected each column "
                f"once (rename or drop the copy)",
                path=url,
                column=name,
            )


def check_csv(data: bytes, url: str) -> None:
    """Every record of a CSV file has as many fields as its header, and there is one record.

    Raises
    ------
    DataError
        A column named twice, a row with more or fewer fields (naming the row and the line),
        or a header with no rows.
    """
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader, [])
    check_header(header, url)
    rows = 0
    for rec in reader:
        if not rec:
            continue  # a blank line
        rows += 1
        if len(rec) != len(header):
            raise DataError(
                f"has {len(rec)} fields, the header has {len(header)} (line {reader.line_num}); "
                f"expected one field per column: quote fields that hold a comma",
                path=url,
                row=rows,
            )
    if rows == 0:
        raise DataError("has a header but no rows; expected at least one row of data", path=url)


def _csv_error(data: bytes, url: str, cause: Exception) -> DataError:
    """A value of another type than the rows before it (``could not parse`` ...), with its row."""
    import re

    m = re.search(r"could not parse `(.*?)` as dtype `(.*?)` at column '(.*?)'", str(cause))
    if m is None:
        return DataError(f"cannot read csv file: {_first_line(cause)}", path=url)
    value, dtype, column = m.groups()
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    row = next((i for i, r in enumerate(reader, 1) if r.get(column) == value), None)
    return DataError(
        f"holds {value!r} where the rows before it are {dtype}; expected one type per "
        f"column (fix the row, or quote every value)",
        path=url,
        column=column,
        row=row,
    )


def _jsonl_error(data: bytes, url: str, cause: Exception) -> DataError:
    """The first line of a JSON Lines file that is not one JSON object, with its number."""
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            return DataError(
                f"line {n} is not JSON ({e.msg} at column {e.colno}); expected one JSON object a line",
                path=url,
                row=n,
            )
        if not isinstance(obj, dict):
            return DataError(
                f"line {n} is a JSON {type(obj).__name__}; expected one JSON object a line", path=url, row=n
            )
    return DataError(f"cannot read jsonl file: {_first_line(cause)}", path=url)


def read_block(block: Block, columns: list[str] | None = None) -> pl.DataFrame:
    """Read one block as a polars DataFrame.

    A local Parquet file is read by polars itself (its row groups by a slice of the scan:
    three to six times faster than through Arrow, whose strings polars would copy); other
    files through fsspec.

    Raises
    ------
    DataError
        Naming the file, what was wrong and what was expected.

    Examples
    --------
    >>> import tempfile
    >>> f = f"{tempfile.mkdtemp()}/a.parquet"
    >>> pl.DataFrame({"id": range(5)}).write_parquet(f, row_group_size=2)
    >>> [read_block(b)["id"].to_list() for b in plan_blocks(f, block_rows=3)]
    [[0, 1, 2, 3], [4]]
    """
    fmt = FORMATS[Path(block.url.split("?")[0]).suffix]
    try:
        if fmt != "parquet":
            df = _read_text_file(block.url, fmt)
            return df if columns is None else df.select(columns)
        with fsspec.open(block.url, "rb") as f:
            pf = pq.ParquetFile(f)
            check_header(list(pf.schema_arrow.names), block.url)
            if block.row_groups is None and pf.metadata.num_rows == 0:
                raise DataError("has no rows; expected at least one row of data", path=block.url)
            if "://" in block.url:
                groups = range(pf.num_row_groups) if block.row_groups is None else block.row_groups
                return pl.DataFrame(pl.from_arrow(pf.read_row_groups(list(groups), columns=columns)))
        scan = pl.scan_parquet(block.url, glob=False, hive_partitioning=False)  # this file only
        scan = scan if columns is None else scan.select(columns)
        if block.row_groups is not None:  # whole row groups, one after another
            scan = scan.slice(block.first_row & ((1 << ROW_BITS) - 1), block.rows)
        return scan.collect()
    except DataError:
        raise
    except (pa.ArrowException, pl.exceptions.PolarsError, OSError) as e:
        raise DataError(
            f"cannot read {fmt} file: {_first_line(e)}; expected a complete, "
            f"readable {fmt} file (re-export it)",
            path=block.url,
        ) from e


def parquet_schema(url: str) -> pa.Schema:
    """The Arrow schema a Parquet file declares (reads the footer only)."""
    try:
        with fsspec.open(url, "rb") as f:
            return pq.ParquetFile(f).schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise DataError(
            f"cannot read parquet file: {_first_line(e)}; expected a complete "
            f"Parquet file (was it truncated? re-export it)",
            path=url,
        ) from e


def plan_blocks(source: str | Path, block_rows: int = 262_144) -> list[Block]:
    """Split a source into blocks of about ``block_rows`` rows (Parquet: whole row groups).

    CSV and JSON Lines files are one block each. Only Parquet footers are read.
    """
    blocks = []
    for i, url in enumerate(list_files(source)):
        if FORMATS[Path(url).suffix] != "parquet":
            blocks.append(Block(url, i, None, i << ROW_BITS, None))
            continue
        try:
            with fsspec.open(url, "rb") as f:
                meta = pq.ParquetFile(f).metadata
        except (pa.ArrowException, OSError) as e:
            raise DataError(
                f"cannot read parquet file: {_first_line(e)}; expected a complete "
                f"Parquet file (was it truncated? re-export it)",
                path=url,
            ) from e
        groups: list[int] = []
        start = offset = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            offset += meta.row_group(g).num_rows
            if offset - start >= block_rows or g == meta.num_row_groups - 1:
                blocks.append(Block(url, i, tuple(groups), (i << ROW_BITS) + start, offset - start))
                groups, start = [], offset
        if meta.num_row_groups == 0:
            blocks.append(Block(url, i, (), i << ROW_BITS, 0))
    return blocks


def estimate_rows(blocks: list[Block]) -> int:
    """Rows in the blocks: exact for Parquet, estimated from size (64 bytes a row) otherwise."""
    total = 0
    for b in blocks:
        if b.rows is not None:
            total += b.rows
        else:
            fs, path = _filesystem(b.url)
            total += int(fs.size(path) or 0) // 64
    return total


def read_table(source: str | Path) -> pl.DataFrame:
    """Read a table from a file, folder or glob of Parquet, CSV or JSON Lines files.

    Parameters
    ----------
    source : str or Path
        The file, folder or glob; a local path or an ``s3://`` / ``lakefs://`` URI.

    Returns
    -------
    polars.DataFrame
        All files concatenated (columns matched by name).

    Raises
    ------
    DataError
        Naming the file that could not be read and why.

    Examples
    --------
    >>> import tempfile, polars as pl
    >>> d = tempfile.mkdtemp()
    >>> pl.DataFrame({"id": [1, 2]}).write_csv(f"{d}/a.csv")
    >>> len(read_table(d))
    2
    """
    frames: list[Any] = []
    files = list_files(source)
    for url in files:
        frames.append(read_block(Block(url, 0, None, 0, None)))
        same_columns(frames[0].columns, frames[-1].columns, files[0], url)
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def same_columns(first: list[str], these: list[str], first_url: str, url: str) -> None:
    """Every file of a dataset has the first file's columns: a missing (misspelled) or extra
    column is an error naming the file and the column, never a column of nulls."""
    missing = [c for c in first if c not in these]
    extra = [c for c in these if c not in first]
    if missing:
        hint = f" (it has {extra[0]!r}: misspelled?)" if extra else ""
        raise DataError(
            f"has no column {missing[0]!r}{hint}; every file of the dataset must have the "
            f"columns of {first_url}: {', '.join(first)}",
            path=url,
            column=missing[0],
        )
    if extra:
        raise DataError(
            f"has a column {extra[0]!r} that {first_url} lacks; every file of the dataset "
            f"must have the same columns: {', '.join(first)}",
            path=url,
            column=extra[0],
        )


def column_names(source: str | Path) -> list[str]:
    """The column names of a source's first file, from its header only.

    Parquet: the footer; CSV: the header line; JSON Lines: the keys of the first line.
    """
    url = list_files(source)[0]
    fmt = FORMATS[Path(url).suffix]
    if fmt == "parquet":
        return list(parquet_schema(url).names)
    with fsspec.open(url, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
    if fmt == "csv":
        return next(csv.reader([first]), [])
    try:
        return list(json.loads(first)) if first.strip() else []
    except json.JSONDecodeError as e:
        raise DataError(f"line 1 is not JSON ({e.msg}); expected one JSON object a line", path=url) from e


def require_columns(
    columns: pl.DataFrame | list[str], wanted: dict[str, str], source: str, config: str | None = None
) -> None:
    """Fail with a :class:`ConfigError` naming the loop field of the first missing column.

    Parameters
    ----------
    columns : polars.DataFrame or list of str
        The table, or its column names (see :func:`column_names`).
    wanted : dict
        Loop field (``id``, ``text``, ``label``) -> column name.
    source : str
        The dataset, for the message.
    config : str, optional
        The loop file the fields come from.
    """
    names = list(columns.columns) if isinstance(columns, pl.DataFrame) else list(columns)
    for field, col in wanted.items():
        if col not in names:
            raise ConfigError(
                f"column {col!r} not in {source}", field=f"columns.{field}", source=config, choices=names
            )


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Write atomically: to a temporary file, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)
