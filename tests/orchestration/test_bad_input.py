"""Bad input through the real commands: an error naming the file, row or column (exit 2), or
every input row in exactly one of valid and quarantine. No traceback ever reaches the user."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.support.cli import cli
from tests.support.projects import make_project

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = """\
schema_type: polars_dataframe
api: polars
columns:
  id: {dtype: String}
  text: {dtype: String, nullable: false}
  label: {dtype: String, nullable: true}
"""


def rows(n: int, start: int = 0, **extra: list[object]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(start, start + n)],
            "text": [f"text number {i}" for i in range(start, start + n)],
            "label": ["a" if i % 2 else "b" for i in range(start, start + n)],
            **extra,
        }
    )


def write(path: Path, data: bytes | pl.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, pl.DataFrame):
        data.write_csv(path) if path.suffix == ".csv" else data.write_parquet(path)
    else:
        path.write_bytes(data)
    return path


def truncated(path: Path) -> bytes:
    rows(50).write_parquet(path)
    return path.read_bytes()[:-200]


#: name -> (the files, given a folder; the texts the one-line error must hold)
ERRORS: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "second file spells the label lable": (
        lambda d: (
            (
                write(d / "in" / "a.csv", rows(5)),
                write(d / "in" / "b.csv", rows(5, 5).rename({"label": "lable"})),
            )[0].parent
        ),
        ["b.csv", "'label'", "lable"],
    ),
    "a column named twice": (
        lambda d: write(d / "in.csv", b"id,text,label,label\nr1,hi,a,b\n"),
        ["in.csv", "'label'", "2 times"],
    ),
    "a broken JSON Lines line": (
        lambda d: write(d / "in.jsonl", b'{"id": "r1", "text": "a", "label": "x"}\n{"id": "r2", "text": \n'),
        ["in.jsonl", "line 2", "not JSON"],
    ),
    "a ragged CSV row": (
        lambda d: write(d / "in.csv", b"id,text,label\nr1,a,x\nr2,b\nr3,c,y\n"),
        ["in.csv", "row 2", "2 fields"],
    ),
    "an id of another type": (
        lambda d: write(
            d / "in.csv", b"id,text,label\n" + b"".join(b"%d,t,x\n" % i for i in range(300)) + b"zz,t,y\n"
        ),
        ["in.csv", "'id'", "row 301", "'zz'"],
    ),
    "a header and no rows": (lambda d: write(d / "in.csv", b"id,text,label\n"), ["in.csv", "no rows"]),
    "an empty file": (lambda d: write(d / "in.csv", b""), ["in.csv", "empty"]),
    "a truncated Parquet file": (
        lambda d: write(d / "in.parquet", truncated(d / "whole.parquet")),
        ["in.parquet", "Parquet"],
    ),
    "another encoding": (
        lambda d: write(d / "in.csv", "id,text,label\nr1,café,x\n".encode("latin-1")),
        ["in.csv", "line 2", "not UTF-8"],
    ),
    "a reserved column name": (
        lambda d: write(d / "in.parquet", rows(4, curation_row=[1, 2, 3, 4])),
        ["in.parquet", "'curation_row'", "reserved"],
    ),
}

#: name -> (the data; the user columns that must come out untouched)
KEPT: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "ordinary names of curation's old columns": (
        lambda d: write(
            d / "in.parquet",
            rows(
                40,
                value=list(range(40)),
                column=["c"] * 40,
                check=["k"] * 40,
                reason=["r"] * 40,
                _row=list(range(40)),
            ).with_columns(pl.when(pl.col("id") == "r3").then(None).otherwise(pl.col("text")).alias("text")),
        ),
        ["value", "column", "check", "reason", "_row"],
    ),
    "NUL bytes in a cell": (lambda d: write(d / "in.csv", b"id,text,label\nr1,a\x00b,x\nr2,c,y\n"), []),
    "a 5 MB cell": (lambda d: write(d / "in.parquet", rows(3, note=["x" * 5_000_000, "y", "z"])), ["note"]),
    "the same id in two files": (
        lambda d: (
            (write(d / "in" / "a.parquet", rows(10)), write(d / "in" / "b.parquet", rows(10, 8)))[0].parent
        ),
        [],
    ),
}


def no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_data_is_one_line_naming_the_file_row_or_column(case: str, tmp_path: Path) -> None:
    make, expected = ERRORS[case]
    data = make(tmp_path)
    write(tmp_path / "schema.yaml", SCHEMA.encode())
    r = cli(
        "validate",
        str(data),
        "--schema",
        str(tmp_path / "schema.yaml"),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    no_traceback(r)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("case", list(KEPT))
def test_odd_but_valid_data_loses_no_row_and_no_column(case: str, tmp_path: Path) -> None:
    make, columns = KEPT[case]
    data = make(tmp_path)
    write(tmp_path / "schema.yaml", SCHEMA.encode())
    r = cli(
        "validate",
        str(data),
        "--schema",
        str(tmp_path / "schema.yaml"),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    no_traceback(r)
    assert r.returncode == 0, r.stdout + r.stderr
    from curation.support.data import read_table

    source = read_table(data)
    valid = pl.read_parquet(tmp_path / "out" / "valid")
    quarantine = pl.read_parquet(tmp_path / "out" / "quarantine")
    assert len(valid) + len(quarantine) == len(source)
    for col in columns:
        assert col in valid.columns and col in quarantine.columns
    if case == "the same id in two files":
        assert sorted(quarantine["id"].to_list()) == sorted(["r8", "r8", "r9", "r9"])
    if case == "ordinary names of curation's old columns":
        assert quarantine["id"].to_list() == ["r3"] and quarantine["value"].to_list() == [3]


@pytest.mark.slow
def test_curation_run_reads_data_through_the_same_check(tmp_path: Path, data_dir: Path) -> None:
    """The misspelled column in a second file fails ``curation run`` as it fails validate."""
    loop = make_project(
        tmp_path, data_dir, n_classes=2, per_class=20, engine="local", version={"name": "local"}
    )
    pool = pl.read_parquet(tmp_path / "data" / "pool.parquet")
    (tmp_path / "data" / "pool.parquet").unlink()
    write(tmp_path / "data" / "pool" / "a.parquet", pool.head(20))
    write(tmp_path / "data" / "pool" / "b.parquet", pool.tail(len(pool) - 20).rename({"label": "lable"}))
    doc = yaml.safe_load(loop.read_text())
    loop.write_text(yaml.safe_dump({**doc, "dataset": "data/pool"}))
    r = cli("run", str(loop), cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "b.parquet" in r.stderr and "'label'" in r.stderr
    assert not (tmp_path / "annotations").exists()  # nothing went to annotators


@pytest.mark.slow
def test_a_round_keeps_user_columns_named_like_curations(tmp_path: Path, data_dir: Path) -> None:
    loop = make_project(
        tmp_path, data_dir, n_classes=3, per_class=30, budget=10, engine="local", version={"name": "local"}
    )
    pool = pl.read_parquet(tmp_path / "data" / "pool.parquet")
    n = len(pool)
    pool.with_columns(
        value=pl.int_range(n), check=pl.lit("k"), reason=pl.lit("r"), score=pl.lit(0.5), _row=pl.int_range(n)
    ).write_parquet(tmp_path / "data" / "pool.parquet")
    r = cli("run", str(loop), cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 0, r.stderr[-3000:]
    tasks = pl.read_parquet(tmp_path / "rounds" / "unit" / "round-1" / "tasks.parquet")
    for col in ("value", "check", "_row", "data.reason", "data.score"):
        assert col in tasks.columns, tasks.columns
    quarantine = pl.read_parquet(tmp_path / "rounds" / "unit" / "round-1" / "quarantine.parquet")
    assert quarantine["id"].to_list() == ["bad-1"] and "value" in quarantine.columns


BAD_CONFIG = {
    "malformed YAML": (
        "loops/unit.yaml",
        lambda t: t + "strategy: {name: [\n",
        ["unit.yaml", "line", "column"],
    ),
    "a key given twice": (
        "loops/unit.yaml",
        lambda t: t + "budget: 3\n",
        ["unit.yaml", "'budget' is given twice"],
    ),
    "a bad connector name": (
        "connectors/oracle.yaml",
        lambda t: t.replace("name: oracle", "name: orcale"),
        ["oracle.yaml", "unknown connector 'orcale'"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIG))
def test_bad_config_is_one_line_naming_the_file(case: str, tmp_path: Path, data_dir: Path) -> None:
    make_project(tmp_path, data_dir, n_classes=2, per_class=20, engine="local", version={"name": "local"})
    file, change, expected = BAD_CONFIG[case]
    (tmp_path / file).write_text(change((tmp_path / file).read_text()))
    r = cli("run", "loops/unit.yaml", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_a_missing_token_is_found_before_any_compute(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "connectors").mkdir(parents=True)
    (tmp_path / "connectors" / "ls.yaml").write_text(
        yaml.safe_dump(
            {"name": "label_studio", "url": "http://127.0.0.1:9", "token_env": "CURATION_NO_SUCH_TOKEN"}
        )
    )
    make_project(
        tmp_path,
        data_dir,
        n_classes=2,
        per_class=20,
        engine="local",
        version={"name": "local"},
        connector="connectors/ls.yaml",
    )
    r = cli("run", "loops/unit.yaml", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 1 and "no token in $CURATION_NO_SUCH_TOKEN" in r.stderr
    assert "validate" not in r.stderr and not (tmp_path / ".curation").exists()


def test_credentials_in_a_url_are_refused_and_urls_are_redacted(tmp_path: Path, data_dir: Path) -> None:
    make_project(
        tmp_path,
        data_dir,
        n_classes=2,
        per_class=20,
        engine="local",
        version={"name": "dvc", "remote": "https://alice:s3cret@dvc.example.com/store"},
    )
    r = cli("run", "loops/unit.yaml", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 2 and "version.remote" in r.stderr and "credentials" in r.stderr
    assert "s3cret" not in r.stderr and "alice" not in r.stderr
    write(tmp_path / "schema.yaml", SCHEMA.encode())
    write(tmp_path / "d.parquet", rows(10))
    hook = "https://hooks.example.invalid/services/T000/B000/XYZSECRET"
    r = cli(
        "sweep",
        str(tmp_path / "d.parquet"),
        "--schema",
        str(tmp_path / "schema.yaml"),
        "--history",
        str(tmp_path / "sweeps"),
        "--webhook",
        hook,
        "--detector",
        "label",
        "--folds",
        "2",
        cwd=tmp_path,
    )
    no_traceback(r)
    assert (
        r.returncode == 1 and "XYZSECRET" not in r.stdout + r.stderr and "hooks.example.invalid" in r.stderr
    )
    summary = json.loads(next((tmp_path / "sweeps").glob("sweep-*/summary.json")).read_text())
    assert "XYZSECRET" not in json.dumps(summary)


@pytest.mark.slow
def test_a_bad_second_file_on_ray_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    """On Ray the error comes back from a task: the same one line, and nothing from Ray's
    'unhandled error' report of the failed task's unread values."""
    make, expected = ERRORS["second file spells the label lable"]
    data = make(tmp_path)
    write(tmp_path / "schema.yaml", SCHEMA.encode())
    r = cli(
        "validate", str(data), "--schema", str(tmp_path / "schema.yaml"),
        "--out", str(tmp_path / "out"), "--engine", "ray", cwd=tmp_path,
    )  # fmt: skip
    no_traceback(r)
    assert r.returncode == 2 and "Unhandled error" not in r.stderr, r.stderr[-3000:]
    assert all(e in r.stderr for e in expected), r.stderr
