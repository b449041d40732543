"""Row ids across the public API: the steps key rows by ``str(id)``; callers get theirs back."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

_KEY, _VALUE = "__curation_id_key", "__curation_id_value"


def keep_id_dtype(table: pl.DataFrame, *given: Iterable[Any] | None, column: str = "id") -> pl.DataFrame:
    """``table`` with its ``column`` of string ids mapped back to the ids the caller gave.

    The steps key rows by ``str(id)`` (a table's ``id`` is a String inside); at a public entry
    point the caller gets the ids in the dtype it gave them (an Int64 id column comes back
    Int64). ``given`` are the id sequences ``table``'s ids came from (a polars Series, a numpy
    array, a list, a range), in that order of precedence for the dtype. String ids, ids that
    polars cannot hold in one dtype, or a table id found in none of them leave ``table`` as it is.

    Examples
    --------
    >>> t = pl.DataFrame({"id": ["3", "1"], "score": [0.9, 0.5]})
    >>> keep_id_dtype(t, pl.Series([1, 2, 3]))["id"].to_list()
    [3, 1]
    >>> keep_id_dtype(t, ["1", "2", "3"])["id"].to_list()
    ['3', '1']
    """
    keys: list[str] = []
    parts: list[pl.Series] = []
    for g in given:
        if g is None:
            continue
        values = list(g) if not isinstance(g, pl.Series) else g.to_list()
        try:
            series = g if isinstance(g, pl.Series) else pl.Series(values=g if hasattr(g, "dtype") else values)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            return table
        keys.extend(str(v) for v in values)
        parts.append(series.rename(_VALUE))
    if not parts or parts[0].dtype in (pl.String, pl.Object, pl.Null) or column not in table.columns:
        return table
    try:
        mapping = pl.DataFrame({_KEY: keys, _VALUE: pl.concat([p.cast(parts[0].dtype) for p in parts])})
    except pl.exceptions.PolarsError:
        return table
    out = table.join(
        mapping.unique(_KEY, keep="first", maintain_order=True),
        left_on=column,
        right_on=_KEY,
        how="left",
        maintain_order="left",
    )
    if out[_VALUE].null_count() > table[column].null_count():
        log.debug("ids: some ids of the table are not among the given ones; kept as strings")
        return table
    return out.with_columns(pl.col(_VALUE).alias(column)).drop(_VALUE)
