"""A starting contract inferred from a dataset, written in Pandera's own YAML format."""

from __future__ import annotations

from pathlib import Path

import pandera.polars as pap
import polars as pl
from pandera.api.checks import Check

from curation.support.data import plan_blocks, read_block

HEADER = """\
# A starting contract, inferred by `curation schema infer` from {source}
# ({rows} rows read). Review it: nullable columns here accept the nulls the data had,
# and ranges and label sets are only what was seen. Pandera's YAML format:
# https://pandera.readthedocs.io/en/stable/dataframe_schemas.html
"""


def _checks(s: pl.Series, max_categories: int) -> list[Check]:
    values = s.drop_nulls()
    if len(values) == 0:
        return []
    if s.dtype.is_numeric() and s.dtype != pl.Boolean:
        return [Check.in_range(values.min(), values.max())]
    if s.dtype == pl.String:
        given = values.filter(values.str.strip_chars() != "")  # blank labels are no labels
        distinct = given.n_unique()
        if given.len() and distinct <= max_categories and distinct * 2 <= len(given):
            return [Check.isin(sorted(given.unique().to_list()))]
        if values.str.len_chars().min() > 0:  # type: ignore[operator]
            return [Check.str_length(min_value=1)]
    return []


def infer_schema(df: pl.DataFrame, *, max_categories: int = 200) -> pap.DataFrameSchema:
    """Infer a Pandera polars contract from a table.

    Every column gets its dtype and whether it had nulls. An integer or string column
    whose name is ``id`` or ends in ``_id`` and has no repeats is ``unique``. Numbers get
    their seen range; a string column with few distinct values (at most
    ``max_categories``, and at most half its rows) gets the seen set (``isin``), another
    string column a non-empty check. Blank strings are not in a label set (a blank label is
    no label: the column becomes nullable).

    Parameters
    ----------
    df : polars.DataFrame
        The data (or a sample of it).
    max_categories : int
        The most distinct values a column may have to be treated as a label set.

    Returns
    -------
    pandera.polars.DataFrameSchema

    Examples
    --------
    >>> s = infer_schema(pl.DataFrame({"id": [1, 2, 3, 4], "label": ["a", "a", "b", "b"]}))
    >>> (s.columns["id"].unique, s.columns["label"].checks[0].name)
    (True, 'isin')
    >>> s = infer_schema(pl.DataFrame({"label": ["a", "a", "b", "b", " ", ""]}))
    >>> (s.columns["label"].checks[0].statistics["allowed_values"], s.columns["label"].nullable)
    (['a', 'b'], True)
    """
    columns = {}
    for name, s in df.to_dict().items():
        id_like = name == "id" or name.endswith("_id")
        keyable = s.dtype.is_integer() or s.dtype == pl.String
        unique = bool(id_like and keyable and s.null_count() == 0 and s.n_unique() == len(s))
        checks = None if unique else _checks(s, max_categories) or None
        blank = s.dtype == pl.String and bool((s.str.strip_chars() == "").any())
        labels = bool(checks) and checks[0].name == "isin"  # type: ignore[index]
        nullable = s.null_count() > 0 or (labels and blank)  # a blank label is read as null
        columns[name] = pap.Column(s.dtype, checks=checks, nullable=nullable, unique=unique)
    return pap.DataFrameSchema(columns)


def sample(source: str | Path, rows: int | None = None) -> pl.DataFrame:
    """The first ``rows`` rows of a source (all rows when ``None``), read block by block."""
    frames: list[pl.DataFrame] = []
    seen = 0
    for block in plan_blocks(source):
        frames.append(read_block(block))
        seen += len(frames[-1])
        if rows is not None and seen >= rows:
            break
    df = pl.concat(frames, how="diagonal_relaxed")
    return df if rows is None else df.head(rows)


def infer_yaml(source: str | Path, rows: int | None = None, max_categories: int = 200) -> str:
    """The inferred contract of ``source`` as Pandera YAML, with a header comment."""
    df = sample(source, rows)
    schema = infer_schema(df, max_categories=max_categories)
    return HEADER.format(source=source, rows=len(df)) + str(schema.to_yaml())
