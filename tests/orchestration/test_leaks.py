"""Leaky splits and ``curation explain`` on one real round: 30 light edits of held-out
BANKING77 rows planted in the labeled pool (local engine, local store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curation.load import load_loop
from curation.orchestration.round import RoundResult, run_round
from tests.support.projects import make_project

ROOT = Path(__file__).resolve().parents[2]
PLANTED = 30
#: One word changed (the first of these a text has), else the text with its final
#: punctuation mark dropped or added, else a greeting in front.
SWAP = {"my": "the", "the": "my", "i": "we", "a": "the", "is": "was", "can": "could", "how": "what"}

pytestmark = pytest.mark.xdist_group("leaks")  # one round per worker, shared by the tests here


def light_edit(text: str, i: int) -> str:
    """A near-duplicate of ``text``: punctuation, one word, or a greeting (by ``i % 3``).

    >>> light_edit("How do I top up?", 0), light_edit("How do I top up?", 1)
    ('How do I top up', 'what do I top up?')
    """
    if i % 3 == 0:
        return text[:-1] if text.endswith(("?", ".", "!")) else text + "?"
    if i % 3 == 1:
        words = text.split()
        for j, w in enumerate(words):
            if w.lower() in SWAP:
                return " ".join([*words[:j], SWAP[w.lower()], *words[j + 1 :]])
        return text + " please"
    return "Hi, " + text[0].lower() + text[1:]


@pytest.fixture(scope="module")
def leaky(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[RoundResult, Path, dict[str, Any]]:
    """One round on 25 intents (1,500 pool rows, 500 labeled; 300 held-out rows), with 30 held-out
    rows planted, lightly edited and labeled, in the pool; the planted pairs."""
    tmp = tmp_path_factory.mktemp("leaks")
    loop = make_project(
        tmp,
        data_dir,
        n_classes=25,
        per_class=60,
        budget=20,
        engine="local",
        version={"name": "local"},
        embed={"max_seq_length": 64, "cache_dir": str(ROOT / ".curation" / "cache" / "embeddings")},
        model="logreg",
        issues={"views": ["knn"], "detectors": [{"name": "label"}, {"name": "near_duplicate"}]},  # fast
    )
    test = pl.read_parquet(tmp / "data" / "test.parquet").group_by("label", maintain_order=True).head(12)
    test.write_parquet(tmp / "data" / "test.parquet")
    src = test[:: len(test) // PLANTED].head(PLANTED)
    planted = pl.DataFrame(
        {
            "id": [f"leak-{i}" for i in range(PLANTED)],
            "text": [light_edit(t, i) for i, t in enumerate(src["text"])],
            "label": src["label"],
            "hidden_label": src["label"],
        }
    )
    pool = pl.read_parquet(tmp / "data" / "pool.parquet")
    pl.concat([pool, planted]).write_parquet(tmp / "data" / "pool.parquet")
    result = run_round(load_loop(loop))
    pairs = dict(zip(planted["id"], src["id"].cast(pl.String)))
    return result, loop, pairs


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "curation", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_planted_near_duplicates_of_held_out_rows_are_reported(
    leaky: tuple[RoundResult, Path, dict[str, Any]],
) -> None:
    result, loop, pairs = leaky
    leaks = result.tables["leaks"]
    found = {(e, p) for e, p in zip(leaks["eval_id"], leaks["pool_id"])}
    recall = sum((e, p) in found for p, e in pairs.items()) / len(pairs)
    assert recall >= 0.95, f"recall {recall:.2f}"
    planted = leaks.filter(pl.col("pool_id").str.starts_with("leak-"))
    assert planted["in_train"].all() and (planted["similarity"] >= 0.92).all()
    assert (planted["eval_text"] != planted["pool_text"]).all()
    m = result.metrics
    assert m["leaked_rows"] == leaks["eval_id"].n_unique() >= 0.95 * len(pairs)
    assert 0.0 < m["accuracy_without_leaks"] < m["accuracy"] <= 1.0  # the leaked rows were easy
    stored = pl.read_parquet(loop.parent.parent / "rounds" / "unit" / "round-1" / "leaks.parquet")
    assert stored.height == leaks.height
    page = (loop.parent.parent / str(result.report)).read_text()
    assert "Leaky splits" in page and "accuracy_without_leaks" in page
    print(
        f"recall {recall:.3f}, accuracy {m['accuracy']:.3f}, without leaks {m['accuracy_without_leaks']:.3f}"
    )
