"""Rounds over time: open a loop's version store, list its rounds, restore one, diff two.

The logic behind ``curation history``, ``curation checkout`` and ``curation diff``; it works
on any :class:`~curation.connectors.base.VersionStore`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from curation.connectors.base import RoundInfo, VersionStore, open_store
from curation.errors import ConfigError, VersioningError
from curation.load import load_loop
from curation.orchestration.state import store_for

#: File suffixes compared row by row; other files are compared by content hash.
TABLE_SUFFIXES = (".parquet",)


def resolve_store(
    loop: Path | None = None, root: Path = Path("."), remote: str | None = None
) -> tuple[VersionStore, str, str]:
    """The store a CLI call names, with the id and label column names.

    A loop file gives its ``version`` section, root, columns and round tags. Without one, a
    project (``root``) with a single loop file in ``loops/`` means that loop; else ``remote``
    ``lakefs://REPO[/BRANCH]`` is a lakeFS store, anything else the DVC repository at
    ``root`` (``remote`` then being its DVC remote) with plain ``round-N`` tags.
    """
    loop = loop if loop is not None or remote is not None else project_loop(root)
    if loop is not None:
        cfg = load_loop(loop)
        return store_for(cfg), cfg.columns.id, cfg.columns.label
    if remote and remote.startswith("lakefs://"):
        return open_store("lakefs", {"remote": remote}, root), "id", "label"
    if not (Path(root) / ".dvc").is_dir():
        raise ConfigError(
            f"{Path(root).resolve()} is not a DVC project: pass --loop LOOP_FILE, "
            "--root PROJECT_DIR or --remote lakefs://REPOSITORY"
        )
    return open_store("dvc", {"remote": remote}, root), "id", "label"


def project_loop(root: Path = Path(".")) -> Path | None:
    """The loop file of the project at ``root`` when ``loops/`` holds exactly one (``None``
    when it holds none).

    Raises
    ------
    ConfigError
        ``loops/`` holds several: the message lists them and asks for ``--loop``.
    """
    loops = sorted((Path(root) / "loops").glob("*.yaml"))
    if len(loops) > 1:
        raise ConfigError(
            f"{Path(root).resolve()} has {len(loops)} loops ({', '.join(p.stem for p in loops)}): "
            f"pass --loop loops/NAME.yaml",
            field="--loop",
        )
    return loops[0] if loops else None


def history(store: VersionStore) -> list[RoundInfo]:
    """The committed rounds, oldest first."""
    return store.history()


def _metrics(r: RoundInfo) -> dict[str, float | str]:
    """``metrics.*`` metadata; for a round committed without them, its other numeric keys."""
    if r.metrics:
        return r.metrics
    out: dict[str, float | str] = {}
    for k, v in r.metadata.items():
        if not k.startswith("curation."):
            try:
                out[k] = float(v)
            except ValueError:
                continue
    return out


#: The columns of ``curation history`` (figure name -> column title); ``--json`` has them all.
SUMMARY_METRICS = {
    "valid": "valid",
    "quarantined": "broken",
    "label_issues": "issues",
    "selected": "picked",
    "labels": "labels",
    "accuracy": "acc",
}


def history_summary(rounds: list[RoundInfo]) -> list[dict[str, object]]:
    """One short row per round (it fits 100 columns): ref, when, gate and the main figures.

    Examples
    --------
    >>> r = RoundInfo(1, "demo/round-1", "abc", "2026-12-01T10:00:05+00:00", "m",
    ...               {"metrics.accuracy": "0.81", "metrics.labels": "200.0"})
    >>> history_summary([r])[0]["when"], history_summary([r])[0]["acc"]
    ('12-01 10:00', 0.81)
    """
    rows = []
    for r in rounds:
        m = _metrics(r)
        row: dict[str, object] = {
            "ref": r.ref,
            "when": r.time[5:16].replace("T", " "),
            "gate": "passed" if r.gate_passed else "FAILED",
        }
        for k, title in SUMMARY_METRICS.items():
            v = m.get(k)
            row[title] = int(v) if isinstance(v, float) and k != "accuracy" else v
        rows.append(row)
    return rows


def history_rows(rounds: list[RoundInfo]) -> list[dict[str, object]]:
    """:func:`history_table` as dicts, every row with the same keys (for printing)."""
    table = history_table(rounds)
    return table.to_dicts()


def history_table(rounds: list[RoundInfo]) -> pl.DataFrame:
    """One row per round: round, ref, commit, time, gate, counts, then one column per metric."""
    rows = []
    for r in rounds:
        row: dict[str, object] = {
            "round": r.round,
            "ref": r.ref,
            "commit": r.commit[:12],
            "time": r.time,
            "gate": "passed" if r.gate_passed else "failed",
            "selected": r.metadata.get("curation.selected"),
            "annotations": r.metadata.get("curation.annotations"),
            "label_issues": r.metadata.get("curation.label_issues"),
        }
        row.update({f"metric:{k}": v for k, v in sorted(_metrics(r).items()) if isinstance(v, float)})
        rows.append(row)
    if not rows:
        return pl.DataFrame(schema={"round": pl.Int64, "ref": pl.String})
    return pl.DataFrame(rows, infer_schema_length=None)


def checkout(store: VersionStore, ref: str, dest: Path | None = None, force: bool = False) -> list[str]:
    """Restore the files of ``ref`` (see ``VersionStore.checkout``); return their paths.

    Like git, a checkout of the working tree refuses to overwrite uncommitted work
    (:meth:`VersionStore.changes`) unless ``force``; a copy to ``dest`` never touches it.
    """
    if dest is None and not force:
        changed = store.changes()
        if changed:
            more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
            raise VersioningError(
                f"uncommitted changes would be lost: {', '.join(changed[:5])}{more}; keep them with "
                f"`curation checkout {ref} --to DIR` (a copy), or pass --force to discard them"
            )
    return store.checkout(ref, dest)


@dataclass
class FileDiff:
    """How one file changed between two refs.

    ``status`` is ``added``, ``removed`` or ``changed``. For tables keyed by ``key``:
    the ids of rows added, removed, relabeled (same id, another label) and otherwise
    changed (same id and label, other columns differ); ``None`` when not comparable.
    """

    path: str
    status: str
    added: list[str] | None = None
    removed: list[str] | None = None
    relabeled: list[str] | None = None
    changed: list[str] | None = None
    note: str = ""

    def headline(self) -> str:
        """One line: the path, its status, and what changed in its rows."""
        counts = {k: v for k, v in self.counts().items() if v}
        rows = ", ".join(f"{v} {k}" for k, v in counts.items()) if counts else "no row changed"
        if all(v is None for v in self.counts().values()):
            rows = self.note or "not a table"
        return f"{self.path} ({self.status}): {rows}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: path, status, note, and the ids per kind of change."""
        return {
            "path": self.path,
            "status": self.status,
            "note": self.note,
            "added": self.added,
            "removed": self.removed,
            "relabeled": self.relabeled,
            "changed": self.changed,
        }

    def counts(self) -> dict[str, int | None]:
        """The number of ids in each list (``None`` where not comparable)."""
        return {
            k: (None if v is None else len(v))
            for k, v in (
                ("added", self.added),
                ("removed", self.removed),
                ("relabeled", self.relabeled),
                ("changed", self.changed),
            )
        }


@dataclass
class RoundDiff:
    """What changed from ``a`` to ``b``: one :class:`FileDiff` per file that differs."""

    a: str
    b: str
    files: list[FileDiff] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        """Rows added, removed, relabeled and changed, over all tables."""
        out = {"added": 0, "removed": 0, "relabeled": 0, "changed": 0}
        for f in self.files:
            for k, v in f.counts().items():
                out[k] += v or 0
        return out


def _table(store: VersionStore, ref: str, path: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.read_bytes(ref, path)))


def _compare(path: str, old: pl.DataFrame | None, new: pl.DataFrame | None, key: str, label: str) -> FileDiff:
    status = "added" if old is None else "removed" if new is None else "changed"
    frames = [t for t in (old, new) if t is not None]
    if any(key not in t.columns for t in frames):
        return FileDiff(path, status, note=f"no {key!r} column: compared by content only")
    old = old if old is not None else new.clear()  # type: ignore[union-attr]
    new = new if new is not None else old.clear()
    old = old.with_columns(pl.col(key).cast(pl.String))
    new = new.with_columns(pl.col(key).cast(pl.String))
    if old[key].is_duplicated().any() or new[key].is_duplicated().any():
        return FileDiff(path, status, note=f"{key!r} is not unique: compared by content only")
    old_ids, new_ids = set(old[key].to_list()), set(new[key].to_list())
    both = sorted(old_ids & new_ids)
    relabeled: list[str] = []
    changed: list[str] = []
    if both:
        common = [c for c in old.columns if c in new.columns and c != key]
        a = old.filter(pl.col(key).is_in(both)).select(key, *common).sort(key)
        b = new.filter(pl.col(key).is_in(both)).select(key, *common).sort(key)
        if label in common:
            a = a.with_columns(pl.col(label).cast(pl.String))
            b = b.with_columns(pl.col(label).cast(pl.String))
            diff_label = a[label].ne_missing(b[label])
            relabeled = a.filter(diff_label)[key].to_list()
            rest = [c for c in common if c != label]
        else:
            diff_label = pl.Series([False] * len(a))
            rest = common
        other = pl.Series([False] * len(a))
        for c in rest:
            try:
                other = other | a[c].ne_missing(b[c].cast(a[c].dtype))
            except pl.exceptions.PolarsError:
                other = pl.Series([True] * len(a))
        changed = a.filter(other & ~diff_label)[key].to_list()
        if set(old.columns) != set(new.columns):
            changed = sorted(set(changed) | (set(both) - set(relabeled)))
    return FileDiff(
        path,
        status,
        added=sorted(new_ids - old_ids),
        removed=sorted(old_ids - new_ids),
        relabeled=relabeled,
        changed=changed,
    )


def diff(store: VersionStore, a: str, b: str, key: str = "id", label: str = "label") -> RoundDiff:
    """What changed from ref ``a`` to ref ``b``: files added, removed or changed, and, for
    Parquet tables with a ``key`` column, the rows added, removed and relabeled.

    Parameters
    ----------
    store : VersionStore
        Where both refs live.
    a, b : str
        The older and the newer ref (``round-1``, ``round-2``).
    key : str
        The row id column.
    label : str
        The label column.
    """
    fa, fb = store.files(a), store.files(b)
    out = RoundDiff(a, b)
    for path in sorted(set(fa) | set(fb)):
        if fa.get(path) == fb.get(path):
            continue
        if not path.endswith(TABLE_SUFFIXES):
            status = "added" if path not in fa else "removed" if path not in fb else "changed"
            out.files.append(FileDiff(path, status, note="not a table"))
            continue
        try:
            old = _table(store, a, path) if path in fa else None
            new = _table(store, b, path) if path in fb else None
        except pl.exceptions.PolarsError as e:
            raise VersioningError(f"cannot compare {path} between {a} and {b}: {e}") from e
        out.files.append(_compare(path, old, new, key, label))
    return out
