"""Drift between two snapshots of a dataset: its label distribution and its embeddings.

Each test returns a :class:`DriftTest` with a statistic, a p-value, the threshold it is
held to, and whether it is breached:

- :func:`label_drift`: Pearson's chi-square test of homogeneity on the label counts of the
  two snapshots (a 2 x K contingency table; labels seen in only one of them count too),
  with the total variation distance as the effect size. Drift when ``p < alpha`` and the
  distance is at least ``min_distance`` (on large data a trivial shift is "significant").
- :func:`embedding_drift`: a two-sample Kolmogorov-Smirnov test on every embedding
  dimension, Bonferroni-corrected over the dimensions; the statistic is the largest KS
  distance. Drift when the corrected ``p < alpha`` and that distance is at least
  ``min_distance``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from curation.errors import DataError


@dataclass(frozen=True)
class DriftTest:
    """The outcome of one drift test.

    Attributes
    ----------
    name : str
        ``"label"`` or ``"embedding"``.
    test : str
        The statistical test used.
    statistic : float
        The test statistic (chi-square; largest KS distance).
    p_value : float
        Its p-value (Bonferroni-corrected for the embedding test).
    distance : float
        The effect size (total variation distance; largest KS distance).
    alpha : float
        The significance threshold.
    min_distance : float
        The smallest effect size that counts as drift.
    drift : bool
        ``p_value < alpha and distance >= min_distance``.
    """

    name: str
    test: str
    statistic: float
    p_value: float
    distance: float
    alpha: float
    min_distance: float
    drift: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def label_drift(
    before: dict[str, int], after: dict[str, int], alpha: float = 0.01, min_distance: float = 0.02
) -> DriftTest:
    """Chi-square test of homogeneity between two label-count tables.

    Parameters
    ----------
    before, after : dict of str to int
        Rows per label in the earlier and the later snapshot.
    alpha : float
        Significance threshold.
    min_distance : float
        Smallest total variation distance that counts as drift.

    Examples
    --------
    >>> label_drift({"a": 500, "b": 500}, {"a": 500, "b": 500}).drift
    False
    >>> label_drift({"a": 500, "b": 500}, {"a": 800, "b": 200}).drift
    True
    """
    labels = sorted(set(before) | set(after))
    table = np.array(
        [[before.get(k, 0) for k in labels], [after.get(k, 0) for k in labels]], dtype=np.float64
    )
    if table.sum(axis=1).min() == 0:
        raise DataError(
            "expected labeled rows in both snapshots, found none in one of them; check the label column"
        )
    shares = table / table.sum(axis=1, keepdims=True)
    distance = float(0.5 * np.abs(shares[0] - shares[1]).sum())
    if len(labels) < 2:
        chi2, p = 0.0, 1.0
    else:
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    return DriftTest(
        "label",
        "chi-square homogeneity",
        float(chi2),
        float(p),
        distance,
        alpha,
        min_distance,
        bool(p < alpha and distance >= min_distance),
    )


def embedding_drift(
    before: np.ndarray, after: np.ndarray, alpha: float = 0.01, min_distance: float = 0.1
) -> DriftTest:
    """Per-dimension two-sample KS tests on embeddings, Bonferroni-corrected.

    Parameters
    ----------
    before, after : numpy.ndarray
        ``(n, dim)`` and ``(m, dim)`` samples of the two snapshots' vectors.
    alpha : float
        Significance threshold on the corrected p-value.
    min_distance : float
        Smallest KS distance (on the worst dimension) that counts as drift.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    >>> embedding_drift(a, b).drift, embedding_drift(a, b + 1.0).drift
    (False, True)
    """
    if before.ndim != 2 or after.ndim != 2 or before.shape[1] != after.shape[1]:
        raise DataError(
            f"expected two samples of vectors of one size, found shapes "
            f"{before.shape} and {after.shape}; sweep with the same embedding model"
        )
    if len(before) < 2 or len(after) < 2:
        raise DataError("expected at least 2 vectors in each sample for a drift test")
    res = stats.ks_2samp(before, after, axis=0)
    d = np.asarray(res.statistic, dtype=np.float64)
    p = np.asarray(res.pvalue, dtype=np.float64)
    worst = int(np.argmax(d))
    corrected = float(min(1.0, p.min() * len(p)))
    return DriftTest(
        "embedding",
        f"KS per dimension ({len(p)}, Bonferroni)",
        float(d[worst]),
        corrected,
        float(d[worst]),
        alpha,
        min_distance,
        bool(corrected < alpha and d[worst] >= min_distance),
    )
