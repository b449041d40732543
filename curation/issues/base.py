"""The issue-detector extension point: one ABC, a fixed output shape, the registry.

A detector declares what it reads (:attr:`Detector.needs`): the issue step builds the shared
kNN graph only when a configured detector (or the ensemble's kNN view) needs it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import polars as pl

from curation.support.registry import Registry

#: Every detector returns these columns (one row per flagged item, worst first).
#: ``score`` is in [0, 1], higher is worse; ``rank`` starts at 1. ``id`` is a String here;
#: :func:`curation.find_issues` gives it back in the dtype of the ids it was given.
ISSUE_COLUMNS: dict[str, Any] = {
    "id": pl.String,
    "issue": pl.String,
    "score": pl.Float64,
    "rank": pl.Int64,
    "given_label": pl.String,
    "suggested_label": pl.String,
}


@dataclass
class IssueInputs:
    """What detectors share, computed once per round.

    Attributes
    ----------
    ids : numpy.ndarray
        Row ids (as strings) of the labeled rows.
    labels : numpy.ndarray
        Integer label codes ``0..len(classes)-1``.
    classes : list of str
        The label names, indexed by code.
    embeddings : numpy.ndarray
        Unit-norm float32 vectors of the labeled rows.
    pred_probs : numpy.ndarray
        Out-of-sample probabilities from cross-validation (the combined evidence when the
        recipe has several members).
    knn : scipy.sparse.csr_matrix, optional
        The shared kNN graph (cleanlab's ``knn_graph`` format), computed once per round.
    members : list of Evidence
        The evidence the probabilities were combined from (one per view and model), with
        their weights; empty means ``pred_probs`` is the only evidence.
    recipe : str
        ``reference`` or ``ensemble``: how ``pred_probs`` was made (detectors may pick
        their defaults by it).
    texts : numpy.ndarray, optional
        The rows' texts, when the caller gave them.

    Rows whose label code is ``-1`` are unlabeled (the active-learning pool): label
    detectors skip them, the kNN-graph detectors include them.
    """

    ids: np.ndarray
    labels: np.ndarray
    classes: list[str]
    embeddings: np.ndarray
    pred_probs: np.ndarray
    knn: Any = None
    members: list[Evidence] = field(default_factory=list)
    recipe: str = "reference"
    texts: np.ndarray | None = None

    @property
    def labeled(self) -> np.ndarray:
        """Indices of the labeled rows."""
        return np.flatnonzero(self.labels >= 0)


@dataclass
class Evidence:
    """Out-of-sample class probabilities from one view of the data and one model.

    Attributes
    ----------
    name : str
        ``view/model``, for example ``tfidf/logreg`` or ``embedding/knn``.
    pred_probs : numpy.ndarray
        ``(n_rows, n_classes)``; rows of unlabeled data are predictions, not out-of-sample.
    accuracy : float
        Cross-validated accuracy on the labeled rows.
    weight : float
        Its weight in the combination (set by the recipe).
    seconds : float
        Time it took.
    log_loss : float
        Its held-out log-loss alone (set by the recipe; ``nan`` until then).
    leads : bool
        Whether it may be the ensemble's first member; ``False`` for a view that reads the
        given labels of other rows (the kNN labels), whose errors it then shares.
    """

    name: str
    pred_probs: np.ndarray
    accuracy: float
    weight: float = 1.0
    seconds: float = 0.0
    log_loss: float = float("nan")
    leads: bool = True


def issue_table(
    inputs: IssueInputs,
    issue: str,
    idx: np.ndarray,
    score: np.ndarray,
    extra: dict[str, pl.Series] | None = None,
) -> pl.DataFrame:
    """Build the fixed-shape table for rows ``idx`` with severity ``score``, worst first.

    ``extra`` holds a detector's own columns (see :attr:`Detector.columns`), one value per
    row of ``idx`` in the same order; they follow ``ISSUE_COLUMNS``.
    """
    order = np.argsort(-score, kind="stable")
    idx, score = idx[order], score[order]
    classes = np.asarray(list(inputs.classes) + [None], dtype=object)  # code -1: unlabeled
    table = pl.DataFrame(
        {
            "id": inputs.ids[idx].astype(str),
            "issue": [issue] * len(idx),
            "score": score.astype(np.float64),
            "rank": np.arange(1, len(idx) + 1, dtype=np.int64),
            "given_label": classes[inputs.labels[idx]].tolist() if len(idx) else [],
            "suggested_label": classes[inputs.pred_probs[idx].argmax(1)].tolist() if len(idx) else [],
        },
        schema=ISSUE_COLUMNS,
    )
    return table.with_columns([s.gather(order).alias(name) for name, s in (extra or {}).items()])


class Detector(ABC):
    """An issue detector: ``name`` and ``find(inputs) -> table`` of ``ISSUE_COLUMNS``.

    ``needs`` names the shared inputs it reads besides the probabilities: ``"knn"`` (the
    kNN graph of :attr:`IssueInputs.knn`). ``columns`` names the detector's own columns
    (name to polars dtype) that its table carries after ``ISSUE_COLUMNS``; in the issue
    step's combined table they are null on other detectors' rows.
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()
    columns: ClassVar[dict[str, Any]] = {}

    @abstractmethod
    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """The flagged rows, worst first, in the shape of ``ISSUE_COLUMNS``."""


#: The detectors, by name (``issues.detectors[].name`` in a loop file).
DETECTORS: Registry[Detector] = Registry(
    "detector",
    builtins=(
        "curation.issues.label",
        "curation.issues.outlier",
        "curation.issues.duplicate",
        "curation.issues.imbalance",
        "curation.issues.noniid",
        "curation.issues.valuation",
        "curation.issues.group",
    ),
)
