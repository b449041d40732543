"""``curation explain``: one row of a committed round, its flags, neighbours, probabilities,
and why it was or was not selected, read only from what the round stored.

A round stores, besides its issue, selection and task tables, a compact ``evidence.parquet``
(:func:`row_evidence`): for every valid row its role in the round (``labeled``, ``pool``,
``queued``), its label, the top classes of the model and the nearest rows of the round's kNN
graph. A round committed before that table existed is still explained, without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from curation.config import LoopConfig
from curation.connectors.base import RoundInfo, VersionStore, parquet_table
from curation.errors import NotFoundError, VersioningError
from curation.orchestration.export import dataset_at, round_info
from curation.orchestration.state import round_dir, store_for

#: Neighbours and classes kept per row in ``evidence.parquet``.
NEIGHBOURS = 5
TOP_CLASSES = 3
EVIDENCE_TABLE: dict[str, Any] = {
    "id": pl.String,
    "role": pl.String,
    "label": pl.String,
    "top_labels": pl.List(pl.String),
    "top_probs": pl.List(pl.Float32),
    "neighbors": pl.List(pl.String),
    "similarities": pl.List(pl.Float32),
}


def _lists(values: np.ndarray, dtype: Any) -> pl.Series:
    """An ``(n, k)`` array as a list column (null rows where ``k`` is 0)."""
    n, k = values.shape
    if k == 0:
        return pl.Series([None] * n, dtype=pl.List(dtype))
    return pl.Series(values.ravel()).cast(dtype).reshape((n, k)).cast(pl.List(dtype))


def row_evidence(
    ids: pl.Series,
    labels: pl.Series,
    in_pool: np.ndarray,
    classes: list[str],
    probs: np.ndarray,
    knn: csr_matrix | None,
    pool_probs: np.ndarray | None = None,
) -> pl.DataFrame:
    """What ``curation explain`` reads of a round: one row per valid row (``EVIDENCE_TABLE``).

    ``probs`` are the issue step's probabilities (out of sample for labeled rows);
    ``pool_probs`` the round model's for the pool rows (what the strategy ranked by), used
    for those rows. Rows without a model have no classes; without a graph, no neighbours.

    Examples
    --------
    >>> from curation.issues.knn import knn_graph
    >>> X = np.eye(3, dtype=np.float32)[[0, 0, 1]]
    >>> ev = row_evidence(pl.Series(["a", "b", "c"]), pl.Series(["x", None, "y"]),
    ...     np.array([False, True, False]), ["x", "y"], np.array([[.9, .1], [0, 0], [.2, .8]]),
    ...     knn_graph(X, k=1), pool_probs=np.array([[.7, .3]]))
    >>> ev.select("id", "role", "top_labels", "neighbors").rows()
    [('a', 'labeled', ['x', 'y'], ['b']), ('b', 'pool', ['x', 'y'], ['a']), ('c', 'labeled', ['y', 'x'], ['a'])]
    """
    p = np.array(probs, dtype=np.float64)
    if pool_probs is not None:
        p[in_pool] = pool_probs
    top = min(TOP_CLASSES, len(classes))
    order = np.argsort(-p, axis=1, kind="stable")[:, :top]
    has_model = p.sum(axis=1) > 0
    labeled = labels.is_not_null().to_numpy()
    role = np.where(labeled, "labeled", np.where(in_pool, "pool", "queued"))
    names = np.asarray(classes, dtype=object)
    ev = pl.DataFrame(
        {
            "id": ids.cast(pl.String),
            "role": role,
            "label": labels.cast(pl.String),
            "top_labels": _lists(names[order], pl.String),
            "top_probs": _lists(np.take_along_axis(p, order, 1).round(4), pl.Float32),
        }
    )
    ev = ev.with_columns(
        pl.when(pl.Series(has_model)).then(pl.col(c)).alias(c) for c in ("top_labels", "top_probs")
    )
    k = min(NEIGHBOURS, int(np.diff(knn.indptr).min())) if knn is not None and len(ids) else 0
    if knn is not None and k:
        n, width = len(ids), int(np.diff(knn.indptr)[0])
        idx, dist = knn.indices.reshape(n, width)[:, :k], knn.data.reshape(n, width)[:, :k]
        nbr = ev["id"].to_numpy()[idx]
        ev = ev.with_columns(
            neighbors=_lists(nbr, pl.String), similarities=_lists((1 - dist).round(4), pl.Float32)
        )
    else:
        ev = ev.with_columns(pl.lit(None, pl.List(pl.String)).alias("neighbors"))
        ev = ev.with_columns(pl.lit(None, pl.List(pl.Float32)).alias("similarities"))
    return ev.select(list(EVIDENCE_TABLE))


@dataclass
class Explanation:
    """One row of a committed round, as ``curation explain`` prints it.

    Attributes
    ----------
    round, ref : int, str
        The round and its ref in the version store.
    id : str
        The row.
    role : str
        ``labeled``, ``pool`` (a candidate to label), ``queued`` (waiting for an answer since
        an earlier round), ``quarantined`` or ``unknown`` (a round without ``evidence.parquet``).
    text, label : str or None
        The row's text and its label as the round read it.
    selected : dict or None
        ``kind``, ``rank``, ``score``, ``reason`` when the round selected the row.
    why : str
        Why the row was or was not selected, in one sentence.
    flags : list of dict
        The round's issue rows on it (``issue``, ``score``, ``rank``, ...).
    neighbours : list of dict
        Its nearest rows: ``id``, ``similarity``, ``label``.
    probabilities : list of dict
        The model's top classes: ``label``, ``probability``.
    notes : list of str
        What the round did not store (an older round), a changed dataset, ...
    """

    round: int
    ref: str
    id: str
    role: str
    text: str | None
    label: str | None
    selected: dict[str, Any] | None
    why: str
    flags: list[dict[str, Any]] = field(default_factory=list)
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    probabilities: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready."""
        return dict(self.__dict__)


def round_number(ref: str, loop: str) -> int:
    """The round a command-line ``ROUND`` names: ``2``, ``round-2`` or ``LOOP/round-2``.

    Examples
    --------
    >>> round_number("2", "unit"), round_number("round-3", "unit"), round_number("unit/round-4", "unit")
    (2, 3, 4)
    """
    m = re.fullmatch(rf"(?:{re.escape(loop)}/)?(?:round-)?(\d+)", ref.strip())
    if m is None or int(m.group(1)) < 1:
        raise NotFoundError(f"round {ref!r}: expected N, round-N or {loop}/round-N (N from 1)")
    return int(m.group(1))


def _round(store: VersionStore, loop: str, ref: str) -> RoundInfo:
    try:
        return round_info(store, loop, round_number(ref, loop))
    except VersioningError as e:
        raise NotFoundError(f"round {ref!r}: {e}") from e


def _read(store: VersionStore, info: RoundInfo, path: str, files: dict[str, str]) -> pl.DataFrame | None:
    return parquet_table(store.read_bytes(info.ref, path), path, info.ref) if path in files else None


def _rows(table: pl.DataFrame | None, key: str, row_id: str) -> pl.DataFrame:
    if table is None or key not in table.columns:
        return pl.DataFrame()
    return table.filter(pl.col(key).cast(pl.String) == row_id)


def explain_row(cfg: LoopConfig, ref: str, row_id: str, store: VersionStore | None = None) -> Explanation:
    """Explain row ``row_id`` of round ``ref`` (``2``, ``round-2`` or ``LOOP/round-2``).

    Raises
    ------
    NotFoundError
        The loop has no such round, or the round no such row.

    Examples
    --------
    After a round (see ``docs/cli.md``, ``curation explain``)::

        e = explain_row(load_loop("loops/banking77.yaml"), "round-1", "4127")
        e.why          # 'selected to label (rank 3 of 100): ...'
    """
    store = store if store is not None else store_for(cfg)
    info = _round(store, cfg.name, ref)
    files, rd, c = store.files(info.ref), round_dir(cfg, info.round), cfg.columns
    t = {n: _read(store, info, f"{rd}/{n}.parquet", files) for n in ("evidence", "selection", "issues")}
    t["quarantine"] = _read(store, info, f"{rd}/quarantine.parquet", files)
    df, _, notes = dataset_at(cfg, store, info)
    mine = _rows(df, c.id, row_id)
    ev = _rows(t["evidence"], "id", row_id)
    quarantined = _rows(t["quarantine"], c.id, row_id)
    if mine.is_empty() and ev.is_empty() and quarantined.is_empty():
        raise NotFoundError(f"round {info.round} of loop {cfg.name!r} has no row with id {row_id!r}")
    if t["evidence"] is None:
        notes.append(f"round {info.round} stored no evidence.parquet: no neighbours or probabilities")
    row = mine.row(0, named=True) if len(mine) else {}
    role = "quarantined" if len(quarantined) else ev["role"][0] if len(ev) else "unknown"
    picked = _rows(t["selection"], "id", row_id)
    selected = picked.select("kind", "rank", "score", "reason").row(0, named=True) if len(picked) else None
    flags = _rows(t["issues"], "id", row_id)
    reason = (
        quarantined["curation_reason"][0]
        if "curation_reason" in quarantined.columns and len(quarantined)
        else None
    )
    return Explanation(
        round=info.round,
        ref=info.ref,
        id=row_id,
        role=role,
        text=None if row.get(c.text) is None else str(row[c.text]),
        label=ev["label"][0] if len(ev) else None if row.get(c.label) is None else str(row[c.label]),
        selected=selected,
        why=why(role, selected, flags, t["selection"], t["evidence"], reason),
        flags=_flags(flags),
        neighbours=_neighbours(ev, t["evidence"]),
        probabilities=_probabilities(ev),
        notes=notes,
    )


def _flags(flags: pl.DataFrame) -> list[dict[str, Any]]:
    """The row's issue rows, without ``id`` and the columns no flag of it fills."""
    if flags.is_empty():
        return []
    return flags.select(
        [c for c in flags.columns if c != "id" and flags[c].null_count() < len(flags)]
    ).to_dicts()


def _neighbours(ev: pl.DataFrame, evidence: pl.DataFrame | None) -> list[dict[str, Any]]:
    if ev.is_empty() or evidence is None or ev["neighbors"][0] is None:
        return []
    nbr = pl.DataFrame(
        {"id": ev["neighbors"][0], "similarity": ev["similarities"][0]},
        schema={"id": pl.String, "similarity": pl.Float64},
    )
    return nbr.join(evidence.select("id", "label"), on="id", how="left", maintain_order="left").to_dicts()


def _probabilities(ev: pl.DataFrame) -> list[dict[str, Any]]:
    if ev.is_empty() or ev["top_labels"][0] is None:
        return []
    return [
        {"label": lab, "probability": round(float(p), 4)}
        for lab, p in zip(ev["top_labels"][0], ev["top_probs"][0])
    ]


def why(
    role: str,
    selected: dict[str, Any] | None,
    flags: pl.DataFrame,
    selection: pl.DataFrame | None,
    evidence: pl.DataFrame | None,
    quarantine_reason: str | None = None,
) -> str:
    """Why a row was or was not selected, in one sentence.

    Examples
    --------
    >>> sel = pl.DataFrame({"id": ["a", "b"], "kind": ["label", "label"], "rank": [1, 2],
    ...     "score": [0.9, 0.4], "reason": ["far from the labeled rows", "uncertain"]})
    >>> why("pool", None, pl.DataFrame(), sel, None)
    'not selected: the strategy picked 2 pool rows to label, the last (rank 2) with score 0.400; this row was not among them'
    """
    if quarantine_reason is not None or role == "quarantined":
        return f"not a candidate: quarantined ({quarantine_reason}); it takes no part in the round"
    if selected is not None:
        of = len(selection) if selection is not None else "?"
        to = "to review its label" if selected["kind"] == "review" else "to label"
        return f"selected {to} (rank {selected['rank']} of {of}): {selected['reason']} (score {selected['score']:.3f})"
    if role == "queued":
        return "not a candidate: queued for annotation in an earlier round, still waiting for an answer"
    kind = "review" if role == "labeled" else "label"
    picks = selection.filter(pl.col("kind") == kind).sort("rank") if selection is not None else pl.DataFrame()
    if role == "labeled":
        label_flags = flags.filter(pl.col("issue") == "label") if "issue" in flags.columns else flags
        if label_flags.is_empty():
            return "not a candidate: labeled, and not a suspected label error"
        if picks.is_empty():
            return f"not sent to review: a suspected label error (rank {label_flags['rank'][0]}), but the round sent no reviews"
        last = picks.row(-1, named=True)
        return (
            f"not sent to review: a suspected label error (rank {label_flags['rank'][0]}); the round sent "
            f"the {len(picks)} worst flags to review, the last (rank {last['rank']}) with score {last['score']:.3f}"
        )
    if picks.is_empty():
        return "not selected: the round picked no rows to label"
    last = picks.row(-1, named=True)
    pool = f" of {int((evidence['role'] == 'pool').sum())}" if evidence is not None else ""
    return (
        f"not selected: the strategy picked {len(picks)}{pool} pool rows to label, the last "
        f"(rank {last['rank']}) with score {last['score']:.3f}; this row was not among them"
    )
