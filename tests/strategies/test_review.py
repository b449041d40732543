"""Relabel or label new: the ``review`` setting (decision, fixed, none) on synthetic pools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from curation.errors import ConfigError
from curation.load import load_loop
from curation.orchestration.simulate import simulate
from curation.strategies.base import STRATEGIES, Pool, activelab_scores, label_correct
from tests.support.pools import blobs, make_pool


def with_suspects(pool: Pool, n: int, quality: float) -> Pool:
    """``pool`` with ``n`` suspects of label quality ``quality`` among ``n`` labeled rows or more."""
    pool.suspects = np.array([f"lab-{i}" for i in range(n)])
    pool.suspect_scores = np.full(n, quality)
    return pool


def test_decision_reviews_when_many_labels_are_wrong() -> None:
    pool = with_suspects(make_pool(n_labeled=10), 8, 1e-4)  # 8 of 10 labels flagged, surely wrong
    sel = STRATEGIES.create("margin", {"review": "decision"}).select(pool, 20)
    assert sel["kind"].to_list() == ["review"] * 8 + ["label"] * 12
    assert "expected gain 2.00 labels, above the best new row left out" in sel["reason"][0]


def test_decision_labels_new_rows_when_no_label_is_wrong() -> None:
    decide = STRATEGIES.create("margin", {"review": "decision"})
    none_flagged = decide.select(make_pool(n_labeled=100), 20)
    assert (none_flagged["kind"] == "label").all() and len(none_flagged) == 20
    right = decide.select(with_suspects(make_pool(n_labeled=100), 3, 0.9), 20)  # flagged, yet likely right
    assert (right["kind"] == "label").all()
    assert right["id"].to_list() == none_flagged["id"].to_list()


def test_decision_spends_more_on_reviews_as_labels_get_worse() -> None:
    decide = STRATEGIES.create("margin", {"review": "decision"})
    pool = make_pool(n_labeled=100)  # 20 of 100 flagged: a prior error rate of 0.2
    counts = [
        (decide.select(with_suspects(pool, 20, q), 20)["kind"] == "review").sum()
        for q in (0.9, 0.3, 0.05, 1e-4)
    ]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 20


def test_decision_reviews_less_once_reviews_find_the_flags_mostly_right() -> None:
    """Past verdicts set the flags' precision: 1 of 20 reviews changed a label, so the
    flagged share (0.4) overstates the error rate twentyfold and fewer suspects are worth a
    review; reviews that all changed the label keep the flagged share."""
    decide = STRATEGIES.create("margin", {"review": "decision"})

    def reviews(verdicts: tuple[int, int]) -> int:
        pool = with_suspects(make_pool(n_labeled=100), 40, 0.02)
        pool.verdicts = verdicts
        return int((decide.select(pool, 30)["kind"] == "review").sum())

    untested, all_wrong, mostly_right = reviews((0, 0)), reviews((20, 20)), reviews((20, 1))
    assert untested == all_wrong > mostly_right, (untested, all_wrong, mostly_right)


def test_decision_without_a_model_labels_new_rows() -> None:
    pool = with_suspects(make_pool(cold=True), 5, 1e-4)
    assert (STRATEGIES.create("random", {"review": "decision"}).select(pool, 10)["kind"] == "label").all()


def test_fixed_share_keeps_todays_behaviour() -> None:
    pool = with_suspects(make_pool(), 5, 0.01)
    today = STRATEGIES.create("hybrid", {"shortlist": 3, "review_share": 0.2}).select(pool, 10)
    fixed = STRATEGIES.create("hybrid", {"shortlist": 3, "review_share": 0.2, "review": "fixed"}).select(
        pool, 10
    )
    assert fixed.equals(today)
    assert today["kind"].to_list() == ["review"] * 2 + ["label"] * 8
    off = STRATEGIES.create("hybrid", {"shortlist": 3, "review": "none"}).select(pool, 10)
    assert (off["kind"] == "label").all() and off.equals(
        STRATEGIES.create("hybrid", {"shortlist": 3}).select(pool, 10)
    )


def test_activelab_scores_are_cleanlabs_for_one_annotator() -> None:
    from cleanlab.multiannotator import get_active_learning_scores

    rng = np.random.default_rng(0)
    p_lab, p_new = rng.dirichlet(np.ones(5), 30), rng.dirichlet(np.ones(5), 20)
    given = rng.integers(0, 5, 30)
    given[:5] = np.arange(5)  # every class annotated at least once
    ours = activelab_scores(p_lab[np.arange(30), given], p_new, 5)
    theirs = get_active_learning_scores(given[:, None].astype(float), p_lab, p_new)
    np.testing.assert_allclose(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1])


def test_label_correct_follows_the_noise_rate() -> None:
    q = np.array([0.001, 0.01, 0.1])
    assert (label_correct(q, 0.0, 10) == 1.0).all()
    assert (np.diff(label_correct(q, 0.3, 10)) > 0).all()
    assert (label_correct(q, 0.3, 10) < label_correct(q, 0.1, 10)).all()


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"review": "sometimes"}, "strategy.review", "valid choices: decision, fixed, none"),
        ({"review": "decision", "review_share": 0.1}, "strategy.review_share", "only with `review: fixed`"),
    ],
)
def test_bad_review_config_names_the_field(params: dict, field: str, text: str) -> None:
    strategy = STRATEGIES.get("margin")(**params)  # from Python: checked when it selects
    with pytest.raises(ConfigError, match=text) as e:
        strategy.select(make_pool(), 5)
    assert e.value.field == field


def test_bad_review_in_a_loop_file_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "loops").mkdir()
    (tmp_path / "data.parquet").write_bytes(b"")
    (tmp_path / "schema.yaml").write_text("columns: {}\n")
    (tmp_path / "files.yaml").write_text("name: files\n")
    loop = {"name": "x", "dataset": "data.parquet", "schema": "schema.yaml", "connector": "files.yaml"}
    loop["strategy"] = {"name": "hybrid", "review": "sometimes"}
    (tmp_path / "loops" / "x.yaml").write_text(yaml.safe_dump(loop))
    with pytest.raises(ConfigError, match=r"strategy\.review") as e:
        load_loop(tmp_path / "loops" / "x.yaml")
    assert "'decision'" in str(e.value) and "x.yaml" in str(e.value)
    assert e.value.exit_code == 2  # the CLI prints it as one line and exits 2 (tests/test_cli.py)


def test_simulated_reviews_set_planted_errors_right() -> None:
    X, y = blobs(60, 4, seed=1)
    noisy = y.copy()
    noisy[::4] = (y[::4] + 1) % 4  # a quarter of the first answers are wrong
    X_test, y_test = blobs(20, 4, seed=1)
    fixed: list[int] = []

    def review(pos: np.ndarray) -> np.ndarray:
        fixed.extend(pos[noisy[pos] != y[pos]].tolist())
        return y[pos]

    curves = {
        mode: simulate(
            X,
            y,
            X_test,
            y_test,
            STRATEGIES.create("random", {"review": mode}),
            rounds=5,
            budget=30,
            seeds=[0],
            n_classes=4,
            model="logreg",
            answer=review,
            first=lambda pos: noisy[pos],
        )
        for mode in ("none", "decision")
    }
    assert curves["none"].reviews == [[0] * 5]
    n_reviews = curves["decision"].reviews[0]
    assert n_reviews[0] == 0 and sum(n_reviews) >= 5  # none at cold start, then some every round
    assert len(fixed) == sum(n_reviews)  # every review found a planted error
    assert curves["decision"].labels == curves["none"].labels == [30, 60, 90, 120, 150]
