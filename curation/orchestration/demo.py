"""The demo: a real corpus that ships with every Python install, with planted label errors.

The corpus is the docstrings of the standard library (read with ``ast``, nothing is
imported), labeled by their top-level module. Broken rows are kept on purpose: empty
docstrings and exact duplicates with conflicting labels.
"""

from __future__ import annotations

import ast
import json
import shutil
import sysconfig
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.errors import ConfigError

SKIP = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "distutils",
    "pydoc_data",
    "site-packages",
    "__pycache__",
    "encodings",
    "__phello__",
    "config-3",
}
MARKER = ".curation-demo"


def _docstrings(path: Path) -> tuple[list[str], int]:
    """Docstrings of a module, its classes and functions; and how many defs had none."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return [], 0
    docs, empty = [], 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d and d.strip():
                docs.append(d.strip()[:1000])
            elif not isinstance(node, ast.Module) and not node.name.startswith("_"):
                empty += 1
    return docs, empty


def stdlib_docstrings() -> dict[str, list[str]]:
    """Docstrings of the standard library by top-level module, plus empty ones counted as ``""``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    by_module: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        top = parts[0][:-3] if len(parts) == 1 else parts[0]
        if any(p in SKIP or p.startswith("test") for p in parts[:-1]) or top in SKIP:
            continue
        docs, empty = _docstrings(path)
        by_module[top].extend(docs)
        by_module[top].extend([""] * empty)
    return by_module


def build_corpus(
    n_classes: int = 12, per_class: int = 300, empty_per_class: int = 3, conflicting: int = 12, seed: int = 0
) -> pl.DataFrame:
    """The labeled corpus: ``id, text, label`` for the ``n_classes`` largest modules.

    Each class gets at most ``per_class`` docstrings (sampled with ``seed``) and
    ``empty_per_class`` empty ones (defs without a docstring); ``conflicting`` texts are
    repeated with another module's label (exact duplicates with conflicting labels).
    """
    rng = np.random.default_rng(seed)
    by_module = stdlib_docstrings()
    sizes = {m: sum(1 for d in docs if d) for m, docs in by_module.items()}
    chosen = sorted(sorted(sizes, key=lambda m: (-sizes[m], m))[:n_classes])
    rows: list[Any] = []
    for m in chosen:
        docs = [d for d in by_module[m] if d]
        take = rng.permutation(len(docs))[:per_class]
        rows.extend((docs[i], m) for i in sorted(take))
        rows.extend([("", m)] * min(empty_per_class, sum(1 for d in by_module[m] if not d)))
    for i in rng.choice(len(rows), size=conflicting, replace=False):
        text, label = rows[i]
        if text:
            rows.append((text, chosen[(chosen.index(label) + 1) % len(chosen)]))
    order = rng.permutation(len(rows))
    return pl.DataFrame(
        {
            "id": [f"doc-{i:05d}" for i in range(len(rows))],
            "text": [rows[i][0] for i in order],
            "label": [rows[i][1] for i in order],
        }
    )


def split(
    corpus: pl.DataFrame,
    seed: int = 0,
    test_fraction: float = 0.2,
    seed_fraction: float = 0.25,
    error_rate: float = 0.1,
) -> dict[str, pl.DataFrame]:
    """Split the corpus into a held-out test set, a labeled seed set with planted label
    errors, and an unlabeled pool whose true labels hide in ``hidden_label``.

    Broken rows (empty texts, conflicting duplicates) all go to the seed set, where
    validation must quarantine them. Returns ``corpus``, ``test`` and ``planted``.
    """
    rng = np.random.default_rng(seed)
    dup = pl.col("text").is_duplicated() | (pl.col("text") == "")
    broken, clean = corpus.filter(dup), corpus.filter(~dup)
    clean = clean.sample(fraction=1.0, shuffle=True, seed=seed)
    n_test = int(len(clean) * test_fraction)
    n_seed = int((len(clean) - n_test) * seed_fraction)
    test, seed_rows, pool = clean[:n_test], clean[n_test : n_test + n_seed], clean[n_test + n_seed :]
    classes = sorted(corpus["label"].unique().to_list())
    flip = rng.random(len(seed_rows)) < error_rate
    offsets = rng.integers(1, len(classes), size=len(seed_rows))
    noisy = [
        classes[(classes.index(lab) + o) % len(classes)] if f else lab
        for lab, f, o in zip(seed_rows["label"], flip, offsets)
    ]
    planted = seed_rows.filter(pl.Series(flip)).select("id", pl.col("label").alias("true_label"))
    seed_rows = seed_rows.with_columns(pl.Series("label", noisy), pl.col("label").alias("hidden_label"))
    broken = broken.with_columns(pl.col("label").alias("hidden_label"))
    pool = pool.with_columns(
        pl.lit(None, dtype=pl.String).alias("label"), pl.col("label").alias("hidden_label")
    )
    data = pl.concat([seed_rows, broken, pool]).sort("id")
    return {"corpus": data, "test": test, "planted": planted}


def schema_yaml(classes: list[str]) -> str:
    """The demo's contract, in Pandera's YAML format."""
    import pandera.polars as pap

    schema = pap.DataFrameSchema(
        {
            "id": pap.Column(str, unique=True),
            "text": pap.Column(str, pap.Check.str_length(min_value=1)),
            "label": pap.Column(str, pap.Check.isin(classes), nullable=True),
            "hidden_label": pap.Column(str, nullable=True),
        },
        name="demo",
    )
    return str(schema.to_yaml())


LOOP_YAML = """\
# The demo loop: 200 tasks a round for the oracle (a tenth of them reviews of suspected
# label errors), versioned with DVC.
name: demo
dataset: data/corpus.parquet
schema: schemas/demo.yaml
eval_dataset: data/test.parquet
budget: 200
strategy: {name: STRATEGY, review_share: 0.1}
issues:
  detectors: [{name: label}]
  folds: 5
embed:
  max_seq_length: 128
connector: connectors/oracle.yaml
version: {name: dvc}
"""

ORACLE_YAML = """\
# Answers tasks from the hidden true label of the demo corpus.
name: oracle
label_column: hidden_label
"""


def prepare(out: Path, seed: int = 0) -> Path:
    """Lay out the demo project in ``out``; return the loop file."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ConfigError(
                f"{out} exists and is not a curation demo folder; pick another --out", field="--out"
            )
        shutil.rmtree(out)
    parts = split(build_corpus(seed=seed), seed=seed)
    for sub in ("data", "schemas", "loops", "connectors", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `curation demo`\n", encoding="utf-8")
    parts["corpus"].write_parquet(out / "data" / "corpus.parquet")
    parts["test"].write_parquet(out / "data" / "test.parquet")
    parts["planted"].write_parquet(out / "truth" / "planted_errors.parquet")
    classes = sorted(parts["test"]["label"].unique().to_list())
    (out / "schemas" / "demo.yaml").write_text(schema_yaml(classes), encoding="utf-8")
    from curation.config import LoopConfig

    default = LoopConfig.model_fields["strategy"].get_default(call_default_factory=True).name
    (out / "loops" / "demo.yaml").write_text(LOOP_YAML.replace("STRATEGY", default), encoding="utf-8")
    (out / "connectors" / "oracle.yaml").write_text(ORACLE_YAML, encoding="utf-8")
    return out / "loops" / "demo.yaml"


def issue_quality(issues: pl.DataFrame, planted: pl.DataFrame, labeled: pl.DataFrame) -> dict[str, Any]:
    """Precision and recall of the flagged label issues against the planted errors still
    present in ``labeled`` (the valid labeled rows, ``id`` and ``label``, at the round's start)."""
    flagged = set(issues.filter(pl.col("issue") == "label")["id"].to_list())
    wrong = labeled.join(planted, on="id", how="inner").filter(pl.col("label") != pl.col("true_label"))
    truth = set(wrong["id"].to_list())
    hits = len(flagged & truth)
    return {
        "label_issues": len(flagged),
        "planted_errors": len(truth),
        "found": hits,
        "precision": hits / len(flagged) if flagged else 0.0,
        "recall": hits / len(truth) if truth else 0.0,
    }


def corrected(labels: pl.DataFrame, planted: pl.DataFrame) -> int:
    """How many planted errors reviews have set right so far."""
    fixed = labels.join(planted, on="id", how="inner").filter(pl.col("label") == pl.col("true_label"))
    return len(fixed)


def summary_row(result: Any, planted: pl.DataFrame) -> dict[str, Any]:
    """One row of the demo table from a :class:`~curation.orchestration.round.RoundResult`."""
    valid = result.tables["valid"]
    labeled = valid.filter(pl.col("label").is_not_null()).select(pl.col("id").cast(pl.String), "label")
    m = result.metrics
    return {
        "round": result.round,
        "tag": result.ref,
        "valid": m["valid"],
        "quarantined": m["quarantined"],
        **issue_quality(result.tables["issues"], planted, labeled),
        "reviewed": m["reviews"],
        "corrected": corrected(result.tables["labels"], planted),
        "selected": m["selected"],
        "labels": m["labels"],
        "accuracy": m["accuracy"],
    }


def write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    """``summary.json``: one object per round."""
    (Path(out) / "summary.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
