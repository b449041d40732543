"""The classifier on features: out-of-sample probabilities, held-out accuracy, model choice.

A model is named by a setting (``issues.model``): one of :data:`MODELS`, or ``"auto"`` to
let cross-validated accuracy on a sample of the rows choose among them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from curation.errors import ConfigError

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
}

#: The models that also learn from unlabeled rows (``fit_model(..., unlabeled=)``); without
#: them they are their supervised first step.
SEMI_SUPERVISED: frozenset[str] = frozenset({"self_train"})

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
) -> FittedModel:
    """Fit the model named ``model`` on ``(X_train, y_train)`` (codes ``0..n_classes-1``).

    A model of :data:`SEMI_SUPERVISED` also learns from the rows ``unlabeled`` (features
    like ``X_train``); the others ignore them.

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
    if model in SEMI_SUPERVISED and unlabeled is not None and _rows(unlabeled):
        X_train, y_train = _with_unlabeled(X_train, y_train, unlabeled, est.max_unlabeled, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        est.fit(X_train, y_train)
    return FittedModel(n_classes, est)


def _with_unlabeled(X: Any, y: np.ndarray, unlabeled: Any, cap: int, seed: int) -> tuple[Any, np.ndarray]:
    """``X`` and at most ``cap`` rows of ``unlabeled`` stacked, the unlabeled rows' label ``-1``.

    The sample is the one the estimator would draw itself (the same seed over the same
    count), taken before the copy so that a large pool is never stacked whole.
    """
    import scipy.sparse as sp

    if _rows(unlabeled) > cap:
        unlabeled = unlabeled[
            np.sort(np.random.default_rng(seed).choice(_rows(unlabeled), cap, replace=False))
        ]
    stacked = sp.vstack([X, unlabeled], format="csr") if sp.issparse(X) else np.concatenate([X, unlabeled])
    return stacked, np.concatenate([np.asarray(y), np.full(_rows(unlabeled), -1, dtype=np.int64)])


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
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=n_classes)
    k = int(max(2, min(folds, counts.max())))
    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        rng = np.random.default_rng(seed)
        for train, test in splits:
            if len(train) > max_train_rows:
                train = np.sort(rng.choice(train, size=max_train_rows, replace=False))
            probs[test] = fit_predict_proba(X[train], y[train], X[test], n_classes, seed, model)
    return probs


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
    rows: np.ndarray = np.arange(len(y))
    if len(y) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(y), size=max_rows, replace=False))
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
