"""What a round's issue step keeps for the next one, so that a round with few new rows is cheap.

A dataset that grows by a few percent a round need not be searched and fitted from scratch.
:class:`IssueMemory` holds, by row (its id, text and vector), the kNN graph and the index it
was searched over, each text view's vectorizers and rows, and each model view's folds and
fitted models. Given to the next :func:`curation.find_issues` it lets that round search for
the new rows only (:func:`~curation.issues.knn.update_graph`: the graph a full search over the
same index gives), turn only the new texts into TF-IDF rows (with the vocabulary kept), and
start every cross-validated fit from the last solution, each row in its old fold
(:func:`~curation.steps.model.cross_fit`). The flags then match a full recompute's within the
tolerance measured in ``docs/label_issues.md``.

Once more than ``issues.reuse_max_changed`` of the rows are new or changed since the last
full run (or a setting that shapes the result changed), the round runs in full again.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix, vstack

from curation.issues.evidence import TextView, ViewFit
from curation.issues.knn import KnnIndex

log = logging.getLogger(__name__)


@dataclass
class IssueMemory:
    """One run of the issue step, kept for the next (see the module's docstring).

    Attributes
    ----------
    settings : str
        The settings the run depended on (:func:`settings_key`); another value means a full run.
    keys : numpy.ndarray
        Each row's key (:func:`row_keys`), in the run's row order.
    graph : scipy.sparse.csr_matrix, optional
        The kNN graph over those rows.
    index : KnnIndex, optional
        The partition the graph was searched over (``None``: exact search).
    texts : dict
        Per text view: its fitted :class:`~curation.issues.evidence.TextView` and rows.
    fits : dict
        Per model view (``embedding``, ``tfidf``, ...): its :class:`~curation.issues.evidence.ViewFit`.
    changed : int
        Rows new or changed since the last full run.
    base : int
        Rows of the last full run.
    """

    settings: str
    keys: np.ndarray
    graph: csr_matrix | None = None
    index: KnnIndex | None = None
    texts: dict[str, tuple[TextView, csr_matrix]] = field(default_factory=dict)
    fits: dict[str, ViewFit] = field(default_factory=dict)
    changed: int = 0
    base: int = 0

    def reuse(self, keys: np.ndarray, settings: str, max_changed: float) -> Reuse | None:
        """How this run's work maps onto rows ``keys``, or ``None`` when a full run is due:
        the settings differ, or over ``max_changed`` of the rows are new since the last full run."""
        if settings != self.settings:
            log.info("issue step: the settings changed since the last run; a full run")
            return None
        if len(np.unique(keys)) < len(keys) or len(np.unique(self.keys)) < len(self.keys):
            log.info("issue step: rows repeat (the same id, text and vector); a full run")
            return None
        where = pl.DataFrame({"key": self.keys, "at": np.arange(len(self.keys), dtype=np.int64)})
        kept = pl.DataFrame({"key": keys}).join(where, on="key", how="left", maintain_order="left")
        at = kept["at"].fill_null(-1).to_numpy()
        changed = self.changed + int((at < 0).sum()) + len(self.keys) - int((at >= 0).sum())
        if changed > max_changed * max(self.base, 1):
            log.info("issue step: %d rows new or gone since the last full run; a full run", changed)
            return None
        return Reuse(self, at, changed)

    def save(self, path: Path) -> None:
        """Write to ``path`` (atomically: a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> IssueMemory | None:
        """The memory at ``path``; ``None`` if there is none or it cannot be read (a full run)."""
        if not path.exists():
            return None
        try:
            with open(path, "rb") as f, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. another scikit-learn's: the settings then differ
                memory = pickle.load(f)  # the project's own cache, written by save()
        except Exception as e:  # any unreadable cache means a full run, said once
            log.warning("issue step: cannot read %s (%s); this round runs in full", path, e)
            return None
        return memory if isinstance(memory, cls) else None


@dataclass
class Reuse:
    """An :class:`IssueMemory` mapped onto this run's rows.

    Attributes
    ----------
    memory : IssueMemory
        What the last run kept.
    kept : numpy.ndarray
        Each row's position in the last run, ``-1`` for a new row (or one whose id, text or
        vector changed).
    changed : int
        Rows new or changed since the last full run, these included.
    """

    memory: IssueMemory
    kept: np.ndarray
    changed: int

    def fit(self, view: str) -> ViewFit | None:
        """The last fit of model view ``view``, its folds aligned to this run's rows."""
        fit = self.memory.fits.get(view)
        if fit is None:
            return None
        seen = self.kept >= 0
        folds = np.where(seen, fit.folds[np.maximum(self.kept, 0)], -1)
        draws = None if fit.draws is None else np.where(seen, fit.draws[np.maximum(self.kept, 0)], np.nan)
        return ViewFit(fit.model, folds, fit.models, fit.pool_model, draws)

    def text(self, view: str, texts: Sequence[str]) -> tuple[TextView, csr_matrix] | None:
        """Text view ``view`` over this run's rows: kept rows as they were, new ones transformed."""
        if view not in self.memory.texts:
            return None
        fitted, rows = self.memory.texts[view]
        new = np.flatnonzero(self.kept < 0)
        if len(new) == 0:  # scikit-learn refuses to transform no rows
            return fitted, rows[self.kept]
        both = vstack([rows, fitted.transform([texts[i] for i in new])], format="csr")
        at = self.kept.copy()
        at[new] = rows.shape[0] + np.arange(len(new))
        return fitted, both[at]


def row_keys(
    ids: Sequence[str] | np.ndarray, texts: Sequence[str] | None, X: np.ndarray, chunk: int = 65_536
) -> np.ndarray:
    """A 64-bit key per row from its id, its text and its vector: equal keys, equal rows.

    Examples
    --------
    >>> X = np.eye(2, dtype=np.float32)
    >>> a = row_keys(["1", "2"], ["x", "y"], X)
    >>> bool(a[0] != a[1]), bool((row_keys(["1", "2"], ["x", "y"], X) == a).all())
    (True, True)
    >>> bool(row_keys(["1", "2"], ["x", "z"], X)[1] == a[1])  # another text, another key
    False
    """
    # polars' hash may change between polars versions: the settings hold its version (a full run)
    key = pl.Series(list(ids), dtype=pl.String).hash(seed=1).to_numpy().copy()
    if texts is not None:
        key ^= pl.Series(list(texts), dtype=pl.String).hash(seed=2).to_numpy() * np.uint64(3)
    words = np.ascontiguousarray(X, dtype=np.float32).view(np.uint32)
    mult = np.random.default_rng(7).integers(1, 2**63, words.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        for i in range(0, len(words), chunk):
            part = words[i : i + chunk].astype(np.uint64)
            key[i : i + chunk] ^= (part * mult).sum(axis=1, dtype=np.uint64)
    return key


def settings_key(**settings: object) -> str:
    """The settings a run's results depend on, as one comparable string.

    Examples
    --------
    >>> settings_key(k=10, views=["embedding"]) == settings_key(views=["embedding"], k=10)
    True
    """
    return json.dumps(settings, sort_keys=True, default=str)
