"""Reading and writing tables: Parquet, CSV and JSON Lines; a file, a folder or a glob."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import polars as pl

from curation.errors import ConfigError, DataError

READERS = {
    ".parquet": pl.read_parquet,
    ".csv": pl.read_csv,
    ".jsonl": pl.read_ndjson,
    ".ndjson": pl.read_ndjson,
}


def list_files(source: str | Path) -> list[Path]:
    """The data files a source names: one file, every data file in a folder, or a glob."""
    s = str(source)
    if any(c in s for c in "*?["):
        files = [Path(p) for p in sorted(glob.glob(s, recursive=True))]
    elif Path(s).is_dir():
        files = sorted(p for p in Path(s).rglob("*") if p.suffix in READERS)
    else:
        files = [Path(s)]
    if not files:
        raise DataError("no data files found (expected .parquet, .csv or .jsonl)", path=s)
    for f in files:
        if not f.exists():
            raise DataError("file not found", path=str(f))
        if f.suffix not in READERS:
            raise DataError(
                f"unsupported file type {f.suffix!r}; expected one of {', '.join(READERS)}",
                path=str(f),
            )
    return files


def read_table(source: str | Path) -> pl.DataFrame:
    """Read a table from a file, folder or glob of Parquet, CSV or JSON Lines files.

    Parameters
    ----------
    source : str or Path
        The file, folder or glob.

    Returns
    -------
    polars.DataFrame
        All files concatenated (columns matched by name).

    Raises
    ------
    DataError
        Naming the file that could not be read and why.
    """
    frames = []
    for f in list_files(source):
        try:
            frames.append(READERS[f.suffix](f))
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"cannot read {f.suffix[1:]} file: {first}", path=str(f)) from e
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def require_columns(df: pl.DataFrame, columns: dict[str, str], source: str) -> None:
    """Fail with a :class:`ConfigError` naming the loop field of the first missing column."""
    for field, col in columns.items():
        if col not in df.columns:
            raise ConfigError(
                f"column {col!r} not in {source}",
                field=f"columns.{field}",
                choices=list(df.columns),
            )


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Write atomically: to a temporary file, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)
