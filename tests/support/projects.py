"""Small curation projects on real BANKING77 rows, made the way a user makes one (``curation init``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import yaml

from curation.support.project import init_project


def make_project(tmp: Path, data_dir: Path, n_classes: int = 5, per_class: int = 60, **loop: Any) -> Path:
    """A project whose pool is ``n_classes`` intents of BANKING77 train, 20 labeled per intent
    (the rest unlabeled, their truth in ``hidden_label`` for the oracle), one broken row, and
    the same intents of the test split as the held-out set; returns its ``loops/unit.yaml``.

    ``loop`` overrides fields of the loop file (``connector``, ``version``, ``engine``...).
    """
    df = pl.read_parquet(data_dir / "banking77_train.parquet").drop_nulls()
    keep = sorted(df["label"].unique().to_list())[:n_classes]
    df = pl.concat([df.filter(pl.col("label") == k).head(per_class) for k in keep])
    df = df.with_columns(pl.col("id").cast(pl.String), pl.col("label").alias("hidden_label"))
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()).over("label") < 20).then(pl.col("label")).alias("label")
    )
    bad = pl.DataFrame({"id": ["bad-1"], "text": [""], "label": [keep[0]], "hidden_label": [keep[0]]})
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    pl.concat([df, bad]).write_parquet(tmp / "data" / "pool.parquet")
    test = pl.read_parquet(data_dir / "banking77_test.parquet").filter(pl.col("label").is_in(keep))
    test.with_columns(pl.col("id").cast(pl.String)).write_parquet(tmp / "data" / "test.parquet")
    init_project(tmp)
    doc = yaml.safe_load((tmp / "loops" / "example.yaml").read_text())
    doc.update(
        name="unit",
        dataset="data/pool.parquet",
        eval_dataset="data/test.parquet",
        budget=25,
        connector="connectors/oracle.yaml",
        embed={"max_seq_length": 64},
    )
    doc.update(loop)
    (tmp / "loops" / "unit.yaml").write_text(yaml.safe_dump(doc))
    return tmp / "loops" / "unit.yaml"


#: One word changed (the first of these a text has), else the text with its final
#: punctuation mark dropped or added, else a greeting in front.
SWAP = {"my": "the", "the": "my", "i": "we", "a": "the", "is": "was", "can": "could", "how": "what"}


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
