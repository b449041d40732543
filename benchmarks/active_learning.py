"""Active-learning strategies on BANKING77: learning curves, AULC, labels to 0.90.

Pool: ../shared/data/banking77_train.parquet (rows with a null text or label dropped);
test: banking77_test.parquet. MiniLM embeddings (``curation.steps.embed``, cached under
``.curation/``), logistic regression (``curation.steps.model``), 10 rounds of 200 labels from a
cold start, 3 seeds. Prints the accuracy per round and the AULC (mean of the per-round
accuracies) of every strategy and writes ``benchmarks/results/active_learning.json`` and
``active_learning.png``. The default strategy is the one with the best AULC among those
never below random at any round.

The model is the loop's default, ``logreg_cv`` (logistic regression whose C is chosen by
3-fold cross-validation on the labels of the round). Every strategy runs again with
``--compare-model`` (default ``logreg``, a fixed C=10) so the share of the gain that comes
from the model, not the strategy, is in the same file (key ``compare``).

Usage::

    python benchmarks/active_learning.py                # all strategies, 10 x 200, 3 seeds
    python benchmarks/active_learning.py --seeds 1 --strategies random hybrid --compare-model ''
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from curation.config import EmbedConfig
from curation.orchestration.simulate import Curve, simulate, write_curves
from curation.steps.embed import embed
from curation.steps.model import fit_predict_proba
from curation.strategies.base import STRATEGIES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
ALL = ["random", "least_confidence", "margin", "entropy", "kcenter", "typiclust", "hybrid"]


def load(name: str) -> tuple[np.ndarray, list[str]]:
    """Embeddings and labels of a BANKING77 split, broken rows dropped."""
    df = pl.read_parquet(DATA / f"{name}.parquet").drop_nulls(["text", "label"])
    df = df.filter(pl.col("text").str.strip_chars() != "")
    return embed(df["text"].to_list(), EmbedConfig(), engine="local"), df["label"].to_list()


def banking77() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The pool and the test split, their labels as codes into the sorted class names."""
    X, labels = load("banking77_train")
    X_test, test_labels = load("banking77_test")
    classes = sorted(set(labels))
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[v] for v in labels])
    return X, y, X_test, np.array([code[v] for v in test_labels]), classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", nargs="*", default=ALL)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", default="logreg_cv", help="classifier fitted after each round")
    ap.add_argument("--compare-model", default="logreg", help="run every strategy again with it ('' to skip)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)

    t0 = time.perf_counter()
    X, y, X_test, y_test, classes = banking77()
    print(
        f"pool {len(y):,} rows, test {len(y_test):,}, {len(classes)} classes "
        f"(embedded in {time.perf_counter() - t0:.0f} s)"
    )
    n_classes = len(classes)
    out = run_all(args, args.model, X, y, X_test, y_test, n_classes)
    if args.compare_model:
        out["compare"] = run_all(args, args.compare_model, X, y, X_test, y_test, n_classes)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "active_learning.json").write_text(json.dumps(out, indent=2) + "\n")


def run_all(
    args: argparse.Namespace,
    model: str,
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
) -> dict:
    """Every strategy's curve with ``model``; prints the table, returns the JSON part."""
    with threadpool_limits(1, "blas"):
        full = float((fit_predict_proba(X, y, X_test, n_classes, model=model).argmax(1) == y_test).mean())
    print(f"\nmodel {model}; on the whole pool: {full:.3f}")
    curves: dict[str, Curve] = {}
    for name in args.strategies:
        t = time.perf_counter()
        curves[name] = simulate(
            X,
            y,
            X_test,
            y_test,
            STRATEGIES.create(name),
            rounds=args.rounds,
            budget=args.budget,
            seeds=range(args.seeds),
            n_classes=n_classes,
            model=model,
        )
        cv = curves[name]
        print(
            f"{name:<17} AULC {cv.aulc:.4f}  "
            + " ".join(f"{a:.3f}" for a in cv.mean)
            + f"  to 0.90: {cv.labels_to(0.90) or '-'}  ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )

    base = curves.get("random")
    never_below = {n for n, cv in curves.items() if base is None or (cv.mean >= base.mean).all()}
    default = max(never_below, key=lambda n: curves[n].aulc)
    print(f"\n{'labels':<17}" + "".join(f"{n:>7}" for n in curves[default].labels))
    for name, cv in curves.items():
        mark = " *" if name == default else ""
        print(f"{name + mark:<17}" + "".join(f"{a:>7.3f}" for a in cv.mean) + f"   AULC {cv.aulc:.4f}")
    print(f"\ndefault: {default} (best AULC never below random); model {model}; whole pool: {full:.3f}")
    if model == args.model:
        write_curves(
            curves,
            RESULTS / "active_learning",
            title=f"BANKING77: {args.budget} labels per round, {args.seeds} seeds, {model}",
        )
    return {
        "default": default,
        "model": model,
        "whole_pool": round(full, 4),
        "strategies": {
            n: {
                "aulc": round(cv.aulc, 4),
                "curve": [round(float(a), 4) for a in cv.mean],
                "labels_to_0.90": cv.labels_to(0.90),
            }
            for n, cv in curves.items()
        },
    }


if __name__ == "__main__":
    main()
