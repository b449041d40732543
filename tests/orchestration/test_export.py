"""``curation export`` on a real two-round project: every row with its given and final label,
where the final label came from, and the round's flags; ids keep their dtype."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.support.cli import cli
from tests.support.projects import make_project

ROOT = Path(__file__).resolve().parents[2]
FLIPPED = 6


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Two rounds (oracle, local store) on Int64 ids, with 6 given labels planted wrong (their
    truth in ``hidden_label``) and half the budget for reviews of suspected label errors."""
    tmp = tmp_path_factory.mktemp("export")
    loop = make_project(
        tmp,
        data_dir,
        n_classes=3,
        per_class=40,
        budget=10,
        engine="local",
        version={"name": "local"},
        strategy={"name": "hybrid", "review_share": 0.5},
    )
    pool = pl.read_parquet(tmp / "data" / "pool.parquet")
    classes = sorted(pool["hidden_label"].unique().to_list())
    labeled = pool.with_row_index("i").filter(pl.col("label").is_not_null() & (pl.col("id") != "bad-1"))
    flip = set(labeled.group_by("hidden_label").head(FLIPPED // 3)["i"].to_list())
    pool = pool.with_row_index("i").with_columns(
        pl.when(pl.col("i").is_in(list(flip)))
        .then(pl.col("hidden_label").replace({c: classes[(k + 1) % 3] for k, c in enumerate(classes)}))
        .otherwise(pl.col("label"))
        .alias("label"),
        pl.when(pl.col("id") == "bad-1")
        .then(pl.lit("999999"))
        .otherwise(pl.col("id"))
        .cast(pl.Int64)
        .alias("id"),
    )
    pool.drop("i").write_parquet(tmp / "data" / "pool.parquet")
    schema = yaml.safe_load((tmp / "schemas" / "example.yaml").read_text())
    schema["columns"]["id"]["dtype"] = "Int64"
    (tmp / "schemas" / "example.yaml").write_text(yaml.safe_dump(schema))
    for _ in (1, 2):
        r = cli("run", str(loop))
        assert r.returncode == 0, r.stderr[-3000:]
    return loop


@pytest.mark.slow
def test_export_writes_every_row_with_its_labels_their_source_and_the_flags(project: Path) -> None:
    root = project.parent.parent
    data = pl.read_parquet(root / "data" / "pool.parquet")
    r = cli("export", str(project), "--to", str(root / "out" / "curated.parquet"))
    assert r.returncode == 0, r.stderr
    assert "round 2 (unit/round-2)" in r.stdout
    out = pl.read_parquet(root / "out" / "curated.parquet")
    assert out.schema["id"] == pl.Int64 and out["id"].to_list() == data["id"].to_list()
    assert out.columns[: len(data.columns)] == data.columns
    assert out["given_label"].to_list() == data["label"].to_list()

    labels = pl.read_parquet(root / "labels" / "unit.parquet")
    by_id = {int(i): row for i, row in zip(labels["id"], labels.iter_rows(named=True), strict=True)}
    truth = dict(zip(data["id"], data["hidden_label"], strict=True))
    for row in out.iter_rows(named=True):
        mine = by_id.get(row["id"])
        if mine is None:  # nobody answered: the given label, if any
            assert row["label"] == row["given_label"]
            assert row["label_source"] == ("original" if row["given_label"] is not None else None)
            assert row["reviewed"] is False and row["label_round"] is None
        elif mine["kind"] == "label":
            assert row["given_label"] is None and row["label"] == truth[row["id"]]  # the oracle's answer
            assert row["label_source"] == "annotator" and row["label_round"] in (1, 2)
        else:
            assert row["reviewed"] is True and row["label"] == truth[row["id"]]
            fixed = row["given_label"] != truth[row["id"]]
            assert row["label_source"] == ("review correction" if fixed else "original")
    sources = out["label_source"].value_counts()
    counts = dict(zip(sources["label_source"], sources["count"], strict=True))
    assert counts.get("annotator", 0) == int((labels["kind"] == "label").sum()) > 10  # two rounds of answers
    assert counts.get("review correction", 0) >= 1  # a planted error was reviewed and corrected
    assert counts[None] == int(data["label"].is_null().sum()) - counts["annotator"]

    issues = pl.read_parquet(root / "rounds" / "unit" / "round-2" / "issues.parquet")
    flagged = set(issues.filter(pl.col("issue") == "label")["id"].cast(pl.Int64).to_list())
    assert flagged and set(out.filter(pl.col("flags").list.contains("label"))["id"].to_list()) == flagged
    assert set(out.filter(pl.col("score_label").is_not_null())["id"].to_list()) == flagged
    bad = out.filter(pl.col("id") == 999999).row(0, named=True)  # the row with an empty text
    assert bad["flags"] == ["quarantine"] and "text" in bad["quarantine_reason"]
    assert f"{len(out)} rows" in r.stdout and f"{counts['annotator']} annotator" in r.stdout


@pytest.mark.slow
def test_export_of_an_earlier_round_and_as_csv_and_a_datasets_folder(project: Path) -> None:
    import datasets

    root = project.parent.parent
    for args in (("--round", "1", "--to", "round1.parquet"), ("--to", "round2.parquet")):
        r = cli("export", str(project), *args[:-1], str(root / "out" / args[-1]))
        assert r.returncode == 0, r.stderr
    one, two = (pl.read_parquet(root / "out" / f"round{n}.parquet") for n in (1, 2))
    rounds = one.filter(pl.col("label_round").is_not_null())["label_round"].unique().to_list()
    assert rounds == [1]  # round 2's answers are not in round 1's export
    assert (one["label_source"] == "annotator").sum() < (two["label_source"] == "annotator").sum()

    r = cli("export", str(project), "--format", "hf", "--to", str(root / "out" / "hf"))
    assert r.returncode == 0, r.stderr
    ds = datasets.load_from_disk(str(root / "out" / "hf"))
    assert ds.features["id"].dtype == "int64" and ds.num_rows == len(two)
    back = ds.to_polars()
    assert back["id"].to_list() == two["id"].to_list() and back["label"].to_list() == two["label"].to_list()
    assert back["flags"].to_list() == two["flags"].to_list()

    r = cli("export", str(project), "--to", str(root / "out" / "curated.csv"))
    assert r.returncode == 0, r.stderr
    csv = pl.read_csv(root / "out" / "curated.csv")
    assert (
        csv.schema["id"] == pl.Int64 and "quarantine" in csv.filter(pl.col("id") == 999999)["flags"].to_list()
    )


@pytest.mark.slow
def test_export_errors_are_one_line_and_a_changed_dataset_is_noted(project: Path) -> None:
    root = project.parent.parent
    r = cli("export", str(project), "--round", "7", "--to", str(root / "out" / "x.parquet"))
    assert r.returncode == 1 and "no round 7; rounds: 1, 2" in r.stderr and "Traceback" not in r.stderr
    r = cli("export", str(project), "--to", str(root / "out" / "x.txt"))
    assert r.returncode == 2 and "--to" in r.stderr and ".parquet" in r.stderr
    r = cli("export", str(project), "--format", "xlsx", "--to", str(root / "out" / "x.parquet"))
    assert r.returncode == 2 and "valid choices: csv, hf, jsonl, parquet" in r.stderr

    # the local store does not version the dataset: a row added since the round is exported,
    # the change noted, and the quarantine still lands on its row (matched by id)
    data = pl.read_parquet(root / "data" / "pool.parquet")
    extra = data.head(1).with_columns(
        pl.lit(123456789, pl.Int64).alias("id"), pl.lit(None, pl.String).alias("label")
    )
    pl.concat([extra, data]).write_parquet(root / "data" / "pool.parquet")
    r = cli("export", str(project), "--round", "1", "--to", str(root / "out" / "changed.parquet"))
    assert r.returncode == 0 and "changed since round 1" in r.stderr, r.stderr
    out = pl.read_parquet(root / "out" / "changed.parquet")
    assert len(out) == len(data) + 1 and out["id"][0] == 123456789
    assert out.filter(pl.col("id") == 999999)["flags"].to_list() == [["quarantine"]]
    data.write_parquet(root / "data" / "pool.parquet")
