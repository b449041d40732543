"""The selection step's entry point: a strategy by name (or instance) over a pool, under a budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from curation.strategies.base import STRATEGIES, Pool, Strategy
from curation.support.ids import keep_id_dtype


def make_strategy(
    strategy: str | Strategy | Any = "hybrid", params: dict[str, Any] | None = None
) -> Strategy:
    """A strategy instance from a name (with ``params``), a ``{name, ...}`` config, or itself."""
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str):
        return STRATEGIES.create(strategy, params, field="strategy")
    return STRATEGIES.create(strategy.name, strategy.params(), field="strategy")


def select(
    embeddings: np.ndarray,
    budget: int,
    *,
    ids: Sequence[Any] | None = None,
    labeled: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    strategy: str | Strategy | Any = "hybrid",
    seed: int = 0,
    suspects: Sequence[Any] | None = None,
    suspect_scores: np.ndarray | None = None,
    verdicts: tuple[int, int] = (0, 0),
) -> pl.DataFrame:
    """Choose up to ``budget`` rows of the pool to label next.

    Parameters
    ----------
    embeddings : numpy.ndarray
        ``(n, d)`` unit-norm vectors of the unlabeled pool.
    budget : int
        How many rows to choose (review tasks included).
    ids : sequence, optional
        The pool rows' ids (default the row numbers ``0..n-1``); the table's ``id`` has
        their dtype.
    labeled : numpy.ndarray, optional
        ``(m, d)`` vectors of the rows already labeled (default none: a cold start).
    probs : numpy.ndarray, optional
        ``(n, classes)`` predicted probabilities of the pool rows (uncertainty strategies
        need them; without, they fall back to their cold start).
    strategy : str, Strategy or ``{name, ...}`` config
        A name of :data:`curation.strategies.base.STRATEGIES`, an instance, or a config.
    seed : int
        Seed for any randomness.
    suspects, suspect_scores : optional
        Ids of labeled rows with suspected label errors (worst first) and their
        label-quality scores, for strategies that review (``review``).
    verdicts : tuple of int
        Reviews of earlier suspects answered so far and how many changed the label (what
        ``review: decision`` learns the flags' precision from).

    Returns
    -------
    polars.DataFrame
        ``SELECTION_COLUMNS``: ``id``, ``score``, ``rank``, ``reason`` and ``kind`` per row,
        best first.

    Examples
    --------
    >>> X = np.eye(4, dtype=np.float32)
    >>> select(X, 2, strategy="kcenter")["id"].to_list()
    [3, 0]
    >>> select(X, 2, ids=["a", "b", "c", "d"], strategy="kcenter")["id"].to_list()
    ['d', 'a']
    """
    n = embeddings.shape[0]
    pool = Pool(
        np.asarray([str(i) for i in (ids if ids is not None else range(n))], dtype=object),
        np.asarray(embeddings, dtype=np.float32),
        np.zeros((0, embeddings.shape[1]), np.float32) if labeled is None else labeled,
        probs,
        seed,
        suspects=np.asarray([str(s) for s in (suspects if suspects is not None else [])], dtype=str),
        suspect_scores=suspect_scores,
        verdicts=verdicts,
    )
    chosen = make_strategy(strategy).select(pool, budget)
    return keep_id_dtype(chosen, ids if ids is not None else range(n), suspects)
