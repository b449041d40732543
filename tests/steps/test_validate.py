"""Validation: nothing lost, every kind of failure caught where it is, both engines agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandera.polars as pap
import polars as pl
import pytest
from pandera.api.checks import Check
from typer.testing import CliRunner

from curation.cli import app
from curation.config import ValidateConfig
from curation.errors import DataError, ValidationGateError
from curation.steps import validate as v
from curation.steps.validate import (
    CHECK,
    COLUMN,
    REASON,
    REASON_COLUMNS,
    ROW,
    VALUE,
    load_schema,
    read_outputs,
    validate,
    validate_source,
)
from curation.support.data import ROW_BITS

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["a", "b", "c", "d", "rare"]


def contract() -> pap.DataFrameSchema:
    """id unique, text non-empty, label in a set, two numbers in [0, 1]."""
    return pap.DataFrameSchema(
        {
            "id": pap.Column(pl.Int64, unique=True),
            "text": pap.Column(pl.String, Check.str_length(min_value=1)),
            "label": pap.Column(pl.String, Check.isin(LABELS)),
            "x": pap.Column(pl.Float64, Check.in_range(0, 1)),
            "y": pap.Column(pl.Float64, Check.in_range(0, 1), nullable=True),
        }
    )


def make_data(n: int = 2_000, seed: int = 0) -> tuple[pl.DataFrame, dict[int, set[str]]]:
    """Generated rows with every kind of failure planted; returns the table and row -> checks.

    Planted pairs (duplicate ids, conflicting texts) sit far apart so they fall in different
    blocks and files.
    """
    rng = np.random.default_rng(seed)
    df = pl.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "text": [f"text {i}" for i in range(n)],
            "label": [LABELS[i % 4] for i in range(n)],
            "x": rng.random(n),
            "y": rng.random(n),
        }
    )
    half = n // 2
    plants: dict[int, tuple[str, object, str]] = {
        3: ("text", None, "not_nullable"),
        10: ("text", "", "str_length(1, None)"),
        17: ("label", "zebra", f"isin({LABELS})"),
        25: ("x", 7.5, "in_range(0, 1)"),
        31: ("x", None, "not_nullable"),
        40: ("label", None, "not_nullable"),
        45: ("id", 45 + half, "unique"),  # the same id as row 45 + half
        51: ("text", f"text {50 + half}", "conflicting_duplicate"),  # row 50 + half's text
        60: ("label", "rare", "min_per_class(3)"),
        n - 1: ("label", "rare", "min_per_class(3)"),
    }
    expected: dict[int, set[str]] = {}
    for row, (col, value, check) in plants.items():
        df = df.with_columns(
            pl.when(pl.int_range(pl.len()) == row)
            .then(pl.lit(value, df.schema[col]))
            .otherwise(pl.col(col))
            .alias(col)
        )
        expected.setdefault(row, set()).add(check)
    expected[17].add("min_per_class(3)")  # "zebra" is also a class of one row
    expected[45 + half] = {"unique"}
    # conflicting only if the labels differ: row 51 has label "d", row 50 + half label "c"
    assert df["label"][51] != df["label"][50 + half]
    expected[50 + half] = {"conflicting_duplicate"}
    return df, expected


def assert_nothing_lost(df: pl.DataFrame, valid: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    """valid + quarantine = input, row for row, every column."""
    assert len(valid) + len(quarantine) == len(df)
    indexed = df.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    back = pl.concat(
        [
            valid.join(indexed, on=df.columns, how="inner", nulls_equal=True).select(ROW, *df.columns),
            quarantine.select(ROW, *df.columns),
        ]
    ).sort(ROW)
    assert back.equals(indexed), "rows changed, lost or duplicated"
    assert set(REASON_COLUMNS) <= set(quarantine.columns)


def checks_by_row(quarantine: pl.DataFrame) -> dict[int, set[str]]:
    return {r[ROW]: set(r[CHECK].split("; ")) for r in quarantine.select(ROW, CHECK).to_dicts()}


def test_banking77_nothing_lost(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "banking77_train.parquet"
    df = pl.read_parquet(path)
    schema = load_schema(ROOT / "schemas" / "banking77.yaml")
    res = validate(df, schema, engine="local")
    assert_nothing_lost(df, res.valid, res.quarantine)
    broken = df.with_row_index(ROW).filter(pl.col("text").is_null() | pl.col("label").is_null())
    assert sorted(res.quarantine[ROW].to_list()) == broken[ROW].cast(pl.Int64).to_list()
    report = validate_source(path, schema, tmp_path / "out", engine="local", block_rows=1)
    valid, quarantine = read_outputs(tmp_path / "out")
    assert_nothing_lost(df, valid, quarantine)
    assert quarantine.equals(res.quarantine) and valid.equals(res.valid)
    assert report["by_column"] == {"label": 3, "text": 2}
    assert report["rows"] == len(df) and report["quarantined"] == 5


def test_every_kind_of_failure_in_memory() -> None:
    df, expected = make_data()
    res = validate(df, contract(), ValidateConfig(min_per_class=3, max_invalid_fraction=1.0), engine="local")
    assert_nothing_lost(df, res.valid, res.quarantine)
    assert checks_by_row(res.quarantine) == expected
    assert res.report["by_check"]["unique"] == 2
    assert res.report["by_check"]["min_per_class(3)"] == 3
    row = res.quarantine.filter(pl.col(ROW) == 25).row(0, named=True)
    assert (row[COLUMN], row[VALUE], row[REASON]) == ("x", "7.5", "x: in_range(0, 1)")


def write_parts(df: pl.DataFrame, folder: Path, files: int = 3) -> None:
    """The table as several Parquet files of small row groups (so blocks and files split it)."""
    folder.mkdir(parents=True)
    size = -(-len(df) // files)
    for i in range(files):
        df.slice(i * size, size).write_parquet(folder / f"part-{i}.parquet", row_group_size=128)


def test_every_kind_of_failure_across_blocks_files_and_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df, expected = make_data()
    write_parts(df, tmp_path / "in")
    monkeypatch.setattr(v, "BUCKET_ROWS", 300)  # 7 hash buckets: cross-block checks per bucket
    report = validate_source(
        tmp_path / "in",
        contract(),
        tmp_path / "out",
        ValidateConfig(min_per_class=3, max_invalid_fraction=1.0),
        engine="local",
        block_rows=256,
    )
    valid, quarantine = read_outputs(tmp_path / "out")
    size = -(-len(df) // 3)
    step = 1 << ROW_BITS  # _row is file index * 2**40 + row in the file
    quarantine = quarantine.with_columns(  # back to a row of the whole table
        (pl.col(ROW) // step * size + pl.col(ROW) % step).alias(ROW)
    )
    assert_nothing_lost(df, valid, quarantine)
    assert checks_by_row(quarantine) == expected
    assert report["blocks"] > 6 and report["quarantined"] == len(expected)


def test_csv_and_jsonl_inputs_give_the_same_split(tmp_path: Path) -> None:
    df, expected = make_data(400)
    df.write_csv(tmp_path / "in.csv")
    df.write_ndjson(tmp_path / "in.jsonl")
    for name in ("in.csv", "in.jsonl"):
        validate_source(
            tmp_path / name,
            contract(),
            tmp_path / f"out-{name}",
            ValidateConfig(min_per_class=3, max_invalid_fraction=1.0),
        )
        valid, quarantine = read_outputs(tmp_path / f"out-{name}")
        assert_nothing_lost(df, valid, quarantine)
        assert checks_by_row(quarantine) == expected


def test_labels_argument_and_python_model(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "import pandera.polars as pa\n"
        "class Model(pa.DataFrameModel):\n"
        "    text: str = pa.Field(str_length={'min_value': 1})\n"
        "    label: str\n"
    )
    schema = load_schema(f"{tmp_path / 'm.py'}:Model")
    df = pl.DataFrame({"text": ["a", "b", ""], "label": ["x", "y", "x"]})
    res = validate(df, schema, ValidateConfig(labels=["x"], max_invalid_fraction=1.0), engine="local")
    assert checks_by_row(res.quarantine) == {1: {"isin(['x'])"}, 2: {"str_length(1, None)"}}


def test_gate_fails_with_the_fraction_and_keeps_the_outputs(tmp_path: Path) -> None:
    df, expected = make_data(400)
    df.write_parquet(tmp_path / "in.parquet")
    with pytest.raises(ValidationGateError, match=r"max_invalid_fraction=1\.00%") as e:
        validate_source(
            tmp_path / "in.parquet", contract(), tmp_path / "out", ValidateConfig(max_invalid_fraction=0.01)
        )
    assert len(e.value.failure_cases.collect()) == len(expected) - 2  # no min_per_class here: rows 60, 399
    assert (tmp_path / "out" / "report.json").exists()
    with pytest.raises(ValidationGateError):
        validate(df, contract(), ValidateConfig(max_invalid_fraction=0.01), engine="local")


@pytest.mark.parametrize("change", ["missing", "type"])
def test_missing_column_or_wrong_type_names_file_and_column(tmp_path: Path, change: str) -> None:
    df, _ = make_data(400)
    df = df.drop("x") if change == "missing" else df.with_columns(pl.col("x").cast(pl.String))
    df.write_parquet(tmp_path / "in.parquet")
    with pytest.raises(DataError) as e:
        validate_source(tmp_path / "in.parquet", contract(), tmp_path / "out")
    assert e.value.path == str(tmp_path / "in.parquet") and e.value.column == "x"
    assert ("missing column" if change == "missing" else "expected type Float64, found String") in str(
        e.value
    )


@pytest.mark.slow
def test_ray_and_in_process_paths_agree(tmp_path: Path, ray_local: None) -> None:
    df, expected = make_data()
    write_parts(df, tmp_path / "in")
    outs = {}
    for engine in ("ray", "local"):
        report = validate_source(
            tmp_path / "in",
            contract(),
            tmp_path / engine,
            ValidateConfig(min_per_class=3, max_invalid_fraction=1.0),
            engine=engine,
            block_rows=256,
        )
        assert report["engine"] == engine
        outs[engine] = read_outputs(tmp_path / engine)
    assert all(a.equals(b) for a, b in zip(outs["ray"], outs["local"]))
    assert len(outs["ray"][1]) == len(expected)
    in_ray = validate(
        df,
        contract(),
        ValidateConfig(min_per_class=3, max_invalid_fraction=1.0),
        engine="ray",
        block_rows=300,
    )
    in_process = validate(
        df, contract(), ValidateConfig(min_per_class=3, max_invalid_fraction=1.0), engine="local"
    )
    assert in_ray.valid.equals(in_process.valid) and in_ray.quarantine.equals(in_process.quarantine)
    assert in_ray.report == {**in_process.report, "engine": "ray"}
    with pytest.raises(DataError, match="column 'x'") as e:  # an error inside a Ray task
        validate(df.drop("x"), contract(), engine="ray", source="mem")
    assert e.value.path == "mem"


def test_auto_engine_runs_small_inputs_in_process(tmp_path: Path) -> None:
    df, _ = make_data(300)
    df.write_parquet(tmp_path / "in.parquet")
    report = validate_source(
        tmp_path / "in.parquet",
        contract(),
        tmp_path / "out",
        ValidateConfig(local_below=301, max_invalid_fraction=1.0),
    )
    assert report["engine"] == "local"
    assert (
        validate(df, contract(), ValidateConfig(local_below=301, max_invalid_fraction=1.0)).report["engine"]
        == "local"
    )


def test_cli_validate_writes_outputs_and_gates(tmp_path: Path, data_dir: Path) -> None:
    runner = CliRunner()
    args = [
        "validate",
        str(data_dir / "banking77_train.parquet"),
        "--schema",
        str(ROOT / "schemas" / "banking77.yaml"),
        "--out",
        str(tmp_path / "out"),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "not_nullable" in r.output and "10001" in r.output
    assert len(pl.read_parquet(tmp_path / "out" / "quarantine")) == 5
    r = runner.invoke(app, [*args, "--max-invalid-fraction", "0.0001"])
    assert r.exit_code == 3 and "above the gate" in r.output and "Traceback" not in r.output


def test_cli_schema_infer_writes_a_contract_that_loads(tmp_path: Path, data_dir: Path) -> None:
    r = CliRunner().invoke(app, ["schema", "infer", str(data_dir / "banking77_train.parquet")])
    assert r.exit_code == 0, r.output
    (tmp_path / "x.yaml").write_text(r.stdout)
    schema = load_schema(tmp_path / "x.yaml")
    assert schema.columns["id"].unique and schema.columns["text"].nullable
    assert len(schema.columns["label"].checks[0].statistics["allowed_values"]) == 77
    df = pl.read_parquet(data_dir / "banking77_train.parquet")
    assert len(validate(df, schema, engine="local").quarantine) == 0
