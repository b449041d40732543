"""Drift tests on small synthetic samples: quiet on one distribution, loud on a clear shift."""

from __future__ import annotations

import numpy as np
import pytest

from curation.errors import ConfigError, DataError
from curation.steps.drift import (
    DEFAULT_EMBEDDING_TEST,
    EMBEDDING_TESTS,
    classifier_drift,
    embedding_test,
    knn_drift,
    mmd_drift,
    oov_shares,
    script,
    text_drift,
)


def vectors(seed: int, n: int = 300, dim: int = 16) -> np.ndarray:
    """Unit-norm vectors, as the embed step returns them."""
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(seed: int, share: float) -> np.ndarray:
    """``share`` of the rows from a cluster the first sample does not have."""
    x = vectors(seed)
    k = int(share * len(x))
    x[:k] = vectors(seed + 100, k) * 0.3 + np.eye(16, dtype=np.float32)[0]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("method", sorted(EMBEDDING_TESTS))
def test_embedding_tests_are_quiet_on_one_distribution_and_see_a_new_cluster(method: str) -> None:
    same = [embedding_test(method, vectors(0), vectors(s)) for s in (1, 2, 3)]
    assert not any(t.drift for t in same), same
    assert all(t.name == "embedding" and 0 < t.p_value <= 1 for t in same)
    shifted = embedding_test(method, vectors(0), planted(1, 0.3))
    assert shifted.drift and shifted.p_value < 0.01, shifted


def test_classifier_auc_is_near_half_without_shift_and_high_with_one() -> None:
    quiet = classifier_drift(vectors(0), vectors(1), permutations=50)
    assert abs(quiet.statistic - 0.5) < 0.06 and quiet.statistic == quiet.distance
    loud = classifier_drift(vectors(0), planted(1, 0.3), permutations=50)
    assert loud.statistic > 0.6 and loud.p_value == pytest.approx(1 / 51)
    assert loud.min_distance == 0.55 and "domain classifier" in loud.test


def test_mmd_is_unbiased_and_its_p_value_a_permutation_share() -> None:
    quiet = mmd_drift(vectors(0), vectors(1), permutations=99)
    assert abs(quiet.statistic) < 0.01 and quiet.p_value >= 0.05
    assert (quiet.p_value * 100) == pytest.approx(round(quiet.p_value * 100))
    assert mmd_drift(vectors(0), vectors(1) + 0.2, permutations=199).drift  # p = 1/200


def test_knn_pockets_find_a_small_new_group_that_mmd_averages_away() -> None:
    """3% of the rows from 4 tight groups the earlier sample never had: MMD, a whole-sample
    statistic, cannot tell; the pocket count can, and says how many rows are in pockets."""
    before, after = vectors(0, 2000), vectors(50, 2000)
    centres = vectors(99, 4)
    new = centres[np.random.default_rng(0).integers(0, 4, 60)] + 0.15 * vectors(7, 60)
    after[:60] = new / np.linalg.norm(new, axis=1, keepdims=True)
    assert not mmd_drift(before, after).drift
    found = knn_drift(before, after, permutations=199)
    assert found.drift and found.p_value == pytest.approx(1 / 200), found
    assert 55 <= found.statistic <= 66 and found.distance == pytest.approx(0.03, abs=0.005)
    quiet = knn_drift(before, vectors(50, 2000), permutations=99)
    assert not quiet.drift and quiet.statistic < 5 and "10 neighbours" in quiet.test


def test_the_default_embedding_test_is_a_known_one_and_unknown_names_list_the_known() -> None:
    assert DEFAULT_EMBEDDING_TEST in EMBEDDING_TESTS
    with pytest.raises(ConfigError, match="classifier, knn, ks, mmd"):
        embedding_test("cosine", vectors(0), vectors(1))
    with pytest.raises(DataError, match="same embedding model"):
        embedding_test("mmd", vectors(0), vectors(1, dim=8))


OLD = ["where is my card", "my card has not arrived", "how do I reset my pin", "is my top up done"]


def test_text_drift_is_quiet_on_the_same_kind_of_texts() -> None:
    rng = np.random.default_rng(0)
    a, b = (list(rng.choice(OLD, 200)) for _ in range(2))
    t = text_drift(a, b)
    assert not t.drift and t.name == "text"


@pytest.mark.parametrize(
    "new, descriptor",
    [
        ([t + " " + t + " please help me now" for t in OLD], "length"),
        (
            ["apple pay fails", "google wallet refused", "crypto wallet frozen", "apple watch pay"],
            "vocabulary",
        ),
        (["где моя карта", "карта не пришла", "сброс пин кода", "пополнение счета"], "vocabulary"),
    ],
)
def test_text_drift_names_the_descriptor_that_moved(new: list[str], descriptor: str) -> None:
    t = text_drift(OLD * 50, new * 50)
    assert t.drift and t.p_value < 0.01 and descriptor in t.test, t


def test_scripts_and_out_of_vocabulary_shares() -> None:
    assert [script(t) for t in ("card", "карта", "卡片", "بطاقة", "")] == [
        "LATIN",
        "CYRILLIC",
        "CJK",
        "ARABIC",
        "none",
    ]
    before, after = oov_shares(["my card", "my card", "my pin"], ["my pin", "new phone"])
    assert before.tolist() == [0.0, 0.0, 0.5] and after.tolist() == [0.0, 1.0]


def test_text_drift_is_quiet_on_the_same_texts_again() -> None:
    """A sweep of the same rows again: words only one text has are out of vocabulary for it
    in ``before`` (left out) but not ``after``; that fall is no drift."""
    rare = ["".join(chr(97 + (i // 26**k) % 26) for k in range(3)) for i in range(300)]
    texts = [f"where is my {w} card" for w in rare]
    assert not text_drift(texts, texts).drift
    assert not text_drift(texts, texts[:150] + texts[:150]).drift
