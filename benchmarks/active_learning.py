"""Active-learning strategies on BANKING77: learning curves, AULC, labels to 0.90.

Pool: ../shared/data/banking77_train.parquet (rows with a null text or label dropped);
test: banking77_test.parquet. MiniLM embeddings (``curation.embed``, cached under
``.curation/``), logistic regression (``curation.model``), 10 rounds of 200 labels from a
cold start, 3 seeds. Prints the accuracy per round and the AULC (mean of the per-round
accuracies) of every strategy and writes ``benchmarks/results/active_learning.json`` and
``active_learning.png``. The default strategy is the one with the best AULC among those
never below random at any round.

Usage::

    python benchmarks/active_learning.py                # all strategies, 10 x 200, 3 seeds
    python benchmarks/active_learning.py --seeds 1 --strategies random hybrid
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
from curation.embed import embed
from curation.model import fit_predict_proba
from curation.simulate import Curve, simulate, write_curves
from curation.strategies import STRATEGIES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
ALL = ["random", "least_confidence", "margin", "entropy", "kcenter", "typiclust", "hybrid"]


def load(name: str) -> tuple[np.ndarray, list[str]]:
    """Embeddings and labels of a BANKING77 split, broken rows dropped."""
    df = pl.read_parquet(DATA / f"{name}.parquet").drop_nulls(["text", "label"])
    df = df.filter(pl.col("text").str.strip_chars() != "")
    return embed(df["text"].to_list(), EmbedConfig(), engine="local"), df["label"].to_list()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", nargs="*", default=ALL)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)

    t0 = time.perf_counter()
    X, labels = load("banking77_train")
    X_test, test_labels = load("banking77_test")
    classes = sorted(set(labels))
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[v] for v in labels])
    y_test = np.array([code[v] for v in test_labels])
    print(f"pool {len(y):,} rows, test {len(y_test):,}, {len(classes)} classes "
          f"(embedded in {time.perf_counter() - t0:.0f} s)")
    with threadpool_limits(1, "blas"):
        full = float((fit_predict_proba(X, y, X_test, len(classes)).argmax(1) == y_test).mean())
    print(f"logistic regression on the whole pool: {full:.3f}")

    curves: dict[str, Curve] = {}
    for name in args.strategies:
        t = time.perf_counter()
        curves[name] = simulate(X, y, X_test, y_test, STRATEGIES.create(name), rounds=args.rounds,
                                budget=args.budget, seeds=range(args.seeds), n_classes=len(classes))
        cv = curves[name]
        print(f"{name:<17} AULC {cv.aulc:.4f}  " + " ".join(f"{a:.3f}" for a in cv.mean)
              + f"  to 0.90: {cv.labels_to(0.90) or '-'}  ({time.perf_counter() - t:.0f} s)", flush=True)

    base = curves.get("random")
    never_below = {n for n, cv in curves.items() if base is None or (cv.mean >= base.mean).all()}
    default = max(never_below, key=lambda n: curves[n].aulc)
    print(f"\n{'labels':<17}" + "".join(f"{n:>7}" for n in curves[default].labels))
    for name, cv in curves.items():
        mark = " *" if name == default else ""
        print(f"{name + mark:<17}" + "".join(f"{a:>7.3f}" for a in cv.mean) + f"   AULC {cv.aulc:.4f}")
    print(f"\ndefault: {default} (best AULC never below random); whole pool: {full:.3f}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"default": default, "strategies": {
        n: {"aulc": round(cv.aulc, 4), "curve": [round(float(a), 4) for a in cv.mean],
            "labels_to_0.90": cv.labels_to(0.90)} for n, cv in curves.items()}}
    (RESULTS / "active_learning.json").write_text(json.dumps(out, indent=2) + "\n")
    write_curves(curves, RESULTS / "active_learning",
                 title=f"BANKING77: {args.budget} labels per round, {args.seeds} seeds")


if __name__ == "__main__":
    main()
