"""The issue step's one entry point: evidence, the shared kNN graph, every detector, a report."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from curation.config import IssuesConfig
from curation.errors import DataError
from curation.issues.base import DETECTORS, ISSUE_COLUMNS, Evidence, IssueInputs
from curation.issues.evidence import TextView, ViewFit, combine, graph_evidence, model_evidence, text_view
from curation.issues.feedback import flag_precision
from curation.issues.knn import EXACT_MAX_ROWS, KnnIndex, knn_search, update_graph
from curation.issues.label import label_quality
from curation.issues.memory import IssueMemory, Reuse, row_keys, settings_key
from curation.support.ids import keep_id_dtype

log = logging.getLogger(__name__)

#: What the report says of each member of the recipe.
MEMBER_FIGURES = ("name", "accuracy", "log_loss", "weight", "seconds")


def label_codes(labels: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    """Codes of ``labels`` in ``classes``; ``None`` (unlabeled) is ``-1``.

    Examples
    --------
    >>> label_codes(["b", None, "a"], ["a", "b"]).tolist()
    [1, -1, 0]
    """
    index = {str(c): i for i, c in enumerate(classes)}
    out = np.full(len(labels), -1, dtype=np.int64)
    for i, v in enumerate(labels):
        if v is None:
            continue
        if str(v) not in index:
            raise DataError(
                f"label {v!r} is not one of the {len(index)} classes; add it to the "
                "contract's allowed values or fix the row",
                column="label",
                row=i,
            )
        out[i] = index[str(v)]
    return out


def build_evidence(
    cfg: IssuesConfig,
    texts: Sequence[str] | None,
    embeddings: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    knn: Any,
    reuse: Reuse | None = None,
) -> tuple[list[Evidence], dict[str, ViewFit], dict[str, tuple[TextView, Any]]]:
    """The recipe's members: one per view it can build (reference: embeddings, ``logreg``);
    with what each model view fitted and each text view's vectorizers and rows (for
    :class:`~curation.issues.memory.IssueMemory`). ``reuse`` starts each from the last run."""
    if cfg.recipe == "reference":
        ev, fit = model_evidence("embedding", embeddings, codes, n_classes, "logreg", cfg.folds, cfg.seed)
        return [ev], {"embedding": fit}, {}
    members: list[Evidence] = []
    fits: dict[str, ViewFit] = {}
    views: dict[str, tuple[TextView, Any]] = {}
    for view in cfg.views:
        start = reuse.fit(view) if reuse is not None else None
        if view == "embedding":
            ev, fits[view] = model_evidence(
                view, embeddings, codes, n_classes, cfg.model, cfg.folds, cfg.seed, start
            )
            members.append(ev)
        elif view in ("tfidf", "ngrams") and texts is not None:
            t = time.perf_counter()
            views[view] = (reuse.text(view, texts) if reuse is not None else None) or text_view(view, texts)
            ev, fits[view] = model_evidence(
                view, views[view][1], codes, n_classes, cfg.model, cfg.folds, cfg.seed, start
            )
            ev.seconds = time.perf_counter() - t
            members.append(ev)
        elif view == "knn" and knn is not None:
            members.append(graph_evidence(knn, codes, n_classes))
    return members, fits, views


def shared_graph(
    cfg: IssuesConfig, embeddings: np.ndarray, reuse: Reuse | None, seconds: dict[str, float]
) -> tuple[Any, KnnIndex | None]:
    """The kNN graph the detectors share (``None`` when none reads it) and its index: searched
    in full, or updated from the last run's for the new rows (``reuse``)."""
    if not needs_graph(cfg) or embeddings.shape[0] < 2:
        return None, None
    t = time.perf_counter()
    if reuse is not None and reuse.memory.graph is not None:
        index = copy.deepcopy(reuse.memory.index)  # its row lists become this run's; the memory keeps its own
        knn = update_graph(embeddings, reuse.memory.graph, reuse.kept, cfg.k, index)
    else:
        knn, index = knn_search(embeddings, cfg.k, seed=cfg.seed)
    seconds["knn_graph"] = time.perf_counter() - t
    return knn, index


def plan_reuse(
    cfg: IssuesConfig,
    memory: IssueMemory | None,
    ids: np.ndarray,
    texts: Sequence[str] | None,
    embeddings: np.ndarray,
    classes: list[str],
) -> tuple[np.ndarray | None, str, Reuse | None]:
    """The rows' keys and the settings (``None`` keys: too few rows to keep a memory), and how
    ``memory`` maps onto the rows (``None``: a full run)."""
    n = embeddings.shape[0]
    if cfg.reuse_above is None or n < cfg.reuse_above:
        return None, "", None
    import sklearn

    settings = settings_key(
        k=cfg.k, folds=cfg.folds, seed=cfg.seed, recipe=cfg.recipe, model=cfg.model, views=cfg.views,
        classes=classes, dim=embeddings.shape[1], search="exact" if n <= EXACT_MAX_ROWS else "blocked",
        versions=[sklearn.__version__, pl.__version__],  # the kept models' and the row keys' makers
    )  # fmt: skip
    keys = row_keys(ids, texts, embeddings)
    reuse = memory.reuse(keys, settings, cfg.reuse_max_changed) if memory is not None else None
    return keys, settings, reuse


def find_issues(
    texts: Sequence[str] | None,
    ids: Sequence[Any],
    labels: Sequence[Any],
    classes: Sequence[str],
    embeddings: np.ndarray,
    cfg: IssuesConfig | None = None,
    verdicts: pl.DataFrame | None = None,
    memory: IssueMemory | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Find label errors, outliers, near-duplicates and class imbalance in one pass.

    Parameters
    ----------
    texts : sequence of str, optional
        The rows' texts (for the TF-IDF view and ``exact_duplicate``); ``None`` uses the
        embeddings alone.
    ids : sequence
        Row ids (a list, a numpy array, a polars Series); the table's ``id`` has their dtype.
    labels : sequence
        Each row's label (one of ``classes``), or ``None`` for an unlabeled pool row: pool
        rows are never label errors, but they count as neighbours, outliers and duplicates.
    classes : sequence of str
        The label set.
    embeddings : numpy.ndarray
        ``(n, d)`` unit-norm vectors of the rows.
    cfg : IssuesConfig, optional
        Detectors, recipe, model, views, folds, ``k``, seed.
    verdicts : polars.DataFrame, optional
        Reviewers' verdicts on earlier flags (``id``, ``given_label``, ``label``); the report
        then carries the measured precision of the flags.
    memory : IssueMemory, optional
        What an earlier run kept (its ``report["memory"]``): from ``cfg.reuse_above`` rows,
        a run with few new rows starts from it (see :mod:`curation.issues.memory`).

    Returns
    -------
    tuple of (polars.DataFrame, dict)
        The issue table (``ISSUE_COLUMNS``, worst first within each issue, ``id`` in the
        dtype of ``ids``) and a report:
        ``recipe``, ``members`` (name, accuracy, held-out log-loss, weight, seconds; a
        member of weight 0 was left out), ``evidence`` (the members' :class:`Evidence`),
        ``seconds`` per stage, ``flagged`` per issue, ``pred_probs`` (combined, one row per
        input row), ``label_quality`` (every row's, ``nan`` on unlabeled rows: sorting by it
        ranks all labeled rows, flagged or not, see :func:`curation.issues.label.label_quality`), ``knn``
        (the shared kNN graph, see :func:`curation.issues.knn.knn_graph`, or ``None``), and
        ``precision`` when verdicts were given, ``reused`` (``None`` for a full run, else the
        rows and the new rows among them) and ``memory`` (this run's
        :class:`~curation.issues.memory.IssueMemory`, ``None`` below ``cfg.reuse_above`` rows).
    """
    cfg = cfg or IssuesConfig()
    classes = [str(c) for c in classes]
    ids_arr = np.asarray([str(i) for i in ids], dtype=object)
    codes = label_codes(labels, classes)
    n_texts = len(codes) if texts is None else len(texts)
    if not (len(ids_arr) == len(codes) == embeddings.shape[0] == n_texts):
        raise DataError(
            f"texts, ids, labels and embeddings must have one row each, found {n_texts}, "
            f"{len(ids_arr)}, {len(codes)} and {embeddings.shape[0]}"
        )
    seconds: dict[str, float] = {}
    keys, settings, reuse = plan_reuse(cfg, memory, ids_arr, texts, embeddings, classes)
    knn, index = shared_graph(cfg, embeddings, reuse, seconds)
    trainable = len(np.unique(codes[codes >= 0])) >= 2
    members, fits, views = (
        build_evidence(cfg, texts, embeddings, codes, len(classes), knn, reuse) if trainable else ([], {}, {})
    )
    for m in members:
        seconds[m.name] = m.seconds
    t = time.perf_counter()
    if not members:
        probs = np.zeros((len(codes), len(classes)))
    elif cfg.recipe == "reference":
        probs = members[0].pred_probs
    else:
        probs = combine(members, codes, seed=cfg.seed)
    seconds["combine"] = time.perf_counter() - t
    inputs = IssueInputs(
        ids_arr, codes, classes, embeddings, probs, knn, members, cfg.recipe, text_array(texts)
    )
    table = run_detectors(cfg, inputs, seconds)
    report: dict[str, Any] = {
        "recipe": cfg.recipe,
        "members": [{k: getattr(m, k) for k in MEMBER_FIGURES} for m in members],
        "evidence": members,
        "label_quality": label_quality(codes, probs),
        "seconds": seconds,
        "flagged": {str(k): int(v) for k, v in table.group_by("issue").len().iter_rows()},
        "pred_probs": probs,
        "knn": knn,
        "reused": None if reuse is None else {"rows": len(codes), "new": int((reuse.kept < 0).sum())},
        "memory": None,
    }
    if keys is not None:
        changed, base = (reuse.changed, reuse.memory.base) if reuse is not None else (0, len(codes))
        report["memory"] = IssueMemory(settings, keys, knn, index, views, fits, changed, base)
    if verdicts is not None:
        report["precision"] = flag_precision(table, verdicts)
    return keep_id_dtype(keep_id_dtype(table, ids), ids, column="partner"), report


def text_array(texts: Sequence[str] | None) -> np.ndarray | None:
    """The texts as an object array (``None`` stays ``None``)."""
    return None if texts is None else np.asarray([str(t) for t in texts], dtype=object)


def needs_graph(cfg: IssuesConfig) -> bool:
    """Whether a configured detector (see :attr:`Detector.needs`) or view reads the kNN graph."""
    graph = any("knn" in DETECTORS.get(d.name).needs for d in cfg.detectors)
    return graph or (cfg.recipe == "ensemble" and "knn" in cfg.views)


def run_detectors(cfg: IssuesConfig, inputs: IssueInputs, seconds: dict[str, float]) -> pl.DataFrame:
    """Every configured detector on the shared inputs; one table, worst first within each issue.

    The table has ``ISSUE_COLUMNS`` and then every configured detector's own columns
    (:attr:`Detector.columns`, e.g. ``partner`` of ``near_duplicate``), null on the rows of
    the detectors that do not fill them.
    """
    detectors = [
        DETECTORS.create(d.name, d.params(), field=f"issues.detectors.{i}")
        for i, d in enumerate(cfg.detectors)
    ]
    schema = dict(ISSUE_COLUMNS)
    for detector in detectors:
        schema.update(detector.columns)
    tables = [pl.DataFrame(schema=schema)]
    for detector in detectors:
        t = time.perf_counter()
        tables.append(detector.find(inputs))
        seconds[detector.name] = time.perf_counter() - t
    return pl.concat(tables, how="diagonal")
