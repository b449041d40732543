"""The issue step's one entry point: evidence, the shared kNN graph, every detector, a report."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from curation.config import IssuesConfig
from curation.errors import DataError
from curation.issues.base import DETECTORS, ISSUE_COLUMNS, Evidence, IssueInputs
from curation.issues.evidence import combine, graph_evidence, model_evidence, ngram_features, tfidf_features
from curation.issues.feedback import flag_precision
from curation.issues.knn import knn_graph
from curation.issues.label import label_quality
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
) -> list[Evidence]:
    """The recipe's members: one per view it can build (reference: embeddings, ``logreg``)."""
    if cfg.recipe == "reference":
        return [model_evidence("embedding", embeddings, codes, n_classes, "logreg", cfg.folds, cfg.seed)]
    members = []
    for view in cfg.views:
        if view == "embedding":
            members.append(model_evidence(view, embeddings, codes, n_classes, cfg.model, cfg.folds, cfg.seed))
        elif view in ("tfidf", "ngrams") and texts is not None:
            t = time.perf_counter()
            X = tfidf_features(texts) if view == "tfidf" else ngram_features(texts)
            ev = model_evidence(view, X, codes, n_classes, cfg.model, cfg.folds, cfg.seed)
            ev.seconds = time.perf_counter() - t
            members.append(ev)
        elif view == "knn" and knn is not None:
            members.append(graph_evidence(knn, codes, n_classes))
    return members


def find_issues(
    texts: Sequence[str] | None,
    ids: Sequence[Any],
    labels: Sequence[Any],
    classes: Sequence[str],
    embeddings: np.ndarray,
    cfg: IssuesConfig | None = None,
    verdicts: pl.DataFrame | None = None,
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
        ``precision`` when verdicts were given.
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
    wants_graph = needs_graph(cfg)
    knn = None
    if wants_graph and len(codes) > 1:
        t = time.perf_counter()
        knn = knn_graph(embeddings, cfg.k, seed=cfg.seed)
        seconds["knn_graph"] = time.perf_counter() - t
    trainable = len(np.unique(codes[codes >= 0])) >= 2
    members = build_evidence(cfg, texts, embeddings, codes, len(classes), knn) if trainable else []
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
    }
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
