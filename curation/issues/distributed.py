"""The issue step as a Ray job: the rows stay in Parquet blocks, the driver keeps per-row figures.

:func:`find_issues_ray` gives the flags :func:`~curation.issues.find.find_issues` gives on
the same rows (its embedding and kNN views, the label, outlier, near-duplicate and
class-imbalance detectors), for data sets whose vectors do not fit in one process. The
driver holds each row's label code, fold and a few figures (distances, the suggested label),
never the vectors. Each stage is a set of Ray tasks:

1. ``sample``: one task a block gathers the rows the kNN index and the folds' models train on
   (the same rows as in process: :func:`~curation.issues.knn.index_sample`,
   :func:`~curation.steps.model.training_rows`);
2. ``index`` and ``fits``: the k-means lists (one task) and each fold's model (a task each);
3. ``assign``: one task a block puts each row in its list and writes the block's rows to
   ``scratch``, grouped into partitions of nearby lists;
4. ``search``: one task a partition compares its lists' rows with the rows of the lists they
   probe (read from the partitions holding them): the kNN graph, partitioned by cluster; the
   task also makes its rows' evidence (out-of-fold model probabilities, neighbours' labels);
5. ``combine``: the members' weights, fitted on a sample of rows, then one task a partition
   pools its rows' evidence and flags its label errors;
6. the driver applies the outlier and near-duplicate rules (cleanlab's) to the per-row
   distances, after one more pass for the near-duplicate pairs.
"""

from __future__ import annotations

import logging
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.config import IssuesConfig
from curation.errors import ConfigError, DataError
from curation.issues.base import ISSUE_COLUMNS, IssueInputs, issue_table
from curation.issues.evidence import evidence_rows, neighbour_probs, pool, weigh
from curation.issues.imbalance import rarest_class
from curation.issues.knn import (
    EXACT_MAX_ROWS,
    KnnIndex,
    _blocked_search,
    _drop_self,
    index_sample,
    nlist_for,
    train_index,
)
from curation.steps.model import (
    MAX_TRAIN_ROWS,
    FittedModel,
    choice_rows,
    choose_model,
    fit_model,
    fold_plan,
    training_rows,
)
from curation.support.data import Block, parquet_schema, plan_blocks, read_block
from curation.support.ids import keep_id_dtype

log = logging.getLogger(__name__)

#: The detectors and views the Ray job runs (text views need the texts in one process).
RAY_DETECTORS = ("label", "outlier", "near_duplicate", "class_imbalance")
RAY_VIEWS = ("embedding", "knn")
#: Rows per partition of the kNN search (a partition's rows and the rows its lists probe
#: are in one task's memory: about 3 KB a row at 384 dimensions).
PARTITION_ROWS = 200_000


def find_issues_ray(
    source: str | Path,
    classes: Sequence[str],
    cfg: IssuesConfig | None = None,
    *,
    column: str = "embedding",
    scratch: str | Path | None = None,
    address: str | None = None,
    partition_rows: int = PARTITION_ROWS,
    block_rows: int = 262_144,
    exact_max_rows: int = EXACT_MAX_ROWS,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The issue step over Parquet files as a Ray job (see the module's docstring).

    Parameters
    ----------
    source : str or Path
        A Parquet file or a folder of them, with ``id``, ``label`` (one of ``classes``, or
        null for a pool row) and ``column`` (unit-norm vectors, a fixed-size or plain list).
    classes : sequence of str
        The label set.
    cfg : IssuesConfig, optional
        As for :func:`~curation.issues.find.find_issues`; the ``ensemble`` recipe, its
        ``embedding`` and ``knn`` views, the detectors of :data:`RAY_DETECTORS`.
    column : str
        The vector column.
    scratch : str or Path, optional
        A folder every Ray node can write to, for the rows grouped by partition and the
        graph (a temporary folder on this machine by default, removed at the end).
    address : str, optional
        The Ray cluster (``None``: a local instance, or ``RAY_ADDRESS``).
    partition_rows : int
        About this many rows per search task; it searches a few lists at a time, they and the
        lists they probe at most about twice this many rows.
    block_rows : int
        Rows per read task (whole Parquet row groups).
    exact_max_rows : int
        Up to this many rows the graph is exact (one task), as in process.

    Returns
    -------
    tuple of (polars.DataFrame, dict)
        The issue table (as :func:`~curation.issues.find.find_issues`'s, ``id`` a String)
        and a report: ``rows``, ``partitions``, ``members``, ``seconds`` per stage,
        ``flagged`` per issue, ``driver_peak_gb``.

    Examples
    --------
    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 8)).astype(np.float32) + np.repeat(np.eye(8, dtype=np.float32)[:2] * 3, 200, 0)
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> labels = ["a"] * 200 + ["b"] * 200
    >>> labels[5] = "b"  # a row of "a" labeled "b"
    >>> f = f"{tempfile.mkdtemp()}/rows.parquet"
    >>> pl.DataFrame({"id": [f"r{i}" for i in range(400)], "label": labels, "embedding": X}).write_parquet(f)
    >>> table, report = find_issues_ray(f, ["a", "b"])
    >>> "r5" in table.filter(pl.col("issue") == "label")["id"].to_list()
    True
    """

    import ray

    from curation.support.engine import ensure_ray

    cfg = cfg or IssuesConfig()
    detectors = _check_config(cfg)
    classes = [str(c) for c in classes]
    ensure_ray(address)
    blocks, first = _parquet_blocks(source, block_rows, column)
    t = time.perf_counter()
    codes = (
        np.concatenate(_get([_codes_task.remote(b, classes) for b in blocks]))
        if blocks
        else np.zeros(0, np.int64)
    )
    labels_s = time.perf_counter() - t
    n, k = len(codes), min(cfg.k, len(codes) - 1)
    if k < 1 or len(np.unique(codes[codes >= 0])) < 2:
        raise DataError(
            f"the Ray issue step needs at least 2 rows and 2 labeled classes, found {n} rows",
            path=str(source),
        )
    own = tempfile.mkdtemp(prefix="curation-issues-") if scratch is None else None
    job = _Job(
        blocks, first, codes, classes, cfg, column, str(own or scratch), k, partition_rows, exact_max_rows
    )
    job.seconds["labels"] = labels_s
    job.codes_ref = ray.put(codes)
    try:
        table, report = _run(job, detectors)
    finally:
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)
    report["driver_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return table, report


def _check_config(cfg: IssuesConfig) -> list[tuple[str, dict[str, Any]]]:
    """The configured detectors (name, settings), or a ConfigError naming what the Ray job
    cannot run."""
    if cfg.recipe != "ensemble":
        raise ConfigError(
            "the Ray issue step runs the ensemble recipe only (reference pools no views); "
            "set issues.recipe: ensemble",
            field="issues.recipe",
        )
    out = []
    for i, d in enumerate(cfg.detectors):
        if d.name not in RAY_DETECTORS:
            raise ConfigError(
                f"detector {d.name!r} does not run on Ray; there: {', '.join(RAY_DETECTORS)}",
                field=f"issues.detectors.{i}",
            )
        params = d.params()
        if d.name == "label" and params.get("filter_by") not in (None, "predicted_neq_given"):
            raise ConfigError(
                "on Ray the label detector flags each row by itself (filter_by: predicted_neq_given); "
                f"found {params['filter_by']!r}, which needs every row's probabilities at once",
                field=f"issues.detectors.{i}.filter_by",
            )
        out.append((d.name, params))
    return out


def _parquet_blocks(source: str | Path, block_rows: int, column: str) -> tuple[list[Block], np.ndarray]:
    """The source's Parquet blocks, each with its first row in the whole (0, then sums); a file
    that is not Parquet or lacks ``id``, ``label`` or ``column`` is a DataError naming it."""
    blocks = plan_blocks(source, block_rows)
    for url in dict.fromkeys(b.url for b in blocks):
        if not url.split("?")[0].endswith(".parquet"):
            raise DataError("the Ray issue step reads Parquet files only; convert this file", path=url)
        names = parquet_schema(url).names
        for col in ("id", "label", column):
            if col not in names:
                raise DataError(
                    f"has no {col!r} column; the Ray issue step reads id, label and {column}",
                    path=url,
                    column=col,
                )
    sizes = np.array([b.rows for b in blocks], dtype=np.int64)
    return blocks, np.r_[0, np.cumsum(sizes)][:-1].astype(np.int64)


@dataclass
class _Job:
    """What every stage of one run reads."""

    blocks: list[Block]
    first: np.ndarray
    codes: np.ndarray
    classes: list[str]
    cfg: IssuesConfig
    column: str
    root: str
    k: int
    partition_rows: int
    exact_max_rows: int
    codes_ref: Any = None  # the codes in Ray's object store, put once
    seconds: dict[str, float] = field(default_factory=dict)


def _run(job: _Job, detectors: list[tuple[str, dict[str, Any]]]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The stages of :func:`find_issues_ray`, in order; the table and the report."""
    import ray

    t = time.perf_counter()
    index, plan, fits, model = _index_and_fits(job)
    members = [str(v) for v in job.cfg.views if v in RAY_VIEWS]
    job.seconds["sample_and_index"] = time.perf_counter() - t
    log.info("Ray issue step, sample and index: %.1f s", job.seconds["sample_and_index"])
    t = time.perf_counter()
    index_ref = ray.put(index)
    where, live = _partition(job, index, index_ref)
    job.seconds["assign"] = time.perf_counter() - t
    log.info("Ray issue step, assign: %.1f s", job.seconds["assign"])
    t = time.perf_counter()
    refs = (index_ref, ray.put(where), job.codes_ref, ray.put(plan["fold"]), ray.put(_get(fits)))
    search = [_search_task.remote(g, job.root, *_search_args(job, refs, members)) for g in live]
    per_row = _collect(search, len(job.codes), "search: partitions")
    job.seconds["search"] = time.perf_counter() - t
    log.info("Ray issue step, search: %.1f s", job.seconds["search"])
    t = time.perf_counter()
    rank_by = next((p for d, p in detectors if d == "label"), {}).get("rank_by", "self_confidence")
    weights, alone, pooled = _combine(job, live, members, rank_by)
    per_row |= pooled
    job.seconds["combine"] = time.perf_counter() - t
    log.info("Ray issue step, combine: %.1f s", job.seconds["combine"])
    t = time.perf_counter()
    table = _flag(detectors, per_row, job.codes, job.classes, job.blocks, job.first, Path(job.root), live)
    job.seconds["detectors"] = time.perf_counter() - t
    log.info("Ray issue step, detectors: %.1f s", job.seconds["detectors"])
    names = [f"embedding/{model}" if m == "embedding" else "embedding/knn" for m in members]
    right = [float(per_row[f"right_{i}"][job.codes >= 0].mean()) for i in range(len(members))]
    report = {
        "rows": len(job.codes),
        "partitions": len(live),
        "lists": len(index.centres),
        "members": [
            {"name": nm, "accuracy": a, "log_loss": lo, "weight": float(max(w, 0.0))}
            for nm, a, lo, w in zip(names, right, alone, weights)
        ],
        "seconds": job.seconds,
        "flagged": {str(a): int(b) for a, b in table.group_by("issue").len().iter_rows()},
    }
    log.info("Ray issue step: %d rows, %d partitions, flags %s", len(job.codes), len(live), report["flagged"])
    return table, report


def _search_args(job: _Job, refs: tuple[Any, ...], members: list[str]) -> tuple[Any, ...]:
    """The arguments of :func:`_search` after the partition and the scratch folder."""
    index_ref, where_ref, codes_ref, fold_ref, fits_ref = refs
    n_classes = len(job.classes)
    return (
        index_ref,
        where_ref,
        job.k,
        codes_ref,
        fold_ref,
        fits_ref,
        n_classes,
        members,
        2 * job.partition_rows,
    )


def _index_and_fits(job: _Job) -> tuple[KnnIndex, dict[str, Any], list[Any], str]:
    """The kNN index (k-means on the in-process step's sample, or one list below
    ``exact_max_rows``), the folds' plan, the folds' fits (Ray refs, still running) and the model."""
    import ray

    n, n_classes, cfg, codes = len(job.codes), len(job.classes), job.cfg, job.codes
    plan = _get(_plan_task.remote(job.codes_ref, n_classes, cfg))  # its sorting's memory stays off the driver
    exact = n <= job.exact_max_rows
    index_rows, rng = (np.zeros(0, np.int64), None) if exact else index_sample(n, cfg.seed)
    wanted = np.unique(np.concatenate([index_rows, *plan["train"], plan["choice"]]))
    parts = [_gather_task.remote(b, int(f), wanted, job.column) for b, f in zip(job.blocks, job.first)]
    sample = _stack_task.remote(*parts)
    if exact:  # one list, compared with itself: every row against every row, as in process
        one = KnnIndex(np.ones((1, 1), np.float32), np.zeros((1, 1), np.int64), np.zeros(0, np.int32))
        index_ref = ray.put(one)
    else:
        index_ref = _index_task.remote(sample, wanted, index_rows, nlist_for(n), rng)
    model = cfg.model
    if model == "auto":
        choice = plan["choice"]
        model = _get(_choose_task.remote(sample, wanted, choice, codes[choice], n_classes, cfg.seed))
    fits = []
    if "embedding" in cfg.views:
        fits = [
            _fit_task.remote(sample, wanted, r, codes[r], n_classes, cfg.seed, model) for r in plan["train"]
        ]
    return _get(index_ref), plan, fits, model


def _partition(
    job: _Job, index: KnnIndex, index_ref: Any
) -> tuple[dict[int, tuple[int, int, int]], list[int]]:
    """Every row written to its partition, sorted by list; where each list is (partition,
    start, end) and the partitions that hold rows."""
    groups = _group_lists(index.centres, max(1, round(len(job.codes) / job.partition_rows)), job.cfg.seed)
    assigned = [
        _assign_task.remote(b, int(f), index_ref, groups, job.column, job.root)
        for b, f in zip(job.blocks, job.first)
    ]
    _get(assigned, "assign: blocks")
    merged = _get([_merge_task.remote(g, job.root) for g in range(int(groups.max()) + 1)])
    where = {int(c): (g, int(a), int(b)) for g, m in enumerate(merged) for c, a, b in m}
    return where, [g for g, m in enumerate(merged) if len(m)]


def _combine(
    job: _Job, live: list[int], members: list[str], rank_by: str
) -> tuple[np.ndarray, list[float], dict[str, np.ndarray]]:
    """The members' weights (fitted on the in-process step's sample of rows), their held-out
    log-losses, and every row's pooled figures (suggested label, quality, label flag)."""
    lab, rng = evidence_rows(job.codes, seed=job.cfg.seed)
    logs = _sample_logs(_get([_evidence_at_task.remote(g, job.root, lab) for g in live]), lab)
    weights, alone = weigh(logs, job.codes[lab], [m == "embedding" for m in members], rng)
    pooled = [_pool_task.remote(g, job.root, job.codes_ref, weights, rank_by) for g in live]
    return weights, alone, _collect(pooled, len(job.codes), "pool: partitions")


def _get(refs: Any, what: str | None = None) -> Any:
    """``ray.get``; an error of ours raised in a task comes out as itself (file, row, column),
    not wrapped in Ray's traceback. With ``what``, a log line as each tenth of ``refs`` ends."""
    import ray

    from curation.errors import CurationError

    try:
        for _ in _as_done(refs, what) if what is not None else ():  # a long stage: its progress
            pass
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, CurationError):
            raise e.cause from None
        raise


def _plan(codes: np.ndarray, n_classes: int, cfg: IssuesConfig) -> dict[str, Any]:
    """Each row's fold (``-1``: a pool row) and every model's training rows, as in process
    (:func:`~curation.steps.model.cross_fit`; the pool's model on the last entry)."""
    lab = np.flatnonzero(codes >= 0)
    fold, draws, starts = fold_plan(codes[lab], n_classes, cfg.folds, cfg.seed)
    train = [lab[training_rows(fold, draws, j)] for j in range(len(starts))]
    if len(lab) < len(codes):
        train.append(lab[training_rows(fold, draws, -1, MAX_TRAIN_ROWS)])
    every = np.full(len(codes), -1, np.int8)  # per row: small
    every[lab] = fold
    return {"fold": every, "train": train, "choice": lab[choice_rows(len(lab), cfg.seed)]}


def _group_lists(centres: np.ndarray, groups: int, seed: int) -> np.ndarray:
    """Each list's partition: nearby lists together (:func:`~curation.issues.knn.train_index`'s
    spherical k-means on the lists' centres), numbered without gaps."""
    groups = min(groups, len(centres))
    if groups <= 1:
        return np.zeros(len(centres), np.int32)
    tops = train_index(centres, groups, np.random.default_rng(seed), probe=1)
    return np.unique(tops.assign(centres), return_inverse=True)[1].astype(np.int32)


def _collect(refs: list[Any], n: int, what: str) -> dict[str, np.ndarray]:
    """The tasks' per-row figures (every part has ``rows``), each array in row order, copied
    as each task ends and then let go: the driver maps one task's result at a time. A log
    line as each tenth of the tasks ends."""
    out: dict[str, np.ndarray] = {}
    for ref in _as_done(refs, what):
        part = dict(_get(ref))
        rows = part.pop("rows")
        for name, values in part.items():
            if name not in out:
                out[name] = np.zeros((n, *values.shape[1:]), values.dtype)
            out[name][rows] = values
        del part, rows
    return out


def _as_done(refs: list[Any], what: str) -> Iterator[Any]:
    """Each of ``refs`` as its task ends; a log line as each tenth of them has ended."""
    import ray

    pending, total = list(refs), len(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        if (total - len(pending)) % max(1, total // 10) == 0 or not pending:
            log.info("Ray issue step, %s done: %d of %d", what, total - len(pending), total)
        yield done[0]


def _sample_logs(parts: list[dict[str, np.ndarray]], lab: np.ndarray) -> np.ndarray:
    """The members' log-probabilities (members, rows, classes) at the rows ``lab``."""
    rows = np.concatenate([p["rows"] for p in parts])
    probs = np.concatenate([p["probs"] for p in parts], axis=1)
    order = np.argsort(rows)
    where = order[np.searchsorted(rows[order], lab)]
    return np.log(np.clip(probs[:, where], 1e-6, None))


def _flag(
    detectors: list[tuple[str, dict[str, Any]]],
    per_row: dict[str, np.ndarray],
    codes: np.ndarray,
    classes: list[str],
    blocks: list[Block],
    first: np.ndarray,
    root: Path,
    live: list[int],
) -> pl.DataFrame:
    """Every detector's rows from the per-row figures; the ids read for the flagged rows only."""

    found: list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
    for name, params in detectors:
        if name == "label":
            hit = np.flatnonzero(per_row["label_flag"])
            found.append((name, hit, 1.0 - per_row["quality"][hit], {}))
        elif name == "outlier":
            hit, score = outlier_rule(per_row["avg_dist"], params.get("threshold"))
            found.append((name, hit, 1.0 - score[hit], {}))
        elif name == "near_duplicate":
            nn = per_row["nn_dist"]
            median = max(float(np.median(nn)), NEAR_DUPLICATE_EPSILON)
            radius = params.get("threshold", 0.13) * median
            pairs = _get([_pairs_task.remote(g, str(root), radius) for g in live])
            hit = np.unique(np.concatenate([np.zeros(0, np.int64), *pairs]))
            score = 1.0 - np.exp(-nn / median)
            found.append((name, hit, 1.0 - score[hit], {"partner": per_row["nn_row"][hit]}))
        elif name == "class_imbalance":
            lab = np.flatnonzero(codes >= 0)
            hit, share = rarest_class(codes[lab], params.get("threshold", 0.1))
            found.append((name, lab[hit], np.full(len(hit), 1.0 - share), {}))
    wanted = np.unique(
        np.concatenate(
            [np.zeros(0, np.int64)]
            + [f[1] for f in found]
            + [f[3].get("partner", np.zeros(0, np.int64)) for f in found]
        )
    )
    parts = _get([_ids_task.remote(b, int(f), wanted) for b, f in zip(blocks, first)])
    native = pl.concat([p.to_frame("id") for p in parts], how="vertical_relaxed").to_series()
    ids = dict(zip(wanted.tolist(), native.cast(pl.String).to_list()))
    schema = dict(ISSUE_COLUMNS) | (
        {"partner": pl.String} if any(d == "near_duplicate" for d, _ in detectors) else {}
    )
    tables = [pl.DataFrame(schema=schema)]
    for name, hit, score, extra in found:
        rows = np.asarray(hit, np.int64)
        probs = np.eye(len(classes))[per_row["suggested"][rows]] if len(rows) else np.zeros((0, len(classes)))
        inputs = IssueInputs(
            np.array([ids[r] for r in rows.tolist()], dtype=object),
            codes[rows],
            classes,
            np.zeros((len(rows), 0)),
            probs,
        )
        cols = {k: pl.Series(k, [ids[r] for r in v.tolist()], dtype=pl.String) for k, v in extra.items()}
        tables.append(issue_table(inputs, name, np.arange(len(rows)), np.asarray(score, np.float64), cols))
    table = pl.concat(tables, how="diagonal")
    out = keep_id_dtype(table, native)  # the ids in the source's dtype, as find_issues gives them
    return keep_id_dtype(out, native, column="partner") if "partner" in schema else out


#: cleanlab's floor under the median nearest-neighbour distance (its ``EPSILON``).
NEAR_DUPLICATE_EPSILON = 1e-6
#: cleanlab's default outlier threshold on kNN distances.
OUTLIER_THRESHOLD = 0.37037


def outlier_rule(avg_dist: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Datalab's outlier rule on each row's mean distance to its neighbours: the flagged rows
    (beyond the upper quartile by ``1 / threshold - 1`` interquartile ranges) and every row's
    score (``exp(-d / median d)``).

    Examples
    --------
    >>> hit, score = outlier_rule(np.array([0.1, 0.1, 0.12, 0.11, 0.9]))
    >>> hit.tolist(), score.round(2).tolist()
    ([4], [0.4, 0.4, 0.34, 0.37, 0.0])
    """
    from cleanlab.internal.outlier import transform_distances_to_scores
    from scipy.stats import iqr

    threshold = OUTLIER_THRESHOLD if threshold is None else threshold
    scale = 1 / threshold - 1 if threshold != 0 else np.inf
    limit = float(np.percentile(avg_dist, 75) + scale * iqr(avg_dist))
    median = float(max(np.median(avg_dist), 100 * np.finfo(np.float64).eps))
    score = transform_distances_to_scores(avg_dist, t=1, scaling_factor=median)
    return np.flatnonzero(avg_dist > limit), score


# ---- Ray tasks: each reads its own block or partition; the driver passes row numbers only ----


def _remote(fn: Any) -> Any:
    """``fn`` as a Ray task, made on first use (importing this module does not import Ray)."""

    class Lazy:
        def __init__(self) -> None:
            self.task: Any = None

        def remote(self, *args: Any, **kwargs: Any) -> Any:
            if self.task is None:
                import ray

                self.task = ray.remote(fn)
            return self.task.remote(*args, **kwargs)

    return Lazy()


def _vectors(df: pl.DataFrame, column: str, url: str) -> np.ndarray:
    """The ``(rows, d)`` float32 vectors of ``df[column]`` (a fixed-size or plain list); a
    missing vector or a length unlike the others' is a DataError naming the row's ``id``."""
    s = df[column]
    bad = s.is_null()
    if isinstance(s.dtype, pl.List):
        lengths = s.list.len()
        bad = bad | (lengths != lengths.drop_nulls().first())
    if bad.any():
        row = df["id"][int(bad.arg_max())]  # type: ignore[arg-type]
        raise DataError(
            "no vector, or one of another length; embed every row first", path=url, column=column, row=row
        )
    if isinstance(s.dtype, pl.List):
        s = s.list.to_array(int(s.list.len().first()) if len(s) else 0)  # type: ignore[arg-type]
    return np.ascontiguousarray(s.to_numpy(), dtype=np.float32)


def _row_dtype(n: int) -> type:
    """The smallest integer type for row numbers below ``n`` (the driver holds some per row)."""
    return np.int32 if n < 2**31 else np.int64


def _scratch(root: str, *parts: str) -> Path:
    path = Path(root, *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _codes(block: Block, classes: list[str]) -> np.ndarray:
    df = read_block(block, ["id", "label"])
    labels = df["label"].cast(pl.String)
    codes = labels.replace_strict(
        classes, list(range(len(classes))), default=-2, return_dtype=pl.Int64
    ).to_numpy()
    codes = np.where(labels.is_null().to_numpy(), -1, codes).astype(np.int32)  # per row in the driver: small
    bad = np.flatnonzero(codes == -2)
    if len(bad):
        raise DataError(
            f"label {labels[int(bad[0])]!r} is not one of the {len(classes)} classes; add it to the "
            "contract's allowed values or fix the row",
            path=block.url,
            column="label",
            row=df["id"][int(bad[0])],
        )
    return codes


def _gather(block: Block, first: int, wanted: np.ndarray, column: str) -> np.ndarray:
    lo, hi = np.searchsorted(wanted, [first, first + (block.rows or 0)])
    X = _vectors(read_block(block, ["id", column]), column, block.url)
    return X[wanted[lo:hi] - first]


def _stack(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _pick(sample: np.ndarray, wanted: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The vectors of ``rows`` from the gathered ``sample`` (the vectors of ``wanted``, sorted)."""
    return sample[np.searchsorted(wanted, rows)]


def _index(sample: np.ndarray, wanted: np.ndarray, rows: np.ndarray, nlist: int, rng: Any) -> KnnIndex:
    return train_index(_pick(sample, wanted, rows), nlist, rng)


def _choose(
    sample: np.ndarray, wanted: np.ndarray, rows: np.ndarray, y: np.ndarray, n_classes: int, seed: int
) -> str:
    return choose_model(_pick(sample, wanted, rows), y, n_classes, seed=seed)[0]


def _fit(
    sample: np.ndarray,
    wanted: np.ndarray,
    rows: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    seed: int,
    model: str,
) -> FittedModel:
    return fit_model(_pick(sample, wanted, rows), y, n_classes, seed, model)


def _assign(block: Block, first: int, index: KnnIndex, groups: np.ndarray, column: str, root: str) -> int:
    """The block's rows written to ``root`` by partition, each with its list; how many."""
    X = _vectors(read_block(block, ["id", column]), column, block.url)
    lists = index.assign(X)
    part = groups[lists]
    for g in np.unique(part):
        at = np.flatnonzero(part == g)
        at = at[np.argsort(lists[at], kind="stable")]  # by list: a probed list is one slice
        stem = _scratch(root, "rows", f"g{g:05d}", f"b{first:015d}")
        for name, values in (("rows", first + at), ("lists", lists[at]), ("X", X[at])):
            np.save(f"{stem}.{name}.npy", values)
    return len(lists)


def _merge(g: int, root: str) -> np.ndarray:
    """Partition ``g``'s rows from every block in one set of files, sorted by list (then by
    row, as in process); returns each of its lists with where it starts and ends there."""
    stems = [str(f)[: -len(".rows.npy")] for f in sorted(Path(root, "rows", f"g{g:05d}").glob("*.rows.npy"))]
    if not stems:  # its lists drew no rows
        return np.zeros((0, 3), np.int64)
    lists = np.concatenate([np.load(f"{s}.lists.npy") for s in stems])
    order = np.argsort(lists, kind="stable")
    out = _scratch(root, "parts", f"g{g:05d}")
    np.save(f"{out}.lists.npy", lists[order])
    for name in ("rows", "X"):
        np.save(f"{out}.{name}.npy", np.concatenate([np.load(f"{s}.{name}.npy") for s in stems])[order])
    shutil.rmtree(Path(root, "rows", f"g{g:05d}"))
    ids, starts = np.unique(lists[order], return_index=True)
    return np.stack([ids, starts, np.r_[starts[1:], len(lists)]], axis=1)


def _load_lists(
    root: str, where: dict[int, tuple[int, int, int]], lists: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of ``lists`` (row numbers, lists, vectors): each list is one slice of its
    partition's files (``where``: list -> partition, start, end)."""
    rows, lst, X = [], [], []
    for c in lists.tolist():
        if c not in where:  # an empty list
            continue
        g, a, b = where[c]
        stem = Path(root, "parts", f"g{g:05d}")
        rows.append(np.load(f"{stem}.rows.npy", mmap_mode="r")[a:b])
        lst.append(np.full(b - a, c, np.int32))
        X.append(np.load(f"{stem}.X.npy", mmap_mode="r")[a:b])
    return np.concatenate(rows), np.concatenate(lst), np.concatenate(X)


def _search(
    g: int,
    root: str,
    index: KnnIndex,
    where: dict[int, tuple[int, int, int]],
    k: int,
    codes: np.ndarray,
    fold: np.ndarray,
    fits: list[FittedModel],
    n_classes: int,
    members: list[str],
    max_rows: int = 400_000,
) -> dict[str, np.ndarray]:
    """Partition ``g``'s neighbours (as :func:`~curation.issues.knn.knn_search` finds them
    over ``index``) and its rows' evidence; writes both to ``root``. Its lists are searched a
    few at a time: they and the lists they probe hold at most about ``max_rows`` rows."""
    size = {c: b - a for c, (_, a, b) in where.items()}
    found: list[tuple[np.ndarray, ...]] = []
    chunk: list[int] = []
    for c in sorted(c for c, (h, _, _) in where.items() if h == g):
        if chunk and sum(size.get(int(j), 0) for j in np.unique(index.near[[*chunk, c]])) > max_rows:
            found.append(_search_lists(root, index, where, np.array(chunk), k))
            chunk = []
        chunk.append(c)
    found.append(_search_lists(root, index, where, np.array(chunk), k))
    rows, nbr, dist, X = (np.concatenate([f[j] for f in found]) for j in range(4))
    probs = []
    for m in members:
        if m == "knn":
            probs.append(neighbour_probs(nbr, dist, codes, n_classes))
            continue
        p = np.zeros((len(rows), n_classes))
        f = fold[rows]
        for j in np.unique(f):
            at = np.flatnonzero(f == j)
            p[at] = fits[j].predict_proba(X[at])  # j = -1: the pool's model, last
        probs.append(p)
    np.savez(_scratch(root, "graph", f"g{g:05d}.npz"), rows=rows, nbr=nbr, dist=dist)
    np.savez(_scratch(root, "evidence", f"g{g:05d}.npz"), rows=rows, probs=np.stack(probs))
    ix = _row_dtype(len(codes))
    out = {
        "rows": rows.astype(ix),
        "avg_dist": dist.mean(1),
        "nn_dist": dist[:, 0],
        "nn_row": nbr[:, 0].astype(ix),
    }
    for i, p in enumerate(probs):
        out[f"right_{i}"] = p.argmax(1) == codes[rows]
    return out


def _search_lists(
    root: str, index: KnnIndex, where: dict[int, tuple[int, int, int]], chunk: np.ndarray, k: int
) -> tuple[np.ndarray, ...]:
    """The rows of the lists ``chunk``: row numbers, neighbours, distances (as the graph holds
    them, :func:`~curation.issues.knn.to_graph`), vectors; against the lists they probe."""
    rows, lists, X = _load_lists(root, where, np.unique(index.near[chunk]))
    queries = np.flatnonzero(np.isin(lists, chunk))
    dist, idx = _blocked_search(X, k + 1, KnnIndex(index.centres, index.near, lists), queries)
    dist, idx = _drop_self(dist, idx, queries, k)
    return rows[queries], rows[idx], np.clip(dist, 0.0, 2.0), X[queries]


def _evidence_at(g: int, root: str, lab: np.ndarray) -> dict[str, np.ndarray]:
    with np.load(Path(root, "evidence", f"g{g:05d}.npz")) as z:
        at = np.flatnonzero(np.isin(z["rows"], lab))
        return {"rows": z["rows"][at], "probs": z["probs"][:, at]}


def _pool(g: int, root: str, codes: np.ndarray, weights: np.ndarray, rank_by: str) -> dict[str, np.ndarray]:
    """Partition ``g``'s pooled probabilities: suggested label, label quality, label flag."""
    from cleanlab.filter import find_label_issues

    from curation.issues.label import label_quality

    with np.load(Path(root, "evidence", f"g{g:05d}.npz")) as z:
        rows, probs = z["rows"], z["probs"]
    chosen = np.flatnonzero(weights >= 0)
    p = pool([probs[i] for i in chosen], weights[chosen])
    y = codes[rows]
    flag = np.zeros(len(rows), bool)
    lab = np.flatnonzero(y >= 0)
    if len(lab):
        flag[lab] = find_label_issues(y[lab], p[lab], filter_by="predicted_neq_given")
    return {
        "rows": rows.astype(_row_dtype(len(codes))),
        "suggested": p.argmax(1).astype(np.int32),
        "quality": label_quality(y, p, rank_by),
        "label_flag": flag,
    }


def _pairs(g: int, root: str, radius: float) -> np.ndarray:
    """The rows of partition ``g`` with a neighbour nearer than ``radius``, and those neighbours."""
    with np.load(Path(root, "graph", f"g{g:05d}.npz")) as z:
        near = z["dist"] < radius
        return np.concatenate([z["rows"][near.any(1)], z["nbr"][near]])


def _ids(block: Block, first: int, wanted: np.ndarray) -> pl.Series:
    lo, hi = np.searchsorted(wanted, [first, first + (block.rows or 0)])
    return read_block(block, ["id"])["id"].gather(wanted[lo:hi] - first)


_codes_task = _remote(_codes)
_plan_task = _remote(_plan)
_gather_task = _remote(_gather)
_stack_task = _remote(_stack)
_index_task = _remote(_index)
_choose_task = _remote(_choose)
_fit_task = _remote(_fit)
_assign_task = _remote(_assign)
_merge_task = _remote(_merge)
_search_task = _remote(_search)
_evidence_at_task = _remote(_evidence_at)
_pool_task = _remote(_pool)
_pairs_task = _remote(_pairs)
_ids_task = _remote(_ids)
