"""Drift between two snapshots of a dataset: its labels, its embeddings and its texts.

Each test returns a :class:`DriftTest` with a statistic, a p-value, the threshold it is
held to, and whether it is breached (``p < alpha`` and the effect size at least
``min_distance``: on large data a trivial shift is "significant", the effect size keeps it
from alerting):

- :func:`label_drift`: Pearson's chi-square test of homogeneity on the label counts of the
  two snapshots (a 2 x K contingency table; labels seen in only one of them count too),
  with the total variation distance as the effect size.
- :func:`knn_drift` (the default embedding test, chosen by ``benchmarks/drift.py``): pockets
  of new data, the later rows whose nearest neighbours in both samples are all later rows,
  counted against a permutation test.
- :func:`mmd_drift`: the maximum mean discrepancy with an RBF kernel (bandwidth by the
  median heuristic) and a permutation test.
- :func:`classifier_drift`: a domain classifier, Evidently's default for embeddings. A ridge classifier learns to tell
  the earlier rows from the later ones; its cross-validated ROC AUC is the statistic and the
  effect size (threshold 0.55, Evidently's). The p-value is a permutation test that refits
  every fold for every permutation (one linear solve per fold serves them all).
- :func:`embedding_drift`: a two-sample Kolmogorov-Smirnov test on every embedding
  dimension, Bonferroni-corrected over the dimensions; the statistic is the largest KS
  distance.
- :func:`text_drift`: simple text descriptors (length in characters, the share of a text's
  words the reference never uses, its writing script), each tested (KS, KS, chi-square)
  and Bonferroni-corrected over the three.

:data:`EMBEDDING_TESTS` names the embedding tests (``knn``, ``mmd``, ``classifier``, ``ks``);
:func:`embedding_test` runs one by name with its default threshold.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from curation.errors import ConfigError, DataError


@dataclass(frozen=True)
class DriftTest:
    """The outcome of one drift test.

    Attributes
    ----------
    name : str
        ``"label"``, ``"embedding"`` or ``"text"``.
    test : str
        The statistical test used.
    statistic : float
        The test statistic (chi-square; rows in kNN pockets; ROC AUC; MMD²; largest KS distance).
    p_value : float
        Its p-value (permutation p-values are at least ``1 / (permutations + 1)``;
        Bonferroni-corrected over dimensions or descriptors).
    distance : float
        The effect size (total variation distance; excess share of rows in kNN pockets; ROC
        AUC; MMD²; largest KS distance).
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
    check_vectors(before, after)
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


def check_vectors(before: np.ndarray, after: np.ndarray, least: int = 2) -> None:
    """Raise :class:`DataError` unless both are ``(n, dim)`` arrays of one ``dim``, ``n >= least``."""
    if before.ndim != 2 or after.ndim != 2 or before.shape[1] != after.shape[1]:
        raise DataError(
            f"expected two samples of vectors of one size, found shapes "
            f"{before.shape} and {after.shape}; sweep with the same embedding model"
        )
    if len(before) < least or len(after) < least:
        raise DataError(
            f"expected at least {least} vectors in each sample for a drift test, found "
            f"{len(before)} and {len(after)}; sweep more rows or raise the sample"
        )


def _labelings(n: int, m: int, permutations: int, seed: int) -> np.ndarray:
    """``(n + m, permutations + 1)`` 0/1 float matrix: column 0 the true split (the first
    ``n`` rows are 0), the others seeded permutations of it."""
    y = np.r_[np.zeros(n), np.ones(m)]
    rng = np.random.default_rng(seed)
    return np.column_stack([y] + [rng.permutation(y) for _ in range(permutations)])


def _p_value(stat: np.ndarray) -> float:
    """Permutation p-value of ``stat[0]`` against ``stat[1:]`` (larger is more extreme)."""
    return float((1 + np.sum(stat[1:] >= stat[0])) / len(stat))


def classifier_drift(
    before: np.ndarray,
    after: np.ndarray,
    alpha: float = 0.01,
    min_distance: float = 0.55,
    *,
    folds: int = 5,
    permutations: int = 200,
    ridge: float = 1.0,
    seed: int = 0,
) -> DriftTest:
    """Domain classifier: the cross-validated ROC AUC of telling ``after`` rows from ``before`` rows.

    A ridge classifier (least squares on 0/1 targets, penalty ``ridge`` times the mean
    eigenvalue of the rows' scatter) is fitted on ``folds - 1`` folds and scores the held-out
    one; the statistic is the mean held-out ROC AUC (0.5: indistinguishable). The p-value
    permutes which rows are "after" and refits every fold for each permutation; one solve
    per fold serves every permutation, so the test costs about one fit.

    Parameters
    ----------
    before, after : numpy.ndarray
        ``(n, dim)`` and ``(m, dim)`` samples of the two snapshots' vectors.
    alpha : float
        Significance threshold of the permutation p-value.
    min_distance : float
        Smallest ROC AUC that counts as drift (Evidently's default threshold, 0.55).
    folds : int
        Cross-validation folds (random, independent of which snapshot a row is from).
    permutations : int
        Permutations of the p-value (its smallest value is ``1 / (permutations + 1)``).
    ridge : float
        Relative ridge penalty.
    seed : int
        Seed of the folds and the permutations.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    >>> classifier_drift(a, b).drift, classifier_drift(a, b + 0.5).drift
    (False, True)
    """
    check_vectors(before, after, least=folds)
    Z = np.vstack([before, after]).astype(np.float64)
    Y = _labelings(len(before), len(after), permutations, seed)
    fold = np.random.default_rng(seed + 1).permutation(len(Z)) % folds
    aucs = np.zeros(Y.shape[1])
    for f in range(folds):
        train, test = fold != f, fold == f
        Xc = Z[train] - Z[train].mean(axis=0)
        gram = Xc.T @ Xc
        penalty = ridge * np.trace(gram) / len(gram)
        W = np.linalg.solve(gram + penalty * np.eye(len(gram)), Xc.T @ Y[train])
        aucs += _aucs(Z[test] @ W, Y[test]) / folds
    auc = float(aucs[0])
    p = _p_value(aucs)
    return DriftTest(
        "embedding",
        f"domain classifier ROC AUC ({folds}-fold ridge, {permutations} permutations)",
        auc,
        p,
        auc,
        alpha,
        min_distance,
        bool(p < alpha and auc >= min_distance),
    )


def _aucs(scores: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The ROC AUC of each column of ``scores`` for the 0/1 column of ``Y`` beside it (ties
    count a half; a column with one class only gets 0.5)."""
    ranks = stats.rankdata(scores, axis=0)
    pos = Y.sum(axis=0)
    neg = len(Y) - pos
    u = (ranks * Y).sum(axis=0) - pos * (pos + 1) / 2
    return np.where(pos * neg > 0, u / np.maximum(pos * neg, 1), 0.5)


def mmd_drift(
    before: np.ndarray,
    after: np.ndarray,
    alpha: float = 0.01,
    min_distance: float = 0.0,
    *,
    permutations: int = 200,
    max_rows: int = 5000,
    seed: int = 0,
) -> DriftTest:
    """Maximum mean discrepancy, RBF kernel with the median heuristic, permutation test.

    The kernel is ``exp(-|x - y|^2 / (2 s^2))`` with ``s^2`` the median squared distance
    between rows of both samples (over at most 1,000 rows); the statistic is the unbiased
    estimate of MMD². Each sample is cut to ``max_rows`` seeded rows first (the kernel
    matrix is ``(n + m)^2`` floats).

    Parameters
    ----------
    before, after : numpy.ndarray
        ``(n, dim)`` and ``(m, dim)`` samples of the two snapshots' vectors.
    alpha : float
        Significance threshold of the permutation p-value.
    min_distance : float
        Smallest MMD² that counts as drift.
    permutations : int
        Permutations of the p-value (its smallest value is ``1 / (permutations + 1)``).
    max_rows : int
        Rows kept of each sample.
    seed : int
        Seed of the row cut, the median's rows and the permutations.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    >>> mmd_drift(a, b).drift, mmd_drift(a, b + 0.5).drift
    (False, True)
    """
    check_vectors(before, after)
    rng = np.random.default_rng(seed)
    a, b = (
        x[np.sort(rng.choice(len(x), max_rows, replace=False))] if len(x) > max_rows else x
        for x in (before, after)
    )
    Z = np.vstack([a, b]).astype(np.float32)
    sq = (Z * Z).sum(axis=1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * (Z @ Z.T), 0)
    some = rng.choice(len(Z), min(len(Z), 1000), replace=False)
    median = float(np.median(D[np.ix_(some, some)][np.triu_indices(len(some), 1)])) or 1.0
    K = np.exp(D / np.float32(-2 * median), out=D)
    Y = _labelings(len(a), len(b), permutations, seed).astype(np.float32)
    KY = K @ Y
    n, m, total = len(a), len(b), float(K.sum())
    yky = np.einsum("ij,ij->j", Y, KY, dtype=np.float64)  # after-after sums
    xky = KY.sum(axis=0, dtype=np.float64) - yky  # before-after sums
    xkx = total - 2 * xky - yky
    # the diagonal of an RBF kernel is 1: n of it within before, m within after
    mmd2 = (xkx - n) / (n * (n - 1)) + (yky - m) / (m * (m - 1)) - 2 * xky / (n * m)
    p = _p_value(mmd2)
    return DriftTest(
        "embedding",
        f"MMD² (RBF, median heuristic, {permutations} permutations)",
        float(mmd2[0]),
        p,
        float(mmd2[0]),
        alpha,
        min_distance,
        bool(p < alpha and mmd2[0] >= min_distance),
    )


def _neighbours(Z: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """``(n, k)`` indices of each row's ``k`` nearest other rows by inner product (cosine on
    unit vectors), computed a block of rows at a time."""
    out = np.empty((len(Z), k), np.int64)
    for i in range(0, len(Z), block):
        S = Z[i : i + block] @ Z.T
        S[np.arange(len(S)), np.arange(i, i + len(S))] = -np.inf  # not its own neighbour
        out[i : i + block] = np.argpartition(-S, k - 1, axis=1)[:, :k]
    return out


def knn_drift(
    before: np.ndarray,
    after: np.ndarray,
    alpha: float = 0.01,
    min_distance: float = 0.005,
    *,
    k: int = 10,
    permutations: int = 200,
    max_rows: int = 5000,
    seed: int = 0,
) -> DriftTest:
    """Pockets of new data: ``after`` rows whose ``k`` nearest neighbours are all ``after`` rows.

    Both samples are pooled and each row's ``k`` nearest neighbours found (cosine). A row of
    a kind the earlier snapshot never had (a new intent, a new source) sits among rows like
    itself, all of them new, so its neighbourhood holds no earlier row. The statistic is the
    number of ``after`` rows in such a pocket; the p-value permutes which rows are "after"
    over the same graph. The effect size is the share of ``after`` rows in pockets beyond the
    permutations' mean. A whole-sample test (MMD, a domain classifier) averages a small new
    group into the rest; this one counts only where the samples differ locally. Each sample
    is cut to ``max_rows`` seeded rows first. A small shift of every row (a new mean) is
    MMD's to find: :func:`mmd_drift` sees it before pockets form.

    Parameters
    ----------
    before, after : numpy.ndarray
        ``(n, dim)`` and ``(m, dim)`` samples of the two snapshots' vectors.
    alpha : float
        Significance threshold of the permutation p-value.
    min_distance : float
        Smallest excess share of ``after`` rows in pockets that counts as drift.
    k : int
        Neighbours of a row.
    permutations : int
        Permutations of the p-value (its smallest value is ``1 / (permutations + 1)``).
    max_rows : int
        Rows kept of each sample.
    seed : int
        Seed of the row cut and the permutations.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    >>> new = rng.normal(size=(30, 8)) * 0.1 + 3.0
    >>> knn_drift(a, b).drift, knn_drift(a, np.r_[b[:270], new]).drift
    (False, True)
    """
    check_vectors(before, after, least=k + 1)
    rng = np.random.default_rng(seed)
    a, b = (
        x[np.sort(rng.choice(len(x), max_rows, replace=False))] if len(x) > max_rows else x
        for x in (before, after)
    )
    Z = np.vstack([a, b]).astype(np.float32)
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)  # cosine
    near = _neighbours(Z, k)
    Y = _labelings(len(a), len(b), permutations, seed).astype(bool)
    in_pocket = np.ones_like(Y)
    for j in range(k):  # every neighbour an "after" row, for every labeling at once
        in_pocket &= Y[near[:, j]]
    counts = (in_pocket & Y).sum(axis=0)
    excess = float(counts[0] - counts[1:].mean()) / len(b)
    p = _p_value(counts.astype(np.float64))
    return DriftTest(
        "embedding",
        f"kNN pockets ({k} neighbours all new, {permutations} permutations)",
        float(counts[0]),
        p,
        excess,
        alpha,
        min_distance,
        bool(p < alpha and excess >= min_distance),
    )


#: A word: a run of letters (digits and underscores split words).
WORD = re.compile(r"[^\W\d_]+")


def words(text: str) -> set[str]:
    """The distinct lower-cased words of ``text``.

    Examples
    --------
    >>> sorted(words("Card not here, card 2 late!"))
    ['card', 'here', 'late', 'not']
    """
    return set(WORD.findall(text.lower()))


def script(text: str) -> str:
    """The writing script most of the letters of ``text`` are in (the first word of their
    Unicode names: ``LATIN``, ``CYRILLIC``, ``CJK``, ``ARABIC``...), ``"none"`` without letters.

    A stand-in for language identification (no language-id package is installed and none
    is downloaded): it tells English from Russian or Chinese, not English from French.

    Examples
    --------
    >>> script("Where is my card?"), script("Где моя карта?"), script("123")
    ('LATIN', 'CYRILLIC', 'none')
    """
    counts = Counter(unicodedata.name(ch, "?").split()[0] for ch in text if ch.isalpha())
    return counts.most_common(1)[0][0] if counts else "none"


def oov_shares(before: Sequence[str], after: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The share of each text's distinct words that no ``before`` text (but itself) uses.

    An ``after`` text's word is out of vocabulary when no ``before`` text has it; a
    ``before`` text's word when no other ``before`` text has it (leave one out, so the two
    samples are scored alike). A text without words scores 0.

    Examples
    --------
    >>> oov_shares(["my card", "my pin"], ["my card", "apple pay"])
    (array([0.5, 0.5]), array([0., 1.]))
    """
    before_words = [words(t) for t in before]
    rows_with = Counter(w for ws in before_words for w in ws)

    def share(ws: set[str], seen: int) -> float:
        return sum(rows_with[w] <= seen for w in ws) / len(ws) if ws else 0.0

    return (
        np.array([share(ws, 1) for ws in before_words]),
        np.array([share(words(t), 0) for t in after]),
    )


def text_drift(
    before: Sequence[str], after: Sequence[str], alpha: float = 0.01, min_distance: float = 0.1
) -> DriftTest:
    """Drift of simple text descriptors: length, out-of-vocabulary share, script.

    Three tests, Bonferroni-corrected over the three: a two-sample KS test on the texts'
    lengths in characters, a one-sided one on their out-of-vocabulary shares against the
    ``before`` vocabulary (:func:`oov_shares`; only a rise counts: a ``before`` text scores
    its words against the other ``before`` texts, so the same texts again, or an overlap,
    score lower ``after``), and a chi-square test of homogeneity on their scripts
    (:func:`script`, a stand-in for language) with the total variation distance as its
    effect size. The result is the descriptor that drifts most (else the one of smallest
    p-value), named in ``test``.

    Parameters
    ----------
    before, after : sequence of str
        The two snapshots' texts.
    alpha : float
        Significance threshold on each corrected p-value.
    min_distance : float
        Smallest effect size (KS distance, TV distance) that counts as drift.

    Examples
    --------
    >>> old = ["where is my card", "my card is late", "reset my pin"] * 50
    >>> text_drift(old, old[::-1]).drift
    False
    >>> new = ["Где моя карта", "apple pay does not work on my new phone"] * 75
    >>> t = text_drift(old, new)
    >>> t.drift, t.test.rsplit(" ", 1)[-1]
    (True, 'out-of-vocabulary')
    """
    if len(before) < 2 or len(after) < 2:
        raise DataError(
            f"expected at least 2 texts in each sample for a text drift test, found "
            f"{len(before)} and {len(after)}; sweep more rows"
        )
    found = []
    for name, (x, y), side in (
        ("length", ([len(t) for t in before], [len(t) for t in after]), "two-sided"),
        ("out-of-vocabulary", oov_shares(before, after), "greater"),  # only more new words
    ):
        res = stats.ks_2samp(x, y, alternative=side)
        found.append((name, float(res.statistic), min(1.0, 3 * float(res.pvalue))))
    lang = label_drift(Counter(map(script, before)), Counter(map(script, after)))
    found.append(("script", lang.distance, min(1.0, 3 * lang.p_value)))
    drifting = [f for f in found if f[2] < alpha and f[1] >= min_distance]
    name, d, p = max(drifting, key=lambda f: f[1]) if drifting else min(found, key=lambda f: f[2])
    return DriftTest(
        "text",
        "text descriptors (length KS, out-of-vocabulary share one-sided KS, script chi-square; "
        f"Bonferroni over 3): {name}",
        d,
        p,
        d,
        alpha,
        min_distance,
        bool(drifting),
    )


#: The embedding drift tests by name, with their default smallest effect size.
EMBEDDING_TESTS: dict[str, tuple[Callable[..., DriftTest], float]] = {
    "classifier": (classifier_drift, 0.55),
    "mmd": (mmd_drift, 0.0),
    "ks": (embedding_drift, 0.1),
    "knn": (knn_drift, 0.005),
}
#: The names of the embedding drift tests.
EmbeddingTest = Literal["classifier", "mmd", "ks", "knn"]
#: The sweep's embedding test: the best by ``benchmarks/drift.py`` (see docs/benchmarks.md).
DEFAULT_EMBEDDING_TEST: EmbeddingTest = "knn"


def embedding_test(
    method: str,
    before: np.ndarray,
    after: np.ndarray,
    alpha: float = 0.01,
    min_distance: float | None = None,
    seed: int = 0,
) -> DriftTest:
    """Run the embedding drift test named ``method`` (a key of :data:`EMBEDDING_TESTS`).

    ``min_distance`` defaults to the method's own (pocket share 0.005, ROC AUC 0.55, MMD² 0, KS
    distance 0.1).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    >>> embedding_test("mmd", a, b + 0.5).drift
    True
    """
    if method not in EMBEDDING_TESTS:
        raise ConfigError(
            f"unknown embedding drift test {method!r}",
            field="gates.embedding_test",
            choices=sorted(EMBEDDING_TESTS),
        )
    fn, default = EMBEDDING_TESTS[method]
    floor = default if min_distance is None else min_distance
    if method == "ks":
        return fn(before, after, alpha, floor)
    return fn(before, after, alpha, floor, seed=seed)
