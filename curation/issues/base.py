"""The issue-detector contract: one ABC, a fixed output shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

#: Every detector returns these columns (one row per flagged item, worst first).
#: ``score`` is in [0, 1], higher is worse; ``rank`` starts at 1.
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
        Out-of-sample probabilities from cross-validation.
    """

    ids: np.ndarray
    labels: np.ndarray
    classes: list[str]
    embeddings: np.ndarray
    pred_probs: np.ndarray


def issue_table(inputs: IssueInputs, issue: str, idx: np.ndarray, score: np.ndarray) -> pl.DataFrame:
    """Build the fixed-shape table for rows ``idx`` with severity ``score``, worst first."""
    order = np.argsort(-score, kind="stable")
    idx, score = idx[order], score[order]
    classes = np.asarray(inputs.classes, dtype=object)
    return pl.DataFrame(
        {
            "id": inputs.ids[idx].astype(str),
            "issue": [issue] * len(idx),
            "score": score.astype(np.float64),
            "rank": np.arange(1, len(idx) + 1, dtype=np.int64),
            "given_label": classes[inputs.labels[idx]].astype(str) if len(idx) else [],
            "suggested_label": classes[inputs.pred_probs[idx].argmax(1)].astype(str) if len(idx) else [],
        },
        schema=ISSUE_COLUMNS,
    )


class Detector(ABC):
    """An issue detector: ``name`` and ``find(inputs) -> table`` of ``ISSUE_COLUMNS``."""

    name: ClassVar[str]

    @abstractmethod
    def find(self, inputs: IssueInputs) -> pl.DataFrame:
        """The flagged rows, worst first, in the shape of ``ISSUE_COLUMNS``."""
