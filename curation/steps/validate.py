"""Validation: a Pandera contract over Arrow blocks, with a quarantine and a report.

Every input row ends in exactly one of ``valid`` or ``quarantine``. Column checks run
block by block with Pandera's polars backend (Ray tasks, or in process) and collect
every failure. Checks that span blocks run once over the whole input:

- ``unique``: a column the contract marks ``unique`` holds each value once;
- ``conflicting_duplicate``: the same text carries different labels;
- ``min_per_class``: a label has fewer than ``min_per_class`` rows.

Two entry points share these pieces: :func:`validate` for a table in memory (the loop),
and :func:`validate_source` for files (the CLI), which streams blocks from Parquet, CSV
or JSON Lines files and reads each block twice: a first pass runs the column checks and
splits the block's keys (hashed texts, unique columns) into hash buckets, one task a bucket
finds the cross-block failures, and a second pass writes each block's valid rows and
quarantine. On Ray the keys go from task to task through Ray's object store (which spills
to disk when it fills), so the driver holds only the failures; in process they are held in
memory (about 40 bytes a row).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandera.api.checks
import pandera.errors
import pandera.polars as pap
import polars as pl
import pyarrow as pa

from curation.config import Columns, ValidateConfig
from curation.errors import ConfigError, CurationError, DataError, ValidationGateError
from curation.support.data import Block, column_names, estimate_rows, plan_blocks, read_block, same_columns
from curation.support.display import result_html

log = logging.getLogger(__name__)

#: Columns curation adds (to the quarantine) or uses while it works all start with this
#: prefix; a data column that does too is refused, so none ever collides with a user's.
RESERVED = "curation_"
ROW, COLUMN, CHECK, VALUE, REASON = (f"{RESERVED}{n}" for n in ("row", "column", "check", "value", "reason"))
#: The columns the quarantine adds to each failing row.
REASON_COLUMNS = (ROW, COLUMN, CHECK, VALUE, REASON)
FAILURES: dict[str, Any] = {ROW: pl.Int64, COLUMN: pl.String, CHECK: pl.String, VALUE: pl.String}
BUCKET_ROWS = 1_000_000
"""Rows of spilled keys per hash bucket in :func:`validate_source` (bounds a task's memory)."""

Engine = Literal["auto", "ray", "local"]


@dataclass
class ValidationResult:
    """What validation produced.

    Attributes
    ----------
    valid : polars.DataFrame
        Rows that passed every check, in input order.
    quarantine : polars.DataFrame
        Rows that failed: every original column plus ``curation_row`` (the input row number),
        ``curation_column``, ``curation_check``, ``curation_value`` (the first failing value)
        and ``curation_reason`` (see :data:`REASON_COLUMNS`).
    report : dict
        Counts: ``rows``, ``valid``, ``quarantined``, ``by_check`` (check -> rows),
        ``by_column`` (column -> rows) and ``by_column_check``.
    """

    valid: pl.DataFrame
    quarantine: pl.DataFrame
    report: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        return result_html("validation", self.report, {"quarantine": self.quarantine, "valid": self.valid})


@dataclass(frozen=True)
class Rules:
    """What to check besides the contract's column checks (the cross-block checks)."""

    schema: pap.DataFrameSchema
    unique: tuple[str, ...]
    text: str
    label: str
    min_per_class: int | None


def load_schema(spec: str | Path) -> pap.DataFrameSchema:
    """Load a contract: a Pandera YAML file or ``file.py:ModelName`` (a ``DataFrameModel``).

    Raises
    ------
    ConfigError
        The file is missing, not a Pandera polars schema, or has no such class.
    """
    spec = str(spec)
    if ".py:" in spec:
        file, _, name = spec.partition(".py:")
        if not Path(file + ".py").is_file():
            raise ConfigError(f"file not found: {file}.py", field="schema")
        module_spec = importlib.util.spec_from_file_location("curation_user_schema", file + ".py")
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"cannot import {file}.py", field="schema")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not hasattr(module, name):
            raise ConfigError(f"{file}.py has no class {name!r}", field="schema")
        schema: pap.DataFrameSchema = getattr(module, name).to_schema()
        return schema
    if not Path(spec).is_file():
        raise ConfigError(
            f"file not found: {spec}; expected a Pandera YAML file or schemas/x.py:Model", field="schema"
        )
    try:
        return pap.DataFrameSchema.from_yaml(Path(spec))
    except Exception as e:  # pandera raises several types for a bad file
        raise ConfigError(f"not a Pandera polars schema: {e}", source=spec, field="schema") from e


def make_rules(
    schema: pap.DataFrameSchema,
    *,
    text: str = "text",
    label: str = "label",
    labels: list[str] | None = None,
    min_per_class: int | None = None,
    id: str | None = None,
) -> Rules:
    """Split a contract into block checks and cross-block checks.

    Column uniqueness moves out of the block schema (it spans blocks); the ``id`` column is
    unique whatever the contract says (a loop keys labels and tasks by it); ``labels`` adds an
    ``isin`` check on the label column.
    """
    marked = tuple(name for name, col in schema.columns.items() if col.unique)
    block = schema.update_columns({c: {"unique": False} for c in marked}) if marked else schema
    unique = marked + ((id,) if id is not None and id not in marked else ())
    if labels is not None:
        if label not in block.columns:
            raise ConfigError(
                f"labels given but the contract has no column {label!r}",
                field="labels",
                choices=list(block.columns),
            )
        checks = list(block.columns[label].checks) + [pandera.api.checks.Check.isin(labels)]
        block = block.update_column(label, checks=checks)
    return Rules(block, unique, text, label, min_per_class)


# ---------------------------------------------------------------- block checks


def _empty_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=FAILURES)


def _raise_column_failures(fc: pl.DataFrame, source: str) -> None:
    """A failure of a whole column (missing, wrong type) cannot be quarantined: raise it."""
    whole = fc.filter(pl.col("index").is_null())
    if len(whole) == 0:
        return
    first = whole.row(0, named=True)
    check, found = str(first["check"]), first["failure_case"]
    if check == "column_in_dataframe":
        raise DataError(
            "missing column required by the contract; add it to the data or remove it from the schema",
            path=source,
            column=found,
        )
    if check.startswith("dtype("):
        raise DataError(
            f"expected type {check[7:-2]}, found {found}; fix the data or the "
            f"schema's dtype (or set coerce: true)",
            path=source,
            column=first["column"],
        )
    raise DataError(
        f"failed {check} (found {found}); fix the data or the schema", path=source, column=first["column"]
    )


def refuse_reserved(columns: list[str], source: str) -> None:
    """A data column whose name starts with :data:`RESERVED` is refused, naming it: curation
    adds columns with that prefix (the quarantine's reasons), so no user column is ever lost
    to a collision.

    Examples
    --------
    >>> refuse_reserved(["id", "value", "check", "reason", "_row"], "ok.csv")
    >>> refuse_reserved(["curation_row"], "bad.csv")
    Traceback (most recent call last):
    ...
    curation.errors.DataError: bad.csv, column 'curation_row': names starting with 'curation_' are reserved ...
    """
    for name in columns:
        if name.startswith(RESERVED):
            raise DataError(
                f"names starting with {RESERVED!r} are reserved for the columns curation adds "
                f"(the quarantine's reasons); rename the column",
                path=source,
                column=name,
            )


def blank_labels_to_null(df: pl.DataFrame, label: str) -> pl.DataFrame:
    """An empty or whitespace-only label is no label (the row joins the pool), in every format.

    Examples
    --------
    >>> blank_labels_to_null(pl.DataFrame({"label": ["a", "", "  ", None]}), "label")["label"].to_list()
    ['a', None, None, None]
    """
    if label not in df.columns or df.schema[label] != pl.String:
        return df
    blank = pl.col(label).str.strip_chars() == ""
    return df.with_columns(pl.when(blank).then(None).otherwise(pl.col(label)).alias(label))


def check_block(df: pl.DataFrame, rules: Rules, source: str) -> pl.DataFrame:
    """Run the contract's column checks on one block (lazy: every failure).

    Parameters
    ----------
    df : polars.DataFrame
        The block, with the input row number in ``curation_row``.
    rules : Rules
        From :func:`make_rules`.
    source : str
        The file the block comes from, for error messages.

    Returns
    -------
    polars.DataFrame
        One row per failure: ``curation_row``, ``curation_column``, ``curation_check``,
        ``curation_value``.

    Raises
    ------
    DataError
        A column is missing or has a type the contract does not accept.
    """
    try:
        rules.schema.validate(df.drop(ROW), lazy=True)
        return _empty_failures()
    except pandera.errors.SchemaErrors as e:
        raw = pl.DataFrame(e.failure_cases)
    _raise_column_failures(raw, source)
    rows = df[ROW].gather(raw["index"].cast(pl.UInt32))
    return pl.DataFrame(
        {
            ROW: rows,
            COLUMN: raw["column"].cast(pl.String),
            CHECK: raw["check"].cast(pl.String),
            VALUE: raw["failure_case"].cast(pl.String),
        },
        schema=FAILURES,
    )


# ---------------------------------------------------------------- cross-block checks


def _as_failures(df: pl.DataFrame, column: str, check: str, value: str) -> pl.DataFrame:
    return df.select(
        pl.col(ROW).cast(pl.Int64),
        pl.lit(column).alias(COLUMN),
        pl.lit(check).alias(CHECK),
        pl.col(value).cast(pl.String).alias(VALUE),
    )


def duplicated(keys: pl.DataFrame, column: str) -> pl.DataFrame:
    """Rows whose ``column`` value occurs more than once in ``keys`` (nulls aside)."""
    dup = keys.filter(pl.col(column).is_not_null() & pl.col(column).is_duplicated())
    return _as_failures(dup, column, "unique", column)


def conflicting(keys: pl.DataFrame, by: list[str], label: str, report_as: str) -> pl.DataFrame:
    """Rows whose key ``by`` (the text, or its hashes) carries more than one label."""
    labeled = keys.filter(pl.col(label).is_not_null())
    # a key met once cannot carry two labels: the window below only runs over the keys met twice
    once = ~pl.col(by[0]).is_duplicated()
    bad = labeled.remove(once).filter(pl.col(label).n_unique().over(by) > 1)
    return _as_failures(bad, report_as, "conflicting_duplicate", label)


def rare_classes(counts: pl.DataFrame, label: str, min_per_class: int | None) -> list[Any]:
    """Labels with fewer than ``min_per_class`` rows (``counts`` has ``label`` and ``n``)."""
    if not min_per_class:
        return []
    total = counts.group_by(label).agg(pl.col("n").sum())
    return total.filter(pl.col("n") < min_per_class)[label].to_list()


def rare_failures(df: pl.DataFrame, rules: Rules, rare: list[Any]) -> pl.DataFrame:
    """Rows whose label is one of the ``rare`` classes."""
    if not rare or rules.label not in df.columns:
        return _empty_failures()
    hit = df.filter(pl.col(rules.label).is_in(rare))
    return _as_failures(hit, rules.label, f"min_per_class({rules.min_per_class})", rules.label)


def label_counts(df: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Rows per non-null label in ``df`` (columns ``label`` and ``n``)."""
    if rules.label not in df.columns:
        return pl.DataFrame(schema={rules.label: pl.String, "n": pl.Int64})
    return (
        df.filter(pl.col(rules.label).is_not_null())
        .group_by(rules.label)
        .agg(pl.len().cast(pl.Int64).alias("n"))
    )


def global_failures(df: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Every cross-block failure of a table held whole in memory."""
    parts = [duplicated(df.select(ROW, c), c) for c in rules.unique if c in df.columns]
    if rules.text in df.columns and rules.label in df.columns:
        keys = df.select(ROW, rules.text, rules.label).filter(pl.col(rules.text).is_not_null())
        parts.append(conflicting(keys, [rules.text], rules.label, rules.label))
    parts.append(
        rare_failures(df, rules, rare_classes(label_counts(df, rules), rules.label, rules.min_per_class))
    )
    return pl.concat(parts)


# ---------------------------------------------------------------- splitting and the report


def split(df: pl.DataFrame, failures: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Valid rows (without ``curation_row``) and the quarantine (original row plus reasons)."""
    reasons = failures.group_by(ROW).agg(
        pl.col(COLUMN).unique(maintain_order=True).str.join("; "),
        pl.col(CHECK).unique(maintain_order=True).str.join("; "),
        pl.col(VALUE).fill_null("null").first(),
        pl.format("{}: {}", pl.col(COLUMN), pl.col(CHECK))
        .unique(maintain_order=True)
        .str.join("; ")
        .alias(REASON),
    )
    original = [c for c in df.columns if c != ROW]
    bad = pl.col(ROW).is_in(reasons[ROW].implode())
    quarantine = (
        df.filter(bad)
        .join(reasons, on=ROW, how="left", maintain_order="left")
        .select(*original, *REASON_COLUMNS)
    )
    return df.remove(bad).drop(ROW), quarantine


def make_report(
    rows: int, failures: pl.DataFrame, max_invalid_fraction: float, **extra: Any
) -> dict[str, Any]:
    """Counts per check, per column and per (column, check), in rows."""
    quarantined = failures[ROW].n_unique() if len(failures) else 0
    named = failures.rename({COLUMN: "column", CHECK: "check"})
    by = named.group_by("column", "check").agg(pl.col(ROW).n_unique().alias("rows"))
    by_check = named.group_by("check").agg(pl.col(ROW).n_unique().alias("rows")).sort("check")
    by_col = named.group_by("column").agg(pl.col(ROW).n_unique().alias("rows")).sort("column")
    fraction = quarantined / max(rows, 1)
    return {
        **extra,
        "rows": rows,
        "valid": rows - quarantined,
        "quarantined": quarantined,
        "invalid_fraction": fraction,
        "max_invalid_fraction": max_invalid_fraction,
        "passed": fraction <= max_invalid_fraction,
        "by_check": dict(zip(by_check["check"].to_list(), by_check["rows"].to_list())),
        "by_column": dict(zip(by_col["column"].to_list(), by_col["rows"].to_list())),
        "by_column_check": by.sort("column", "check").to_dicts(),
    }


def _gate(report: dict[str, Any], source: str, quarantine: Any) -> None:
    if not report["passed"]:
        raise ValidationGateError(
            f"{source}: {report['invalid_fraction']:.2%} of rows ({report['quarantined']} of "
            f"{report['rows']}) failed validation, above the gate max_invalid_fraction="
            f"{report['max_invalid_fraction']:.2%}; see the quarantine for the reasons, fix the "
            f"data or raise the gate",
            failure_cases=quarantine,
        )


def _pick_engine(engine: Engine, rows: int, local_below: int) -> Literal["ray", "local"]:
    if engine == "auto":
        return "local" if rows < local_below else "ray"
    return engine


# ---------------------------------------------------------------- in memory


def _block_failures_ray(indexed: pl.DataFrame, rules: Rules, source: str, block_rows: int) -> pl.DataFrame:
    from curation.support.engine import ensure_ray

    ensure_ray(None)  # a no-op when the caller already started or joined Ray
    args = [(indexed.slice(i, block_rows), rules, source) for i in range(0, len(indexed), block_rows)]
    found: list[pl.DataFrame] = _get(_run_tasks(check_block, args, "ray", lambda: None), "ray")
    return pl.concat([_empty_failures(), *found])


def validate(
    df: pl.DataFrame,
    schema: pap.DataFrameSchema,
    settings: ValidateConfig | None = None,
    columns: Columns | None = None,
    *,
    source: str = "input",
    engine: Engine = "auto",
    block_rows: int = 100_000,
) -> ValidationResult:
    """Validate ``df`` against ``schema``; split it into valid rows and a quarantine.

    Parameters
    ----------
    df : polars.DataFrame
        The input table.
    schema : pandera.polars.DataFrameSchema
        The contract.
    settings : ValidateConfig, optional
        The loop's ``validate`` section: the gate ``max_invalid_fraction`` (more quarantined
        rows than this fraction raises), ``min_per_class`` (quarantine the rows of labels
        with fewer rows), ``labels`` (the allowed labels) and ``local_below`` (the row
        threshold of ``engine="auto"``). Default: no gate
        (``ValidateConfig(max_invalid_fraction=1.0)``).
    columns : Columns, optional
        The text and label columns, for the cross-block checks (default ``text``, ``label``).
    source : str
        Where ``df`` came from, for error messages.
    engine : {"auto", "ray", "local"}
        Run the block checks as a Ray Data job or in this process; ``"auto"`` runs in
        process below ``local_below`` rows.
    block_rows : int
        Rows per block.

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
    >>> (len(r.valid), len(r.quarantine), r.report["by_check"])
    (1, 1, {'not_nullable': 1})
    """
    v, c = settings or ValidateConfig(max_invalid_fraction=1.0), columns or Columns()
    rules = make_rules(
        schema, text=c.text, label=c.label, labels=v.labels, min_per_class=v.min_per_class, id=c.id
    )
    refuse_reserved(df.columns, source)
    df = blank_labels_to_null(df, c.label)
    indexed = df.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    engine_used = _pick_engine(engine, len(df), v.local_below)
    if engine_used == "local":
        failures = check_block(indexed, rules, source)
    else:
        failures = _block_failures_ray(indexed, rules, source, block_rows)
    failures = pl.concat([failures, global_failures(indexed, rules)])
    valid, quarantine = split(indexed, failures)
    report = make_report(len(df), failures, v.max_invalid_fraction, source=source, engine=engine_used)
    _gate(report, source, quarantine)
    return ValidationResult(valid=valid, quarantine=quarantine, report=report)


# ---------------------------------------------------------------- files, streamed in blocks


@dataclass(frozen=True)
class _Job:
    """What every block task of :func:`validate_source` needs (small, sent to each task)."""

    rules: Rules
    out: str
    buckets: int
    columns: tuple[str, ...] = ()
    first: str = ""


def _read(block: Block, job: _Job | None = None) -> pl.DataFrame:
    df = read_block(block)
    if job is not None and job.first:
        same_columns(list(job.columns), df.columns, job.first, block.url)
    if job is not None:
        df = blank_labels_to_null(df, job.rules.label)
    refuse_reserved(df.columns, block.url)
    return df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).add(block.first_row).alias(ROW))


def _text_keys(df: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Text as two 64-bit hashes (a 128-bit key) with its label, for labeled texts only."""
    t = pl.col(rules.text).cast(pl.String)
    return df.filter(t.is_not_null() & pl.col(rules.label).is_not_null()).select(
        ROW, t.hash(seed=0).alias(f"{RESERVED}h1"), t.hash(seed=1).alias(f"{RESERVED}h2"), rules.label
    )


def _buckets(df: pl.DataFrame, job: _Job) -> list[dict[str, pl.DataFrame]]:
    """The block's keys for the cross-block checks, split into ``job.buckets`` hash buckets:
    bucket ``k`` maps ``u_COLUMN`` (a unique column) and ``t`` (text hashes) to its rows."""
    keys: dict[str, tuple[pl.DataFrame, str]] = {
        f"u_{c}": (df.select(ROW, c), c) for c in job.rules.unique if c in df.columns
    }
    if job.rules.text in df.columns and job.rules.label in df.columns:
        keys["t"] = (_text_keys(df, job.rules), f"{RESERVED}h1")
    out: list[dict[str, pl.DataFrame]] = [{} for _ in range(job.buckets)]
    for name, (part, on) in keys.items():
        bucket = (part[on].hash(seed=7) % job.buckets).alias(f"{RESERVED}bucket")
        for (k,), rows in part.with_columns(bucket).partition_by(bucket.name, as_dict=True).items():
            out[int(k)][name] = rows.drop(bucket.name)
    return out


def _first_pass(block: Block, job: _Job) -> tuple[Any, ...]:
    """One block's row count, column failures, label counts and its keys, bucket by bucket."""
    df = _read(block, job)
    failures, counts = check_block(df, job.rules, block.url), label_counts(df, job.rules)
    return (len(df), failures, counts, *_buckets(df, job))


def _cross_bucket(job: _Job, *parts: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Cross-block failures of one hash bucket, from every block's part of it."""
    found = [_empty_failures()]
    for c in job.rules.unique:
        keys = [p[f"u_{c}"] for p in parts if f"u_{c}" in p]
        if keys:
            found.append(duplicated(pl.concat(keys), c))
    keys = [p["t"] for p in parts if "t" in p]
    if keys:
        by = [f"{RESERVED}h1", f"{RESERVED}h2"]
        found.append(conflicting(pl.concat(keys), by, job.rules.label, job.rules.label))
    return pl.concat(found)


def _second_pass(
    i: int, block: Block, job: _Job, rare: list[Any], failures: pl.DataFrame, cross: pl.DataFrame
) -> pl.DataFrame:
    """Split one block into its valid part and its quarantine part; its failures."""
    df = _read(block, job)
    failures = pl.concat([failures, cross, rare_failures(df, job.rules, rare)])
    valid, quarantine = split(df, failures)
    valid.write_parquet(Path(job.out, "valid", f"part-{i:05d}.parquet"))
    quarantine.write_parquet(Path(job.out, "quarantine", f"part-{i:05d}.parquet"))
    return failures


def _run_tasks(
    fn: Callable[..., Any],
    args: list[tuple[Any, ...]],
    engine: Literal["ray", "local"],
    tick: Callable[[], None],
    returns: int = 1,
) -> list[Any]:
    """``fn(*a)`` for each ``a`` of ``args``, in order: in this process (the values), or as Ray
    tasks (their object refs, which the next tasks take as arguments; a value stays in Ray's
    object store, which spills to disk when full, until a task or :func:`_get` reads it)."""
    if engine == "local":
        done = []
        for a in args:
            done.append(fn(*a))
            tick()
        return done
    import ray

    task = ray.remote(num_returns=returns)(_guarded)
    refs = [task.remote(fn, returns, *a) for a in args]
    pending = [r[0] if returns > 1 else r for r in refs]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        if returns > 1:
            _get(ready, "ray")  # the first value is small: it raises the task's error early
        tick()
    return refs


def _guarded(fn: Callable[..., Any], returns: int, *args: Any) -> Any:
    """``fn(*args)``, or its :class:`CurationError` as every value: returned, not raised, or
    Ray would print a traceback for each value no one reads. Frames travel as Arrow tables."""
    try:
        return _wire(fn(*_wire(args, back=True)))
    except CurationError as e:
        return e if returns == 1 else (e,) * returns


def _wire(value: Any, back: bool = False) -> Any:
    """Polars frames in ``value`` (a frame, or tuples and dicts of them) as Arrow tables, or
    ``back``: Ray stores an Arrow table's buffers as they are, where a polars frame is pickled
    (3-5 times slower to put and to get)."""
    if isinstance(value, tuple):
        return tuple(_wire(v, back) for v in value)
    if isinstance(value, dict):
        return {k: _wire(v, back) for k, v in value.items()}
    if back and isinstance(value, pa.Table):
        return pl.DataFrame(pl.from_arrow(value))
    return value.to_arrow() if not back and isinstance(value, pl.DataFrame) else value


def _get(values: list[Any], engine: Literal["ray", "local"]) -> list[Any]:
    """The values behind object refs (local: the values); a task's error raised whole."""
    if engine == "ray":
        import ray

        values = [_wire(v, back=True) for v in ray.get(values)]
    for v in values:
        if isinstance(v, CurationError):
            raise v
    return values


def _by_block(failures: pl.DataFrame, blocks: list[Block], rows: list[int]) -> list[pl.DataFrame]:
    """``failures`` split by the block whose rows they name."""
    return [
        failures.filter(pl.col(ROW).is_between(b.first_row, b.first_row + n, closed="left"))
        for b, n in zip(blocks, rows)
    ]


def _prepare_out(out: Path) -> None:
    for sub in ("valid", "quarantine"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)


def _passes(
    blocks: list[Block], job: _Job, engine: Literal["ray", "local"], tick: Callable[[], None]
) -> tuple[int, pl.DataFrame]:
    """Both passes over the blocks, the cross-block checks between them: rows, failures."""
    first = _run_tasks(_first_pass, [(b, job) for b in blocks], engine, tick, returns=3 + job.buckets)
    rows: list[int] = _get([f[0] for f in first], engine)
    args = [(job, *(f[3 + k] for f in first)) for k in range(job.buckets)]
    cross = pl.concat(_get(_run_tasks(_cross_bucket, args, engine, tick), engine))
    first, args = [f[:3] for f in first], []  # drop the keys: Ray frees them from its store
    counts = _get([f[2] for f in first], engine)
    rare = rare_classes(pl.concat(counts), job.rules.label, job.rules.min_per_class) if counts else []
    args = [
        (i, b, job, rare, f[1], c)
        for i, (b, f, c) in enumerate(zip(blocks, first, _by_block(cross, blocks, rows)))
    ]
    failures = _get(_run_tasks(_second_pass, args, engine, tick), engine)
    return sum(rows), pl.concat([_empty_failures(), *failures])


def validate_source(
    source: str | Path,
    schema: pap.DataFrameSchema,
    out: str | Path,
    settings: ValidateConfig | None = None,
    columns: Columns | None = None,
    *,
    engine: Engine = "auto",
    block_rows: int = 1_048_576,
    ray_address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Validate files block by block; write the valid rows, the quarantine and a report.

    Parameters
    ----------
    source : str or Path
        A Parquet, CSV or JSON Lines file, a folder or a glob; local, ``s3://`` or ``lakefs://``.
    schema : pandera.polars.DataFrameSchema
        The contract.
    out : str or Path
        Output folder (local or a mount every Ray node sees): ``valid/part-*.parquet``,
        ``quarantine/part-*.parquet`` (in input order) and ``report.json``.
    engine : {"auto", "ray", "local"}
        ``"ray"`` runs Ray tasks (two a block, one a hash bucket), ``"local"`` the same work in this
        process; ``"auto"`` runs in process below ``local_below`` input rows.
    block_rows : int
        Rows per block (Parquet: whole row groups; CSV and JSON Lines: a file a block).
    ray_address : str, optional
        A Ray cluster to join when Ray is not yet started (``None``: local Ray).
    progress : callable, optional
        Called as ``progress(done, total)`` after each task: two passes per block and,
        between them, one task per hash bucket of the cross-block checks.
    settings, columns
        As in :func:`validate`.

    Returns
    -------
    dict
        The report (also written to ``out/report.json``).

    Raises
    ------
    DataError
        A file cannot be read, or a column is missing or has the wrong type (naming the file).
    ValidationGateError
        Too many rows quarantined; the outputs and the report are written first.

    Examples
    --------
    >>> import tempfile, polars as pl, pandera.polars as pap
    >>> d = Path(tempfile.mkdtemp())
    >>> pl.DataFrame({"id": [1, 1, 2]}).write_parquet(d / "in.parquet")
    >>> s = pap.DataFrameSchema({"id": pap.Column(int, unique=True)})
    >>> validate_source(d / "in.parquet", s, d / "out")["by_check"]
    {'unique': 2}
    """
    t0 = time.perf_counter()
    out = Path(out)
    v, c = settings or ValidateConfig(max_invalid_fraction=1.0), columns or Columns()
    rules = make_rules(
        schema, text=c.text, label=c.label, labels=v.labels, min_per_class=v.min_per_class, id=c.id
    )
    blocks = plan_blocks(source, block_rows)
    rows = estimate_rows(blocks)
    engine_used = _pick_engine(engine, rows, v.local_below)
    if engine_used == "ray":
        from curation.support.engine import ensure_ray

        ensure_ray(ray_address)
    _prepare_out(out)
    first = blocks[0].url if blocks else ""
    names = tuple(column_names(first)) if first else ()
    job = _Job(rules, str(out), max(1, math.ceil(rows / BUCKET_ROWS)), names, first)
    total = 2 * len(blocks) + job.buckets
    count = iter(range(1, total + 1))

    def tick() -> None:
        if progress is not None:
            progress(next(count), total)

    n_rows, failures = _passes(blocks, job, engine_used, tick)
    report = make_report(
        n_rows,
        failures,
        v.max_invalid_fraction,
        source=str(source),
        engine=engine_used,
        blocks=len(blocks),
        seconds=round(time.perf_counter() - t0, 3),
    )
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    log.info("validated %s: %d valid, %d quarantined", source, report["valid"], report["quarantined"])
    _gate(report, str(source), pl.scan_parquet(out / "quarantine" / "*.parquet"))
    return report


def read_outputs(out: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The valid rows and the quarantine that :func:`validate_source` wrote, in input order."""
    valid, quarantine = (
        pl.read_parquet(sorted(Path(out, sub).glob("*.parquet"))) for sub in ("valid", "quarantine")
    )
    return valid, quarantine
