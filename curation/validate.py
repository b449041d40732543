"""Validation: a Pandera contract over Arrow blocks, with a quarantine and a report.

Every input row ends in exactly one of ``valid`` or ``quarantine``. Column checks run
block by block (a Ray Data job, or in process); checks that span blocks (unique ids,
duplicate texts with conflicting labels) run once over the whole table.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandera.errors
import pandera.polars as pap
import polars as pl
import pyarrow as pa

from curation.errors import ConfigError, DataError, ValidationGateError

ROW = "_row"
FAILURE_COLUMNS = {"column": pl.String, "check": pl.String, "value": pl.String}


@dataclass
class ValidationResult:
    """What validation produced.

    Attributes
    ----------
    valid : polars.DataFrame
        Rows that passed every check, in input order.
    quarantine : polars.DataFrame
        Rows that failed, with ``column``, ``check``, ``value`` and ``reason``.
    report : dict
        Counts: ``rows``, ``valid``, ``quarantined`` and ``by_check`` (check -> rows).
    """

    valid: pl.DataFrame
    quarantine: pl.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


def load_schema(spec: str | Path) -> pap.DataFrameSchema:
    """Load a contract: a Pandera YAML file or ``file.py:ModelName`` (a ``DataFrameModel``)."""
    spec = str(spec)
    if ".py:" in spec:
        file, _, name = spec.partition(".py:")
        module_spec = importlib.util.spec_from_file_location("curation_user_schema", file + ".py")
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"cannot import {file}.py", field="schema")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not hasattr(module, name):
            raise ConfigError(f"{file}.py has no class {name!r}", field="schema")
        return getattr(module, name).to_schema()
    try:
        return pap.DataFrameSchema.from_yaml(Path(spec))
    except Exception as e:  # pandera raises several types for a bad file
        raise ConfigError(f"not a Pandera polars schema: {e}", source=spec, field="schema") from e


def _unique_columns(schema: pap.DataFrameSchema) -> tuple[pap.DataFrameSchema, list[str]]:
    """Split column uniqueness out of the schema: it is a global check, not a block one."""
    unique = [name for name, col in schema.columns.items() if col.unique]
    if unique:
        schema = schema.update_columns({c: {"unique": False} for c in unique})
    return schema, unique


def check_block(table: pa.Table, schema: pap.DataFrameSchema) -> pa.Table:
    """Run the contract's column checks on one block; return one row per failure.

    The block carries the input row number in ``_row``; the result has ``_row``,
    ``column``, ``check`` and ``value`` (``_row`` is null for a failure of the whole
    column, such as a missing column or a wrong type).
    """
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    rows = df[ROW]
    try:
        schema.validate(df.drop(ROW), lazy=True)
        fc = pl.DataFrame(schema={ROW: pl.Int64, **FAILURE_COLUMNS})
    except pandera.errors.SchemaErrors as e:
        raw = pl.DataFrame(e.failure_cases)
        idx = raw["index"].cast(pl.Int64)
        fc = pl.DataFrame(
            {
                ROW: pl.Series([None if i is None else rows[i] for i in idx], dtype=pl.Int64),
                "column": raw["column"].cast(pl.String),
                "check": raw["check"].cast(pl.String),
                "value": raw["failure_case"].cast(pl.String),
            }
        )
    return fc.to_arrow()


def _global_failures(df: pl.DataFrame, unique: list[str], text: str, label: str) -> pl.DataFrame:
    """Failures that span blocks: duplicated unique keys, same text with different labels."""
    parts = []
    for col in unique:
        dup = df.filter(pl.col(col).is_duplicated() & pl.col(col).is_not_null())
        parts.append(dup.select(ROW, pl.lit(col).alias("column"), pl.lit("unique").alias("check"),
                                pl.col(col).cast(pl.String).alias("value")))
    if text in df.columns and label in df.columns:
        labeled = df.filter(pl.col(text).is_not_null() & pl.col(label).is_not_null())
        n_labels = pl.col(label).n_unique().over(text)
        bad = labeled.filter(n_labels > 1)
        parts.append(bad.select(ROW, pl.lit(label).alias("column"),
                                pl.lit("conflicting_duplicate").alias("check"),
                                pl.col(label).cast(pl.String).alias("value")))
    if not parts:
        return pl.DataFrame(schema={ROW: pl.Int64, **FAILURE_COLUMNS})
    return pl.concat([p.with_columns(pl.col(ROW).cast(pl.Int64)) for p in parts])


def _block_failures(indexed: pl.DataFrame, schema: pap.DataFrameSchema, engine: str,
                    block_rows: int) -> pl.DataFrame:
    if engine == "local":
        return pl.from_arrow(check_block(indexed.to_arrow(), schema))  # type: ignore[return-value]
    import ray

    blocks = [indexed.slice(i, block_rows).to_arrow() for i in range(0, max(len(indexed), 1), block_rows)]
    ds = ray.data.from_arrow(blocks).map_batches(
        check_block, fn_args=(schema,), batch_format="pyarrow", batch_size=None, zero_copy_batch=True
    )
    tables = ray.get(ds.to_arrow_refs())
    out = pl.from_arrow(pa.concat_tables(tables)) if tables else None
    if out is None or len(out) == 0:
        return pl.DataFrame(schema={ROW: pl.Int64, **FAILURE_COLUMNS})
    return out  # type: ignore[return-value]


def _raise_column_failures(failures: pl.DataFrame, source: str) -> None:
    whole = failures.filter(pl.col(ROW).is_null())
    if len(whole) == 0:
        return
    first = whole.row(0, named=True)
    check = str(first["check"])
    if check == "column_in_dataframe":
        msg = "missing column required by the schema"
    elif check.startswith("dtype("):
        msg = f"expected type {check[7:-2]}, found {first['value']}"
    else:
        msg = f"failed {first['check']} (found {first['value']})"
    raise DataError(f"{msg}; fix the data or the schema", path=source, column=first["column"])


def validate(
    df: pl.DataFrame,
    schema: pap.DataFrameSchema,
    *,
    text: str = "text",
    label: str = "label",
    source: str = "input",
    engine: Literal["ray", "local"] = "ray",
    block_rows: int = 100_000,
    max_invalid_fraction: float = 1.0,
) -> ValidationResult:
    """Validate ``df`` against ``schema``; split it into valid rows and a quarantine.

    Parameters
    ----------
    df : polars.DataFrame
        The input table.
    schema : pandera.polars.DataFrameSchema
        The contract.
    text, label : str
        The text and label columns, for the conflicting-duplicate check.
    source : str
        Where ``df`` came from, for error messages.
    engine : {"ray", "local"}
        Run the block checks as a Ray Data job or in this process.
    block_rows : int
        Rows per block.
    max_invalid_fraction : float
        The gate: more quarantined rows than this fraction raises.

    Returns
    -------
    ValidationResult

    Raises
    ------
    DataError
        A column is missing or has a type the schema does not accept.
    ValidationGateError
        The quarantined fraction is above ``max_invalid_fraction``.

    Examples
    --------
    >>> import polars as pl, pandera.polars as pap
    >>> s = pap.DataFrameSchema({"text": pap.Column(str, nullable=False)})
    >>> r = validate(pl.DataFrame({"text": ["a", None]}), s, engine="local")
    >>> (len(r.valid), len(r.quarantine))
    (1, 1)
    """
    indexed = df.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    block_schema, unique = _unique_columns(schema)
    failures = _block_failures(indexed, block_schema, engine, block_rows)
    _raise_column_failures(failures, source)
    failures = pl.concat([failures, _global_failures(indexed, unique, text, label)])
    reasons = (
        failures.group_by(ROW, maintain_order=True)
        .agg(
            pl.col("column").unique(maintain_order=True).str.join("; "),
            pl.col("check").unique(maintain_order=True).str.join("; "),
            pl.col("value").fill_null("null").first(),
            pl.format("{}: {}", pl.col("column"), pl.col("check")).unique(maintain_order=True)
            .str.join("; ").alias("reason"),
        )
    )
    quarantine = indexed.join(reasons, on=ROW, how="inner").sort(ROW)
    valid = indexed.join(reasons, on=ROW, how="anti").sort(ROW).drop(ROW)
    by_check = failures.group_by("check").agg(pl.col(ROW).n_unique().alias("rows")).sort("check")
    report = {
        "rows": len(df),
        "valid": len(valid),
        "quarantined": len(quarantine),
        "by_check": dict(zip(by_check["check"].to_list(), by_check["rows"].to_list())),
    }
    fraction = len(quarantine) / max(len(df), 1)
    if fraction > max_invalid_fraction:
        raise ValidationGateError(
            f"{source}: {fraction:.1%} of rows failed validation, above the gate "
            f"max_invalid_fraction={max_invalid_fraction:.1%}; see the quarantine for reasons",
            failure_cases=quarantine,
        )
    return ValidationResult(valid=valid, quarantine=quarantine, report=report)
