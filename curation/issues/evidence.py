"""Evidence for label errors: out-of-sample probabilities from several views and models.

A *view* is a representation of the rows: ``embedding`` (the sentence vectors), ``tfidf``
(word TF-IDF of the texts) or ``knn`` (the labels of each row's neighbours in the shared kNN
graph). Each view yields out-of-sample class probabilities and a cross-validated accuracy;
:func:`combine` pools them as a product of experts whose exponents are fitted to the given
labels (log-loss), so the tool, not a person, decides how much each view counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

from curation.issues.base import Evidence
from curation.steps.model import CrossFit, FittedModel, choose_model, cross_fit, fit_model, training_rows

log = logging.getLogger(__name__)

#: The views the ensemble recipe may use.
VIEWS: tuple[str, ...] = ("embedding", "tfidf", "ngrams", "knn")


@dataclass
class TextView:
    """A text view's fitted vectorizers, to turn more texts into the same columns.

    Attributes
    ----------
    vectorizers : list
        Fitted ``TfidfVectorizer`` objects side by side (``None`` for one in which no term
        was frequent enough: one empty column).
    normalize : bool
        Whether the side-by-side rows are scaled to unit norm (so that the parts weigh the same).
    """

    vectorizers: list[TfidfVectorizer | None]
    normalize: bool

    def transform(self, texts: Sequence[str]) -> csr_matrix:
        """The rows of ``texts`` in this view's columns (terms it never saw are left out)."""
        from scipy.sparse import hstack
        from sklearn.preprocessing import normalize

        parts = [
            v.transform(texts) if v is not None else csr_matrix((len(texts), 1), dtype=np.float32)
            for v in self.vectorizers
        ]
        out = hstack(parts, format="csr").astype(np.float32)
        return normalize(out).astype(np.float32) if self.normalize else out


def text_view(view: str, texts: Sequence[str]) -> tuple[TextView, csr_matrix]:
    """Fit the text view ``view`` (``tfidf`` or ``ngrams``) on ``texts``; its rows.

    ``tfidf``: word TF-IDF (sublinear term frequency, words in 2+ and under half of the texts,
    at most 100,000). ``ngrams``: word 1–2-grams and character 2–5-grams (within words), at
    most 100,000 terms each, side by side, rows scaled to unit norm. Below 20 texts a term
    needs only one text.

    Examples
    --------
    >>> fitted, X = text_view("tfidf", ["a cat sat", "a dog sat", "the cat ran"])
    >>> X.shape, fitted.transform(["the dog flew"]).nnz  # dog, the, ran; 'flew' is new
    ((3, 3), 2)
    """
    min_df = 2 if len(texts) >= 20 else 1
    common: dict[str, Any] = {"sublinear_tf": True, "min_df": min_df, "dtype": np.float32}
    if view == "tfidf":
        vecs = [TfidfVectorizer(max_df=0.5, max_features=100_000, strip_accents="unicode", **common)]
    else:
        words = TfidfVectorizer(
            ngram_range=(1, 2), max_df=0.5, max_features=100_000, strip_accents="unicode", **common
        )
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), max_features=100_000, **common)
        vecs = [words, chars]
    fitted: list[TfidfVectorizer | None] = []
    for vec in vecs:
        try:
            vec.fit(texts)
            fitted.append(vec)
        except ValueError:  # no term passes min_df/max_df (a handful of texts, all alike)
            log.info("%s: no term is frequent enough yet rare enough in %d texts", view, len(texts))
            fitted.append(None)
    out = TextView(fitted, normalize=view == "ngrams")
    return out, out.transform(texts)


def tfidf_features(texts: Sequence[str]) -> csr_matrix:
    """The rows of the ``tfidf`` view of :func:`text_view`.

    Examples
    --------
    >>> tfidf_features(["a cat sat", "a dog sat", "the cat ran"]).shape  # dog, the, ran
    (3, 3)
    """
    return text_view("tfidf", texts)[1]


def ngram_features(texts: Sequence[str]) -> csr_matrix:
    """The rows of the ``ngrams`` view of :func:`text_view`.

    Examples
    --------
    >>> ngram_features(["a cat sat", "a dog sat", "the cat ran"]).shape[0]
    3
    """
    return text_view("ngrams", texts)[1]


def knn_probs(knn: csr_matrix, labels: np.ndarray, n_classes: int, prior: float = 1.0) -> np.ndarray:
    """Class probabilities from the labels of each row's labeled neighbours.

    Each neighbour votes with its cosine similarity; ``prior`` pseudo-votes are spread over
    the classes by their frequency. The graph excludes each row itself, so the estimate is
    out-of-sample.

    Examples
    --------
    >>> from curation.issues.knn import knn_graph
    >>> X = np.eye(2, dtype=np.float32)[[0, 0, 0, 0, 1, 1, 1]]
    >>> knn_probs(knn_graph(X, k=3), np.array([0, 0, 0, 1, 1, 1, 1]), 2).argmax(1).tolist()
    [0, 0, 0, 0, 1, 1, 1]
    """
    n, k = knn.shape[0], knn.nnz // knn.shape[0]
    return neighbour_probs(knn.indices.reshape(n, k), knn.data.reshape(n, k), labels, n_classes, prior)


def neighbour_probs(
    nbr: np.ndarray, dist: np.ndarray, labels: np.ndarray, n_classes: int, prior: float = 1.0
) -> np.ndarray:
    """:func:`knn_probs` for some rows: their neighbours ``nbr`` (rows of ``labels``, every
    row's code) at cosine distances ``dist``, both ``(rows, k)``.

    Examples
    --------
    >>> neighbour_probs(np.array([[1, 2]]), np.array([[0.0, 0.5]]), np.array([0, 1, 1]), 2, prior=0).tolist()
    [[0.0, 1.0]]
    """
    n, k = nbr.shape
    sim = np.clip(1.0 - dist, 0.0, None)
    nbr_labels = labels[nbr]
    known = nbr_labels >= 0
    votes = np.zeros((n, n_classes), dtype=np.float64)
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    np.add.at(votes, (rows[known], nbr_labels[known]), sim[known])
    lab = labels[labels >= 0]
    freq = np.bincount(lab, minlength=n_classes) / max(len(lab), 1)
    votes += prior * freq
    return votes / votes.sum(axis=1, keepdims=True)


@dataclass
class ViewFit:
    """What a model view fitted, for the next round to start from (:func:`model_evidence`).

    Attributes
    ----------
    model : str
        The model (``auto`` resolved).
    folds : numpy.ndarray
        Each row's cross-validation fold, ``-1`` for an unlabeled row.
    models : list of FittedModel
        Each fold's model.
    pool_model : FittedModel, optional
        The model on every labeled row (which gave the unlabeled rows' probabilities).
    draws : numpy.ndarray, optional
        Each row's draw for the folds' training samples (``nan`` for an unlabeled row).
    """

    model: str
    folds: np.ndarray
    models: list[FittedModel]
    pool_model: FittedModel | None = None
    draws: np.ndarray | None = None


def model_evidence(
    view: str,
    X: Any,
    labels: np.ndarray,
    n_classes: int,
    model: str,
    folds: int,
    seed: int,
    start: ViewFit | None = None,
) -> tuple[Evidence, ViewFit]:
    """Cross-validated probabilities of ``model`` (or the one ``"auto"`` picks) on ``X``.

    Labeled rows get out-of-sample probabilities; unlabeled rows (label ``-1``) get the
    prediction of a model fitted on every labeled row. ``start`` (aligned to these rows:
    fold ``-1`` for a row it did not see) keeps its model and folds and starts each fit from
    its solution (:func:`~curation.steps.model.cross_fit`).
    """
    t = time.perf_counter()
    lab = np.flatnonzero(labels >= 0)
    y = labels[lab]
    pool = np.flatnonzero(labels < 0)
    X_lab = X[lab] if len(pool) else X  # no copy when every row is labeled
    if start is not None:
        model = start.model
    elif model == "auto":
        model, _ = choose_model(X_lab, y, n_classes, seed=seed)
    begin = None
    if start is not None:
        begin = CrossFit(start.folds[lab], start.models, None if start.draws is None else start.draws[lab])
    probs = np.zeros((len(labels), n_classes), dtype=np.float64)
    probs[lab], fit = cross_fit(X_lab, y, n_classes, folds, seed, model, start=begin)
    pool_model = None
    if len(pool):
        drawn = fit.draws if fit.draws is not None else np.zeros(len(y))
        train = training_rows(np.zeros(len(y), np.int64), drawn, -1)  # every labeled row, at most 200,000
        pool_model = fit_model(
            X_lab[train], y[train], n_classes, seed, model, start=start.pool_model if start else None
        )
        probs[pool] = pool_model.predict_proba(X[pool])
    acc = float((probs[lab].argmax(1) == y).mean())
    fold, draws = np.full(len(labels), -1, dtype=np.int64), np.full(len(labels), np.nan)
    fold[lab] = fit.folds
    draws[lab] = fit.draws
    ev = Evidence(f"{view}/{model}", probs, acc, seconds=time.perf_counter() - t)
    return ev, ViewFit(model, fold, fit.models, pool_model, draws)


def graph_evidence(knn: csr_matrix, labels: np.ndarray, n_classes: int) -> Evidence:
    """:func:`knn_probs` as evidence, with its accuracy on the labeled rows."""
    t = time.perf_counter()
    probs = knn_probs(knn, labels, n_classes)
    lab = labels >= 0
    acc = float((probs[lab].argmax(1) == labels[lab]).mean())
    return Evidence("embedding/knn", probs, acc, seconds=time.perf_counter() - t, leads=False)


def combine(
    members: list[Evidence], labels: np.ndarray, max_rows: int = 50_000, seed: int = 0, tol: float = 0.2
) -> np.ndarray:
    """Choose and weight the members by held-out log-loss; return their product of experts.

    The combined probability is ``p(k) ∝ Π_m p_m(k) ** w_m``, ``w_m >= 0`` fitted to
    minimise the log-loss on the given labels (at most ``max_rows`` labeled rows). A weight
    is both a member's say and its temperature. Which members take part is decided on held-out
    rows: the weights are fitted on one half of the labeled rows and scored on the other (both
    ways). The member with the best held-out log-loss alone comes first (among those that
    may lead, :attr:`Evidence.leads`); another joins only if
    it lowers the held-out log-loss by more than ``tol`` (relative), so a view that does not
    help the held-out fold gets weight 0 and the ensemble cannot lose to its best member by
    this measure. Each member's ``log_loss`` is its own held-out log-loss.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> right = rng.random((200, 1)) < 0.8  # a view right on 80% of the rows, and pure noise
    >>> good = Evidence("a", np.where(right, np.eye(2)[y], np.eye(2)[1 - y]) * 0.6 + 0.2, 0.8)
    >>> noise = Evidence("b", rng.dirichlet([1, 1], 200), 0.5)
    >>> p = combine([good, noise], y)
    >>> good.weight > 0, noise.weight, bool((p.argmax(1) == good.pred_probs.argmax(1)).all())
    (True, 0.0, True)
    """
    lab, rng = evidence_rows(labels, max_rows, seed)
    logs = np.stack([np.log(np.clip(m.pred_probs[lab], 1e-6, None)) for m in members])
    weights, alone = weigh(logs, labels[lab], [m.leads for m in members], rng, tol)
    for i, m in enumerate(members):
        m.weight, m.log_loss = float(max(weights[i], 0.0)), alone[i]
    log.info("evidence weights: %s", {m.name: round(m.weight, 3) for m in members})
    chosen = np.flatnonzero(weights >= 0)
    return pool([members[i].pred_probs for i in chosen], weights[chosen])


def evidence_rows(
    labels: np.ndarray, max_rows: int = 50_000, seed: int = 0
) -> tuple[np.ndarray, np.random.Generator]:
    """The labeled rows :func:`combine` fits the weights on (at most ``max_rows``, seeded),
    and the generator that then splits them in halves."""
    lab = np.flatnonzero(labels >= 0)
    rng = np.random.default_rng(seed)
    if len(lab) > max_rows:
        lab = np.sort(rng.choice(lab, size=max_rows, replace=False))
    return lab, rng


def weigh(
    logs: np.ndarray, y: np.ndarray, leads: list[bool], rng: np.random.Generator, tol: float = 0.2
) -> tuple[np.ndarray, list[float]]:
    """:func:`combine`'s choice: each member's weight (``-1``: left out) and held-out log-loss
    alone, from the members' log-probabilities ``logs`` (members, rows, classes) on rows of
    labels ``y``."""
    half = rng.permutation(len(y)) < len(y) // 2

    def heldout(chosen: list[int]) -> float:
        parts = ((half, ~half), (~half, half))
        return float(
            np.mean([_loss(_fit(logs[chosen][:, a], y[a]), logs[chosen][:, b], y[b])[0] for a, b in parts])
        )

    alone = [heldout([i]) for i in range(len(logs))]
    leaders = [i for i in range(len(logs)) if leads[i]] or list(range(len(logs)))
    first = min(leaders, key=alone.__getitem__)
    chosen, best = [first], alone[first]
    while len(chosen) < len(logs):
        trials = {i: heldout([*chosen, i]) for i in range(len(logs)) if i not in chosen}
        i = min(trials, key=trials.__getitem__)
        if trials[i] > best * (1.0 - tol):
            break
        chosen, best = [*chosen, i], trials[i]
    weights = np.full(len(logs), -1.0)
    weights[chosen] = _fit(logs[chosen], y)
    return weights, alone


def _loss(w: np.ndarray, logs: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Log-loss of ``Π_m p_m ** w_m`` on labels ``y`` and its gradient in ``w``."""
    rows = np.arange(len(y))
    z = np.einsum("m,mnk->nk", w, logs)
    z -= z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    p = np.exp(z - lse[:, None])
    grad = -(logs[:, rows, y] - np.einsum("nk,mnk->mn", p, logs)).mean(axis=1)
    return float(-(z[rows, y] - lse).mean()), grad


def _fit(logs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The weights ``w >= 0`` of least log-loss (:func:`_loss`, convex in ``w``)."""
    m = logs.shape[0]
    res = minimize(_loss, np.ones(m), args=(logs, y), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * m)
    return np.asarray(res.x)


def pool(probs: list[np.ndarray], weights: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """``p(k) ∝ Π_m probs[m](k) ** weights[m]``, row by row in chunks (memory stays flat)."""
    n = probs[0].shape[0]
    out = np.empty_like(probs[0], dtype=np.float64)
    for i in range(0, n, chunk):
        z = sum(w * np.log(np.clip(p[i : i + chunk], 1e-6, None)) for p, w in zip(probs, weights))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out[i : i + chunk] = e / e.sum(axis=1, keepdims=True)
    return out
