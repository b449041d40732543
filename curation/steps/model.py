"""The classifier on features: out-of-sample probabilities, held-out accuracy, model choice.

A model is named by a setting (``issues.model``): one of :data:`MODELS`, or ``"auto"`` to
let cross-validated accuracy on a sample of the rows choose among them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.errors import ConfigError
from curation.steps.semi_supervised import UNLABELED, unlabeled_sample

log = logging.getLogger(__name__)


def _logreg_cv(seed: int) -> Any:
    from curation.steps.cv_logreg import CVLogisticRegression

    return CVLogisticRegression(random_state=seed)


def _logreg(c: float) -> Callable[[int], Any]:
    def make(seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000, C=c, random_state=seed)

    return make


def _self_train(seed: int) -> Any:
    from curation.steps.self_training import SelfTraining

    return SelfTraining(random_state=seed)


def _logreg_knn(seed: int) -> Any:
    from curation.steps.smoothing import NeighbourSmoothing

    return NeighbourSmoothing(random_state=seed)


def _sgd(seed: int) -> Any:
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=30, tol=1e-4, random_state=seed)


#: The models a setting can name: ``name -> factory(seed)`` (scikit-learn is imported when a
#: model is made, so that reading a config stays fast).
MODELS: dict[str, Callable[[int], Any]] = {
    "logreg_cv": _logreg_cv,
    "logreg": _logreg(10.0),
    "logreg_c1": _logreg(1.0),
    "sgd": _sgd,
    "self_train": _self_train,
    "logreg_knn": _logreg_knn,
}

#: The models that also learn from unlabeled rows (``fit_model(..., unlabeled=)``); without
#: them they are their supervised first step.
SEMI_SUPERVISED: frozenset[str] = frozenset({"self_train", "logreg_knn"})

#: What ``"auto"`` chooses among.
AUTO_CANDIDATES: tuple[str, ...] = ("logreg", "logreg_c1")


def make_model(name: str = "logreg", seed: int = 0) -> Any:
    """A fresh, unfitted model named ``name`` (one of :data:`MODELS`)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}", field="issues.model", choices=sorted(MODELS))
    return MODELS[name](seed)


def _rows(X: Any) -> int:
    return int(X.shape[0])


class FittedModel:
    """A model fitted on label codes ``0..n_classes-1``: probabilities over every class.

    Classes absent from the training labels get probability 0; with a single class present,
    every row gets probability 1 for it (no estimator is fitted).

    Attributes
    ----------
    n_classes : int
        The number of classes the probabilities have columns for.
    estimator_ : object or None
        The fitted scikit-learn estimator (``None`` with a single class).
    """

    def __init__(self, n_classes: int, estimator: Any | None, only: int | None = None) -> None:
        self.n_classes = n_classes
        self.estimator_ = estimator
        self.only_ = only

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(rows, n_classes)`` probabilities for ``X``."""
        probs = np.zeros((_rows(X), self.n_classes), dtype=np.float64)
        if self.estimator_ is None:
            probs[:, self.only_ or 0] = 1.0
        elif _rows(X):
            probs[:, self.estimator_.classes_] = self.estimator_.predict_proba(X)
        return probs


def fit_model(
    X_train: Any,
    y_train: np.ndarray,
    n_classes: int,
    seed: int = 0,
    model: str = "logreg",
    unlabeled: Any | None = None,
    start: FittedModel | None = None,
) -> FittedModel:
    """Fit the model named ``model`` on ``(X_train, y_train)`` (codes ``0..n_classes-1``).

    A model of :data:`SEMI_SUPERVISED` also learns from the rows ``unlabeled`` (features
    like ``X_train``); the others ignore them. A logistic regression starts from ``start``'s
    solution (see :func:`warm_start`) when that was fitted on the same classes.

    Examples
    --------
    >>> X = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> m = fit_model(X, np.array([0, 0, 2, 2]), 3)
    >>> m.predict_proba(np.array([[1.05]])).argmax(1).tolist(), m.predict_proba(X).shape
    ([2], (4, 3))
    """
    from sklearn.exceptions import ConvergenceWarning

    present = np.unique(y_train)
    if len(present) == 1:
        return FittedModel(n_classes, None, int(present[0]))
    est = make_model(model, seed)
    if start is not None:
        warm_start(est, start.estimator_, present, X_train.shape[1])
    if model in SEMI_SUPERVISED and unlabeled is not None and _rows(unlabeled):
        X_train, y_train = _with_unlabeled(X_train, y_train, unlabeled, est.max_unlabeled, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        est.fit(X_train, y_train)
    return FittedModel(n_classes, est)


def warm_start(est: Any, previous: Any, classes: np.ndarray, n_features: int) -> bool:
    """Make ``est`` start its fit from ``previous``'s coefficients, where it can.

    Both must be logistic regressions (:class:`~curation.steps.cv_logreg.CVLogisticRegression`
    keeps the ``C`` it chose before) and ``previous`` fitted on ``classes`` and ``n_features``
    features; otherwise ``est`` is left as it is. A start near the solution saves most of the solver's iterations when
    the training rows changed little.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    >>> prev = LogisticRegression().fit(X, y)
    >>> est = LogisticRegression()
    >>> warm_start(est, prev, np.array([0, 1]), 1), est.warm_start, warm_start(est, prev, np.array([0, 2]), 1)
    (True, True, False)
    """
    from sklearn.linear_model import LogisticRegression

    from curation.steps.cv_logreg import CVLogisticRegression

    if isinstance(est, CVLogisticRegression) and isinstance(previous, CVLogisticRegression):
        if not _fitted_on(previous.estimator_, classes, n_features):
            return False
        est.start_ = previous
        return True
    if not (isinstance(est, LogisticRegression) and isinstance(previous, LogisticRegression)):
        return False
    if not _fitted_on(previous, classes, n_features) or previous.get_params()["C"] != est.C:
        return False
    est.set_params(warm_start=True)
    est.coef_, est.intercept_ = previous.coef_.copy(), previous.intercept_.copy()
    return True


def _fitted_on(est: Any, classes: np.ndarray, n_features: int) -> bool:
    """Whether a fitted linear model has these classes and this many features."""
    return bool(np.array_equal(est.classes_, classes) and est.coef_.shape[1] == n_features)


def _with_unlabeled(X: Any, y: np.ndarray, unlabeled: Any, cap: int, seed: int) -> tuple[Any, np.ndarray]:
    """``X`` and at most ``cap`` rows of ``unlabeled`` stacked, the unlabeled rows' label
    :data:`UNLABELED`.

    The sample is the one the estimator would draw itself (:func:`unlabeled_sample`, the same
    seed over the same count), taken before the copy so that a large pool is never stacked whole.
    """
    import scipy.sparse as sp

    if _rows(unlabeled) > cap:
        unlabeled = unlabeled[unlabeled_sample(np.arange(_rows(unlabeled)), cap, seed)]
    stacked = sp.vstack([X, unlabeled], format="csr") if sp.issparse(X) else np.concatenate([X, unlabeled])
    return stacked, np.concatenate([np.asarray(y), np.full(_rows(unlabeled), UNLABELED, dtype=np.int64)])


def unlabeled_rows(model: str, X: Any, rows: np.ndarray) -> Any | None:
    """``X[rows]`` for a model of :data:`SEMI_SUPERVISED`, ``None`` for the others (which
    ignore unlabeled rows, so they are never copied for them).

    Examples
    --------
    >>> X = np.eye(3)
    >>> unlabeled_rows("self_train", X, np.array([2])).tolist(), unlabeled_rows("logreg", X, np.array([2]))
    ([[0.0, 0.0, 1.0]], None)
    """
    return X[rows] if model in SEMI_SUPERVISED else None


def fit_predict_proba(
    X_train: Any,
    y_train: np.ndarray,
    X: Any,
    n_classes: int,
    seed: int = 0,
    model: str = "logreg",
    unlabeled: Any | None = None,
) -> np.ndarray:
    """Fit on ``(X_train, y_train)`` (codes ``0..n_classes-1``); probabilities for ``X``.

    ``X_train`` and ``X`` may be dense arrays or sparse matrices. Classes absent from
    ``y_train`` get probability 0; with a single class present, every row gets probability 1
    for it (see :func:`fit_model`, also for ``unlabeled``).
    """
    return fit_model(X_train, y_train, n_classes, seed, model, unlabeled).predict_proba(X)


#: Each fold's model is fitted on at most this many rows (a random sample of its training
#: part): past it a linear model on a few hundred features gains nothing, and time and memory
#: stay bounded on millions of rows.
MAX_TRAIN_ROWS = 200_000


@dataclass
class CrossFit:
    """What :func:`cross_fit` fitted: each row's fold and each fold's model.

    Handed to the next :func:`cross_fit` (its ``folds`` and ``draws`` re-aligned to the rows
    then, ``-1`` and ``nan`` for a row it did not see), it keeps each row in its fold and in or
    out of the training samples, and starts each fold's model from this one's solution.
    ``draws`` are each row's uniform draw: a fold's model trains on its rows of lowest draw
    when they are more than ``max_train_rows``.
    """

    folds: np.ndarray
    models: list[FittedModel]
    draws: np.ndarray | None = None


def cross_val_probs(
    X: Any,
    y: np.ndarray,
    n_classes: int,
    folds: int = 5,
    seed: int = 0,
    model: str = "logreg",
    max_train_rows: int = MAX_TRAIN_ROWS,
) -> np.ndarray:
    """Out-of-sample probabilities by stratified K-fold cross-validation.

    Classes with fewer examples than ``folds`` are spread over the folds they can fill;
    ``folds`` drops to the largest class count if that is smaller (at least 2). Every row
    gets its probabilities from a model that did not see it; each model is fitted on at
    most ``max_train_rows`` rows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (20, 2)), rng.normal(4, 1, (20, 2))]
    >>> y = np.r_[np.zeros(20, int), np.ones(20, int)]
    >>> cross_val_probs(X, y, 2).shape
    (40, 2)
    """
    return cross_fit(X, y, n_classes, folds, seed, model, max_train_rows)[0]


def cross_fit(
    X: Any,
    y: np.ndarray,
    n_classes: int,
    folds: int = 5,
    seed: int = 0,
    model: str = "logreg",
    max_train_rows: int = MAX_TRAIN_ROWS,
    start: CrossFit | None = None,
) -> tuple[np.ndarray, CrossFit]:
    """:func:`cross_val_probs`, and the folds and models, to start the next one from.

    With ``start`` (same number of folds), rows keep their folds, a new row (fold ``-1``)
    joins the fold its class has fewest rows in, and each fold's model starts from
    ``start``'s (:func:`warm_start`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (20, 2)), rng.normal(4, 1, (20, 2))]
    >>> y = np.r_[np.zeros(20, int), np.ones(20, int)]
    >>> p, fit = cross_fit(X, y, 2, folds=4)
    >>> fit.folds = np.r_[fit.folds, -1, -1]  # two more rows next time
    >>> p2, fit2 = cross_fit(np.r_[X, X[:2]], np.r_[y, 0, 0], 2, folds=4, start=fit)
    >>> bool((fit2.folds[:40] == fit.folds[:40]).all()), int((fit2.folds[40:] >= 0).sum())
    (True, 2)
    """
    fold, draws, starts = fold_plan(y, n_classes, folds, seed, start)
    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    models = []
    for j in range(len(starts)):
        train, test = training_rows(fold, draws, j, max_train_rows), np.flatnonzero(fold == j)
        fitted = fit_model(X[train], y[train], n_classes, seed, model, start=starts[j])
        probs[test] = fitted.predict_proba(X[test])
        models.append(fitted)
    return probs, CrossFit(fold, models, draws)


def fold_plan(
    y: np.ndarray, n_classes: int, folds: int = 5, seed: int = 0, start: CrossFit | None = None
) -> tuple[np.ndarray, np.ndarray, list[FittedModel | None]]:
    """:func:`cross_fit`'s plan, without the features: each row's fold, each row's draw, and
    the model each fold starts from (``None``: a cold start).

    The number of folds is ``folds``, or the largest class count if smaller (at least 2).

    Examples
    --------
    >>> fold, draws, starts = fold_plan(np.array([0, 1] * 5), 2, folds=5)
    >>> sorted(np.bincount(fold).tolist()), len(starts), draws.shape
    ([2, 2, 2, 2, 2], 5, (10,))
    """
    counts = np.bincount(y, minlength=n_classes)
    k = int(max(2, min(folds, counts.max())))
    if start is not None and len(start.models) == k and len(start.folds) == len(y):
        fold = _join_folds(start.folds, y, k, n_classes)
        starts: list[FittedModel | None] = list(start.models)
    else:
        fold, starts = _stratified_folds(y, k, seed), [None] * k
    draws = np.random.default_rng(seed).random(len(y))
    if start is not None and start.draws is not None and len(start.draws) == len(y):
        draws = np.where(np.isnan(start.draws), draws, start.draws)  # kept rows keep their draw
    return fold, draws, starts


def training_rows(
    fold: np.ndarray, draws: np.ndarray, j: int, max_train_rows: int = MAX_TRAIN_ROWS
) -> np.ndarray:
    """The rows fold ``j``'s model trains on: the others' rows, at most ``max_train_rows``
    of them (those of lowest draw; next round, nearly the same rows). ``j = -1``: every row.

    Examples
    --------
    >>> training_rows(np.array([0, 1, 1, 0]), np.array([.9, .1, .5, .2]), 0, 1).tolist()
    [1]
    """
    train = np.flatnonzero(fold != j)
    if len(train) > max_train_rows:
        train = np.sort(train[np.argpartition(draws[train], max_train_rows)[:max_train_rows]])
    return train


def choice_rows(n: int, seed: int = 0, max_rows: int = 3000) -> np.ndarray:
    """The rows :func:`choose_model` compares the candidates on: all, or a seeded sample.

    Examples
    --------
    >>> choice_rows(5).tolist(), len(choice_rows(10_000))
    ([0, 1, 2, 3, 4], 3000)
    """
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    fold = np.empty(len(y), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        for j, (_, test) in enumerate(splits):
            fold[test] = j
    return fold


def _join_folds(fold: np.ndarray, y: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """``fold`` with each new row (``-1``) put where its class has fewest rows, in turn."""
    fold = fold.copy()
    new = np.flatnonzero(fold < 0)
    if not len(new):
        return fold
    have = np.zeros((n_classes, k), dtype=np.int64)
    np.add.at(have, (y[fold >= 0], fold[fold >= 0]), 1)
    order = new[np.argsort(y[new], kind="stable")]
    cls = y[order]
    rank = np.arange(len(order)) - np.searchsorted(cls, cls, side="left")  # i-th new row of its class
    by_need = np.argsort(have, axis=1, kind="stable")  # each class's folds, fewest rows first
    fold[order] = by_need[cls, rank % k]
    return fold


def choose_model(
    X: Any,
    y: np.ndarray,
    n_classes: int,
    candidates: tuple[str, ...] = AUTO_CANDIDATES,
    folds: int = 3,
    seed: int = 0,
    max_rows: int = 3000,
) -> tuple[str, dict[str, float]]:
    """The candidate with the best cross-validated accuracy on a sample of ``max_rows`` rows.

    Returns
    -------
    tuple of (str, dict)
        The chosen name and every candidate's accuracy.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (30, 2)), rng.normal(3, 1, (30, 2))]
    >>> y = np.r_[np.zeros(30, int), np.ones(30, int)]
    >>> choose_model(X, y, 2)[0] in AUTO_CANDIDATES
    True
    """
    rows = choice_rows(len(y), seed, max_rows)
    Xs, ys = X[rows], y[rows]
    scores = {}
    for name in candidates:
        p = cross_val_probs(Xs, ys, n_classes, folds, seed, name)
        scores[name] = float((p.argmax(1) == ys).mean())
    best = max(candidates, key=lambda c: scores[c])
    log.info("model choice: %s (cross-validated accuracy %s)", best, scores)
    return best, scores


def correct(
    X_train: Any,
    y_train: np.ndarray,
    X_test: Any,
    y_test: np.ndarray,
    n_classes: int,
    seed: int = 0,
    model: str = "logreg",
    unlabeled: Any | None = None,
) -> np.ndarray:
    """Whether the model fitted on ``(X_train, y_train)`` (and ``unlabeled``, see
    :func:`fit_model`) predicts each row of ``X_test`` right (all ``False`` without training
    rows).

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.1]])
    >>> correct(X[:2], np.array([0, 1]), X[2:], np.array([0, 0]), 2).tolist()
    [True, False]
    """
    if _rows(X_test) == 0:
        return np.zeros(0, dtype=bool)
    if _rows(X_train) == 0:
        return np.zeros(_rows(X_test), dtype=bool)
    probs = fit_predict_proba(X_train, y_train, X_test, n_classes, seed, model, unlabeled)
    return np.asarray(probs.argmax(1) == y_test)


def accuracy(
    X_train: Any,
    y_train: np.ndarray,
    X_test: Any,
    y_test: np.ndarray,
    n_classes: int,
    seed: int = 0,
    model: str = "logreg",
    unlabeled: Any | None = None,
) -> float:
    """Accuracy on ``(X_test, y_test)`` of the model fitted on ``(X_train, y_train)`` (and
    ``unlabeled``, see :func:`fit_model`)."""
    if _rows(X_train) == 0 or _rows(X_test) == 0:
        return float("nan")
    return float(correct(X_train, y_train, X_test, y_test, n_classes, seed, model, unlabeled).mean())
