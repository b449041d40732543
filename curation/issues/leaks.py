"""Leaky splits: near-duplicates between an evaluation set and the data a model learns from.

A row of the evaluation set that nearly repeats a row of the dataset (the same question
with a word changed, a punctuation mark dropped) measures memory, not generalisation: the
accuracy on it is inflated. :func:`find_leaks` finds every such pair by cosine similarity
of the embeddings, one blocked matrix product at a time (exact, memory bounded), as
FiftyOne Brain's ``compute_leaky_splits`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from curation.config import LEAK_THRESHOLD
from curation.errors import ConfigError, DataError
from curation.support.ids import keep_id_dtype

#: The similarity block holds at most this many float32 entries (64 MB).
BLOCK_ENTRIES = 16_000_000
LEAK_COLUMNS: dict[str, Any] = {"eval_id": pl.String, "pool_id": pl.String, "similarity": pl.Float64}


def find_leaks(
    eval_X: np.ndarray,
    pool_X: np.ndarray,
    eval_ids: Sequence[Any] | None = None,
    pool_ids: Sequence[Any] | None = None,
    threshold: float = LEAK_THRESHOLD,
) -> pl.DataFrame:
    """Every pair of an evaluation row and a pool row at least ``threshold`` alike.

    Parameters
    ----------
    eval_X : numpy.ndarray
        ``(m, d)`` unit-norm vectors of the evaluation set (e.g. from :func:`curation.embed`).
    pool_X : numpy.ndarray
        ``(n, d)`` unit-norm vectors of the dataset the model learns from.
    eval_ids, pool_ids : sequence, optional
        The rows' ids (default their positions); the table gives them back in their dtype.
    threshold : float
        Smallest cosine similarity of a leak, in ``(0, 1]``.

    Returns
    -------
    polars.DataFrame
        ``eval_id``, ``pool_id``, ``similarity``: one row per pair, most alike first (an
        evaluation row may leak into several pool rows).

    Examples
    --------
    >>> X = np.eye(3, dtype=np.float32)
    >>> near = np.array([[0.99, 0.141, 0.0]], dtype=np.float32)
    >>> find_leaks(near, X, eval_ids=["e1"], pool_ids=["a", "b", "c"], threshold=0.95).rows()
    [('e1', 'a', 0.99)]
    """
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(
            f"expected a cosine similarity in (0, 1], found {threshold}", field="leak_threshold"
        )
    eval_X, pool_X = _matrix(eval_X, "eval_X"), _matrix(pool_X, "pool_X")
    if eval_X.shape[1] != pool_X.shape[1] and len(eval_X) and len(pool_X):
        raise DataError(
            f"eval_X and pool_X must have one width, found {eval_X.shape[1]} and {pool_X.shape[1]}: "
            "embed both with the same model"
        )
    e_ids = _ids(eval_ids, len(eval_X), "eval_ids")
    p_ids = _ids(pool_ids, len(pool_X), "pool_ids")
    rows, cols, sims = [], [], []
    step = max(1, BLOCK_ENTRIES // max(len(pool_X), 1))
    for start in range(0, len(eval_X), step):
        S = eval_X[start : start + step] @ pool_X.T
        r, c = np.nonzero(threshold - 1e-6 <= S)
        rows.append(r + start)
        cols.append(c)
        sims.append(S[r, c])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    s = np.concatenate(sims) if sims else np.zeros(0, np.float32)
    table = pl.DataFrame(
        {
            "eval_id": e_ids[r.astype(np.int64)],
            "pool_id": p_ids[c.astype(np.int64)],
            "similarity": np.round(np.minimum(s, 1.0).astype(np.float64), 6),
        },
        schema=LEAK_COLUMNS,
    ).sort(["similarity", "eval_id", "pool_id"], descending=[True, False, False])
    table = keep_id_dtype(table, eval_ids, column="eval_id")
    return keep_id_dtype(table, pool_ids, column="pool_id")


def _matrix(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"{name} must be a 2-D array of vectors, found shape {X.shape}")
    return X


def _ids(ids: Sequence[Any] | None, n: int, name: str) -> np.ndarray:
    if ids is None:
        return np.array([str(i) for i in range(n)], dtype=object)
    out = np.array([str(i) for i in ids], dtype=object)
    if len(out) != n:
        raise DataError(f"{name} must have one id per vector ({n}), found {len(out)}")
    return out


def leaked_rows(leaks: pl.DataFrame) -> pl.Series:
    """The distinct evaluation ids that leak (as strings).

    Examples
    --------
    >>> leaked_rows(pl.DataFrame({"eval_id": [1, 1, 2], "pool_id": [5, 6, 5]})).to_list()
    ['1', '2']
    """
    return leaks["eval_id"].cast(pl.String).unique(maintain_order=True)
