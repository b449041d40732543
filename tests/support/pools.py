"""Small synthetic pools for strategy tests: unit-norm blobs with labeled rows and probabilities."""

from __future__ import annotations

import numpy as np

from curation.strategies.base import Pool


def unit(X: np.ndarray) -> np.ndarray:
    X = X.astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def blobs(n_per: int, centers: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated unit-norm blobs and their blob index."""
    rng = np.random.default_rng(seed)
    mu = unit(rng.normal(size=(centers, dim)))
    X = np.concatenate([mu[c] + 0.05 * rng.normal(size=(n_per, dim)) for c in range(centers)])
    return unit(X), np.repeat(np.arange(centers), n_per)


def make_pool(n: int = 120, n_labeled: int = 10, classes: int = 4, cold: bool = False, seed: int = 0) -> Pool:
    X, _blob = blobs(n // classes + n_labeled, classes, seed=seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    lab, free = order[:n_labeled], order[n_labeled : n_labeled + n]
    probs = None if cold else rng.dirichlet(np.ones(classes), len(free))
    return Pool(np.array([f"row-{i}" for i in free]), X[free], X[lab], probs, seed=seed)
