"""The classifier on embeddings: out-of-sample probabilities and held-out accuracy."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)


def make_model(seed: int = 0) -> LogisticRegression:
    """The default classifier: multinomial logistic regression."""
    return LogisticRegression(max_iter=1000, C=10.0, random_state=seed)


def fit_predict_proba(X_train: np.ndarray, y_train: np.ndarray, X: np.ndarray, n_classes: int,
                      seed: int = 0) -> np.ndarray:
    """Fit on ``(X_train, y_train)`` (codes ``0..n_classes-1``); probabilities for ``X``.

    Classes absent from ``y_train`` get probability 0; with a single class present, every
    row gets probability 1 for it.
    """
    probs = np.zeros((len(X), n_classes), dtype=np.float64)
    present = np.unique(y_train)
    if len(present) == 1:
        probs[:, present[0]] = 1.0
        return probs
    model = make_model(seed).fit(X_train, y_train)
    probs[:, model.classes_] = model.predict_proba(X)
    return probs


def cross_val_probs(X: np.ndarray, y: np.ndarray, n_classes: int, folds: int = 5,
                    seed: int = 0) -> np.ndarray:
    """Out-of-sample probabilities by stratified K-fold cross-validation.

    Classes with fewer examples than ``folds`` are spread over the folds they can fill;
    ``folds`` drops to the largest class count if that is smaller (at least 2).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (20, 2)), rng.normal(4, 1, (20, 2))]
    >>> y = np.r_[np.zeros(20, int), np.ones(20, int)]
    >>> cross_val_probs(X, y, 2).shape
    (40, 2)
    """
    counts = np.bincount(y, minlength=n_classes)
    k = int(max(2, min(folds, counts.max())))
    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y)
        for train, test in splits:
            probs[test] = fit_predict_proba(X[train], y[train], X[test], n_classes, seed)
    return probs


def accuracy(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
             n_classes: int, seed: int = 0) -> float:
    """Accuracy on ``(X_test, y_test)`` of the model fitted on ``(X_train, y_train)``."""
    if len(X_train) == 0 or len(X_test) == 0:
        return float("nan")
    probs = fit_predict_proba(X_train, y_train, X_test, n_classes, seed)
    return float((probs.argmax(1) == y_test).mean())
