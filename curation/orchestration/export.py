"""``curation export``: the curated dataset as of a round, read through the loop's version store.

Every row of the dataset, with its given label, its final label and where that came from,
and the round's flags. The labels, issues and quarantine are the round's (read at its ref);
the dataset is read at the round's ref when the store versions it (DVC, lakeFS), else from
the working tree (the ``local`` store), checked against the hash the round's manifest holds.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import polars as pl

from curation.config import LoopConfig
from curation.connectors.base import RoundInfo, VersionStore, parquet_table
from curation.errors import ConfigError, VersioningError
from curation.orchestration.state import labels_path, rel, round_dir, store_for
from curation.steps.validate import RESERVED
from curation.support.data import read_table, require_columns
from curation.support.manifest import content_hash, read_manifest

log = logging.getLogger(__name__)

Format = Literal["parquet", "csv", "jsonl", "hf"]
#: The formats ``--to`` writes, by file suffix (``hf`` is a folder: ``datasets.save_to_disk``).
SUFFIXES: dict[str, Format] = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Where a final label came from.
SOURCES = ("original", "annotator", "review correction")
#: The columns an export adds to the dataset's (a dataset column of the same name keeps its
#: name; the added one is then ``curation_NAME``).
ADDED = (
    "given_label",
    "label_source",
    "label_round",
    "reviewed",
    "flags",
    "suggested_label",
    "quarantine_reason",
)


@dataclass
class CuratedDataset:
    """The curated dataset as of one round.

    Attributes
    ----------
    table : polars.DataFrame
        One row per dataset row, in the dataset's order: its columns (the id keeps its
        dtype), the label column holding the **final** label, ``given_label`` (the label in
        the dataset), ``label_source`` (``original``, ``annotator``, ``review correction``;
        null while unlabeled), ``label_round`` (when an annotator set it), ``reviewed`` (a
        reviewer checked the given label), ``flags`` (the round's issues on the row: ``label``,
        ``outlier``, ``near_duplicate``, ..., and ``quarantine``), one ``score_ISSUE`` per issue
        (null when not flagged), ``suggested_label`` (of a label issue) and
        ``quarantine_reason``.
    round : int
        The round.
    ref : str
        Its ref in the version store.
    dataset_from : str
        ``store`` (read at ``ref``) or ``working tree``.
    notes : list of str
        What a reader should know (the dataset changed since the round, ...).
    """

    table: pl.DataFrame
    round: int
    ref: str
    dataset_from: str
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Rows per label source (and ``unlabeled``), and rows with a flag.

        Examples
        --------
        >>> t = pl.DataFrame({"label_source": ["original", None], "flags": [["label"], []]})
        >>> CuratedDataset(t, 1, "round-1", "store").counts()
        {'rows': 2, 'original': 1, 'annotator': 0, 'review correction': 0, 'unlabeled': 1, 'flagged': 1}
        """
        src = self.table[_name(self.table, "label_source")]
        flags = self.table[_name(self.table, "flags")]
        out = {"rows": len(self.table), **{s: int((src == s).sum()) for s in SOURCES}}
        return {**out, "unlabeled": int(src.is_null().sum()), "flagged": int((flags.list.len() > 0).sum())}

    def _repr_html_(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return f"<p>round {self.round} ({self.ref}): {counts}</p>" + self.table._repr_html_()


def _name(table: pl.DataFrame, added: str) -> str:
    return f"{RESERVED}{added}" if f"{RESERVED}{added}" in table.columns else added


def round_info(store: VersionStore, loop: str, n: int | None = None) -> RoundInfo:
    """The committed round ``n`` of ``loop`` (default: its last).

    Raises
    ------
    VersioningError
        No such round; the message lists the rounds there are.
    """
    rounds = [r for r in store.history() if r.metadata.get("curation.loop", loop) == loop]
    if not rounds:
        raise VersioningError(f"loop {loop!r} has no committed round yet: run `curation run` first")
    if n is None:
        return max(rounds, key=lambda r: r.round)
    for r in rounds:
        if r.round == n:
            return r
    raise VersioningError(
        f"loop {loop!r} has no round {n}; rounds: {', '.join(str(r.round) for r in rounds)}"
    )


def _table_at(store: VersionStore, ref: str, path: str, files: dict[str, str]) -> pl.DataFrame | None:
    return parquet_table(store.read_bytes(ref, path), path, ref) if path in files else None


def dataset_at(cfg: LoopConfig, store: VersionStore, info: RoundInfo) -> tuple[pl.DataFrame, str, list[str]]:
    """The loop's dataset as of round ``info``: from the store when it versions the dataset,
    else the working tree (a note says when it differs from what the round read)."""
    path, files = rel(cfg, cfg.dataset), store.files(info.ref)
    inside = [p for p in files if p == path or p.startswith(path.rstrip("/") + "/")]
    if inside:
        with tempfile.TemporaryDirectory(prefix="curation-export-") as tmp:
            for p in inside:
                (Path(tmp) / p).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / p).write_bytes(store.read_bytes(info.ref, p))
            return read_table(Path(tmp) / path), "store", []
    df = read_table(cfg.path(cfg.dataset))
    notes = []
    given = {i.name: i.sha256 for i in read_manifest(store, info.ref).inputs}
    if given.get("dataset") not in (None, content_hash(cfg.path(cfg.dataset))):
        notes.append(
            f"{cfg.dataset} changed since round {info.round} (the store does not version it): "
            "its rows are today's, the labels and flags the round's"
        )
    return df, "working tree", notes


def _with_labels(df: pl.DataFrame, cfg: LoopConfig, labels: pl.DataFrame | None) -> pl.DataFrame:
    """The final label (the loop's, else a non-blank given one) and where it came from."""
    c, r = cfg.columns, RESERVED
    dtype = df.schema[c.label] if df.schema[c.label] != pl.Null else pl.String
    labels = labels if labels is not None else pl.DataFrame(schema={"id": pl.String, "label": pl.String})
    lab = labels.select(
        pl.col("id").alias(f"{r}key"),
        pl.col("label").alias(f"{r}loop"),
        (pl.col("kind") if "kind" in labels.columns else pl.lit("label")).alias(f"{r}kind"),
        (pl.col("round") if "round" in labels.columns else pl.lit(None, pl.Int64)).alias(f"{r}set_in"),
    )
    out = df.with_columns(pl.col(c.id).cast(pl.String).alias(f"{r}key")).join(
        lab, on=f"{r}key", how="left", maintain_order="left"
    )
    given = pl.col(c.label)
    has_given = given.is_not_null() & (given.cast(pl.String).str.strip_chars() != "")
    loop, review = pl.col(f"{r}loop"), pl.col(f"{r}kind") == "review"
    source = (
        pl.when(loop.is_null())
        .then(pl.when(has_given).then(pl.lit("original")))
        .when(review & (loop == given.cast(pl.String)))
        .then(pl.lit("original"))
        .when(review)
        .then(pl.lit("review correction"))
        .otherwise(pl.lit("annotator"))
    )
    return out.with_columns(
        given.alias(f"{r}given_label"),
        pl.when(loop.is_not_null())
        .then(loop.cast(dtype))
        .when(has_given)
        .then(given.cast(dtype))
        .alias(c.label),
        source.alias(f"{r}label_source"),
        pl.when(loop.is_not_null() & ~(review & (loop == given.cast(pl.String))))
        .then(pl.col(f"{r}set_in"))
        .alias(f"{r}label_round"),
        review.fill_null(False).alias(f"{r}reviewed"),
    ).drop(f"{r}loop", f"{r}kind", f"{r}set_in")


def _with_flags(
    df: pl.DataFrame,
    issues: pl.DataFrame | None,
    quarantine: pl.DataFrame | None,
    kinds: list[str],
    by_row: bool,
    id_col: str,
) -> pl.DataFrame:
    """The round's issues and quarantine on each row: ``flags``, ``score_ISSUE``, the rest."""
    r, key = RESERVED, f"{RESERVED}key"
    issues = issues if issues is not None else pl.DataFrame(schema={"id": pl.String, "issue": pl.String})
    kinds = list(dict.fromkeys([*kinds, *issues["issue"].unique(maintain_order=True).to_list()]))
    scores = [
        (pl.col("score").filter(pl.col("issue") == k).max() if "score" in issues.columns else pl.lit(None))
        .cast(pl.Float64)
        .alias(f"{r}score_{k}")
        for k in kinds
    ]
    suggested = (
        pl.col("suggested_label").filter(pl.col("issue") == "label").first()
        if "suggested_label" in issues.columns
        else pl.lit(None, pl.String)
    )
    per_id = issues.group_by("id", maintain_order=True).agg(
        pl.col("issue").unique(maintain_order=True).alias(f"{r}flags"),
        *scores,
        suggested.alias(f"{r}suggested_label"),
    )
    out = df.join(per_id.rename({"id": key}), on=key, how="left", maintain_order="left")
    q = (
        quarantine
        if quarantine is not None
        else pl.DataFrame(schema={f"{r}row": pl.Int64, f"{r}reason": pl.String})
    )
    if by_row:
        out = out.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(f"{r}row"))
        q = q.select(pl.col(f"{r}row").cast(pl.Int64), pl.col(f"{r}reason").alias(f"{r}quarantine_reason"))
        out = out.join(q.unique(f"{r}row"), on=f"{r}row", how="left", maintain_order="left").drop(f"{r}row")
    else:  # the dataset changed since the round: its row numbers no longer hold
        ids = q.columns[0] if q.width and key not in q.columns else key
        q = q.select(
            pl.col(ids).cast(pl.String).alias(key), pl.col(f"{r}reason").alias(f"{r}quarantine_reason")
        )
        out = out.join(q.unique(key), on=key, how="left", maintain_order="left")
    flagged = pl.col(f"{r}flags").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    return out.with_columns(
        pl.when(pl.col(f"{r}quarantine_reason").is_not_null())
        .then(flagged.list.concat(pl.lit(["quarantine"], dtype=pl.List(pl.String))))
        .otherwise(flagged)
        .alias(f"{r}flags")
    ).drop(key)


def _public_names(table: pl.DataFrame, dataset_columns: list[str]) -> pl.DataFrame:
    """Our columns (built as ``curation_NAME``) under their plain names, unless the dataset
    has a column of that name; the dataset's columns first."""
    ours = [c for c in table.columns if c not in dataset_columns]
    plain = {c: c[len(RESERVED) :] for c in ours if c[len(RESERVED) :] not in dataset_columns}
    return table.select(*dataset_columns, *ours).rename(plain)


def curated_dataset(
    cfg: LoopConfig, round: int | None = None, store: VersionStore | None = None
) -> CuratedDataset:
    """The loop's curated dataset as of round ``round`` (default: its last committed round).

    Parameters
    ----------
    cfg : LoopConfig
        The loop.
    round : int, optional
        The round; default the last one committed.
    store : VersionStore, optional
        Its version store (default the loop's).

    Returns
    -------
    CuratedDataset
        The table (see :class:`CuratedDataset`) and where it was read from.

    Raises
    ------
    VersioningError
        The loop has no such round (the message lists its rounds).

    Examples
    --------
    After two rounds (see ``docs/python.md``)::

        cur = curated_dataset(load_loop("loops/banking77.yaml"), round=2)
        cur.counts()     # {'rows': 10003, 'original': 1950, 'annotator': 200, 'review correction': 7, ...}
    """
    store = store if store is not None else store_for(cfg)
    info = round_info(store, cfg.name, round)
    df, source, notes = dataset_at(cfg, store, info)
    c = cfg.columns
    require_columns(df, {"id": c.id, "text": c.text, "label": c.label}, str(cfg.dataset))
    files, rd = store.files(info.ref), round_dir(cfg, info.round)
    labels = _table_at(store, info.ref, labels_path(cfg), files)
    issues = _table_at(store, info.ref, f"{rd}/issues.parquet", files)
    quarantine = _table_at(store, info.ref, f"{rd}/quarantine.parquet", files)
    kinds = [d.name for d in cfg.issues.detectors]
    table = _with_flags(_with_labels(df, cfg, labels), issues, quarantine, kinds, not notes, c.id)
    for note in notes:
        log.warning("export: %s", note)
    return CuratedDataset(_public_names(table, df.columns), info.round, info.ref, source, notes)


def export_format(path: Path, format: str | None = None) -> Format:
    """The format to write ``path`` in: ``format``, else from its suffix.

    Examples
    --------
    >>> export_format(Path("out/data.parquet")), export_format(Path("out/ds"), "hf")
    ('parquet', 'hf')
    """
    choices: list[str] = sorted({*SUFFIXES.values(), "hf"})
    if format is not None:
        if format not in choices:
            raise ConfigError(f"unknown format {format!r}", field="--format", choices=choices)
        return cast(Format, format)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(
            f"cannot tell the format of {path} from its suffix: name it .parquet, .csv or .jsonl, "
            "or pass --format hf for a Hugging Face datasets folder",
            field="--to",
        )
    return SUFFIXES[path.suffix.lower()]


def write_export(table: pl.DataFrame, path: Path, format: Format) -> Path:
    """Write ``table`` to ``path`` (a file replaced whole; ``hf``: a ``datasets`` folder
    written with ``Dataset.save_to_disk``). CSV has no lists: ``flags`` is joined with ``;``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "hf":
        return _write_hf(table, path)
    tmp = path.with_name(f".{path.name}.curation.tmp")
    if format == "parquet":
        table.write_parquet(tmp)
    elif format == "jsonl":
        table.write_ndjson(tmp)
    else:
        lists = [c for c, t in table.schema.items() if isinstance(t, pl.List)]
        table.with_columns(pl.col(c).list.join(";") for c in lists).write_csv(tmp)
    tmp.replace(path)
    return path


def _write_hf(table: pl.DataFrame, path: Path) -> Path:
    import datasets

    if path.exists() and not (path / "dataset_info.json").exists():
        raise ConfigError(
            f"{path} exists and is not a Hugging Face datasets folder: give a new folder for --to",
            field="--to",
        )
    tmp = path.with_name(f".{path.name}.curation.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.Dataset.from_polars(table).save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)
    return path


def export_loop(
    cfg: LoopConfig, to: Path, round: int | None = None, format: str | None = None
) -> CuratedDataset:
    """Write the loop's curated dataset as of ``round`` to ``to``; return it (``curation export``)."""
    fmt = export_format(Path(to), format)
    cur = curated_dataset(cfg, round)
    write_export(cur.table, Path(to), fmt)
    return cur
