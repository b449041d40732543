"""The detector contract: one suite, every registered detector.

On a small dataset with planted label errors, an outlier, a duplicate, a rare class, a
cluster with mixed-up labels, and rows in the order of their classes (not IID),
every detector returns the fixed columns (``ISSUE_COLUMNS``, then the detector columns it
declares in ``Detector.columns``), ids from its input only, finite
scores in [0, 1] worst first with ranks 1..n, its own ``issue`` name, and the same table twice
under a seed; one that needs the kNN graph says so when it is missing.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from curation.errors import CurationError
from curation.issues.base import DETECTORS, ISSUE_COLUMNS, IssueInputs
from curation.issues.knn import knn_graph
from curation.steps.model import cross_val_probs

#: Every registered detector runs this suite (tests/contracts/test_meta.py checks it).
DETECTORS_TESTED = [
    "class_imbalance",
    "data_valuation",
    "exact_duplicate",
    "label",
    "near_duplicate",
    "non_iid",
    "outlier",
    "underperforming_group",
]


def inputs(seed: int = 0, with_knn: bool = True) -> IssueInputs:
    """120 rows in 4 blobs (one of them rare), in label order, 6 labels moved, a duplicate, an
    outlier, 10 unlabeled, and a tight group of 12 rows whose labels are a mix of three."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16))
    sizes = [40, 40, 38, 2]
    y = np.repeat(np.arange(4), sizes)
    X = centres[y] + 0.3 * rng.normal(size=(len(y), 16))
    X[5] = X[4]  # a near-duplicate pair
    X[-1] = 10 * rng.normal(size=16)  # an outlier
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    given = y.copy()
    moved = rng.choice(len(y) - 20, 6, replace=False)
    given[moved] = (given[moved] + 1) % 3
    group = np.arange(80, 92)  # an underperforming group: its own place, labels a, b, c in turn
    X[group] = rng.normal(size=16) + 0.1 * rng.normal(size=(len(group), 16))
    X[group] /= np.linalg.norm(X[group], axis=1, keepdims=True)
    given[group] = group % 3
    given[100:110] = -1  # the pool: unlabeled
    lab = given >= 0
    probs = np.zeros((len(y), 4))
    probs[lab] = cross_val_probs(X[lab], given[lab], 4, 3, seed, "logreg")
    probs[~lab] = 0.25
    knn = knn_graph(X, 5) if with_knn else None
    ids = np.array([f"r{i}" for i in range(len(y))], dtype=object)
    return IssueInputs(ids, given, ["a", "b", "c", "d"], X, probs, knn)


@pytest.fixture(params=DETECTORS_TESTED)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_fixed_shape_ids_from_the_input_finite_scores_worst_first(name: str) -> None:
    data = inputs()
    detector = DETECTORS.create(name)
    table = detector.find(data)
    assert table.schema == pl.Schema({**ISSUE_COLUMNS, **detector.columns})
    assert set(table["id"]) <= set(data.ids.tolist())
    assert (table["issue"] == name).all()
    scores = table["score"].to_numpy()
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert (np.diff(scores) <= 1e-12).all()
    assert table["rank"].to_list() == list(range(1, len(table) + 1))


def test_something_is_found_on_planted_issues(name: str) -> None:
    assert len(DETECTORS.create(name).find(inputs())) > 0


def test_deterministic_under_a_seed(name: str) -> None:
    a = DETECTORS.create(name).find(inputs(seed=3))
    b = DETECTORS.create(name).find(inputs(seed=3))
    assert a.equals(b)


def test_unlabeled_rows_are_never_label_errors(name: str) -> None:
    data = inputs()
    table = DETECTORS.create(name).find(data)
    pool = set(data.ids[data.labels < 0].tolist())
    if name in ("label", "class_imbalance"):
        assert not (set(table["id"]) & pool)


def test_a_needed_graph_that_is_missing_is_a_clear_error(name: str) -> None:
    detector = DETECTORS.create(name)
    if "knn" not in detector.needs:
        assert len(detector.find(inputs(with_knn=False))) >= 0  # runs without the graph
        return
    with pytest.raises(CurationError, match="kNN graph"):
        detector.find(inputs(with_knn=False))
