"""Active-learning strategies in three regimes: learning curves, AULC with standard errors.

Regimes, each from ../shared/data, MiniLM embeddings (``curation.steps.embed``, cached under
``.curation/``), a cold start (no labels), 5 seeds:

- ``banking77``: pool ``banking77_train.parquet`` (rows with a null text or label dropped), test
  ``banking77_test.parquet``, 77 intents, 10 rounds of 200 labels;
- ``banking77_10``: the same splits restricted to 10 intents (the first 10 in sorted order),
  10 rounds of 10 labels (one label per intent per round);
- ``20news``: ``20news_test.parquet`` split 70/30 stratified (a fixed split, seed 0) into
  pool and test, 20 newsgroups, 10 rounds of 20 labels.

Prints, per regime, the accuracy per round and the AULC (mean of the per-round accuracies) of
every strategy with its standard error over seeds, and checks the rule of issue 17: the
default's AULC is at least the best other strategy's minus 0.005, and in no round is its mean
below random's by more than one standard error (of the difference of the two means). Writes
``benchmarks/results/active_learning.json`` and ``active_learning/curves.{json,png}``
(BANKING77).

The model is the loop's default, ``logreg_knn`` (logistic regression whose C is chosen by
3-fold cross-validation on the labels of the round, its probabilities averaged with those of
each row's 10 nearest pool rows); ``--model`` names another one of
``curation.steps.model.MODELS`` (``--model logreg_cv --out active_learning_logreg_cv`` gives
the figures without the neighbours).

Usage::

    python benchmarks/active_learning.py                          # every regime and strategy
    python benchmarks/active_learning.py --regimes banking77_10 --seeds 2 --strategies random hybrid
    python benchmarks/active_learning.py --model self_train --out active_learning_self_train \
        --strategies random margin typiclust hybrid
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from curation.config import DEFAULT_ROUND_MODEL, EmbedConfig
from curation.orchestration.simulate import Curve, simulate, write_curves
from curation.steps.embed import embed
from curation.strategies.base import STRATEGIES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
ALL = ["random", "least_confidence", "margin", "entropy", "kcenter", "typiclust", "hybrid"]
DEFAULT = "hybrid"  # the loop's default strategy (curation.config)
REGIMES = {"banking77": (10, 200), "banking77_10": (10, 10), "20news": (10, 20)}  # rounds, labels a round
SLACK = 0.005  # the default's AULC may trail the best other strategy's by this much


class Regime(NamedTuple):
    """A pool and a test set: embeddings and label codes into ``classes``."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]


def load(name: str) -> tuple[np.ndarray, list[str]]:
    """Embeddings and labels of a data file, broken rows dropped."""
    df = pl.read_parquet(DATA / f"{name}.parquet").drop_nulls(["text", "label"])
    df = df.filter(pl.col("text").str.strip_chars() != "")
    return embed(df["text"].to_list(), EmbedConfig(), engine="local"), [str(v) for v in df["label"]]


def regime(name: str) -> Regime:
    """The pool and test split of regime ``name`` (see the module's docstring)."""
    if name == "20news":
        X, labels = load("20news_test")
        test = stratified_test(labels, 0.3)
        X_test, test_labels = X[test], [labels[i] for i in np.flatnonzero(test)]
        X, labels = X[~test], [labels[i] for i in np.flatnonzero(~test)]
    else:
        (X, labels), (X_test, test_labels) = load("banking77_train"), load("banking77_test")
    classes = sorted(set(labels))[:10] if name == "banking77_10" else sorted(set(labels))
    code = {c: i for i, c in enumerate(classes)}
    keep, keep_test = [v in code for v in labels], [v in code for v in test_labels]
    y = np.array([code[v] for v in labels if v in code])
    y_test = np.array([code[v] for v in test_labels if v in code])
    return Regime(X[np.array(keep)], y, X_test[np.array(keep_test)], y_test, classes)


def stratified_test(labels: list[str], share: float, seed: int = 0) -> np.ndarray:
    """A mask of ``share`` of each class's rows (a fixed random draw)."""
    rng, arr = np.random.default_rng(seed), np.array(labels)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(arr):
        rows = rng.permutation(np.flatnonzero(arr == c))
        test[rows[: round(share * len(rows))]] = True
    return test


def checks(curves: dict[str, Curve], default: str) -> dict[str, object]:
    """Issue 17's rule for ``default``: AULC within :data:`SLACK` of the best other strategy,
    and no round below random's mean by more than one standard error of the difference."""
    d = curves[default]
    others = {n: cv.aulc for n, cv in curves.items() if n != default}
    best = max(others, key=others.__getitem__) if others else default
    out: dict[str, object] = {"best_other": best, "aulc_gap": round(d.aulc - curves[best].aulc, 4)}
    out["aulc_ok"] = bool(d.aulc >= curves[best].aulc - SLACK)
    if "random" in curves:
        r = curves["random"]
        margin = d.mean - r.mean + np.sqrt(d.se**2 + r.se**2)
        out["rounds_below_random"] = [int(n) for n, m in zip(d.labels, margin) if m < 0]
        out["worst_vs_random"] = round(float((d.mean - r.mean).min()), 4)
    return out


def run_regime(name: str, args: argparse.Namespace) -> dict:
    """Every strategy's curve in regime ``name``; prints the table, returns the JSON part."""
    t0 = time.perf_counter()
    data = regime(name)
    rounds, budget = REGIMES[name]
    print(
        f"\n== {name}: pool {len(data.y):,} rows, test {len(data.y_test):,}, {len(data.classes)} classes, "
        f"{rounds} x {budget} labels, {args.seeds} seeds (loaded in {time.perf_counter() - t0:.0f} s)"
    )
    curves: dict[str, Curve] = {}
    for strategy in args.strategies:
        t = time.perf_counter()
        cv = simulate(
            data.X, data.y, data.X_test, data.y_test, STRATEGIES.create(strategy),
            rounds=rounds, budget=budget, seeds=range(args.seeds), n_classes=len(data.classes), model=args.model,
        )  # fmt: skip
        curves[strategy] = cv
        print(
            f"{strategy:<17} AULC {cv.aulc:.4f} ± {cv.aulc_se:.4f}  ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    print(f"{'labels':<17}" + "".join(f"{n:>7}" for n in curves[args.strategies[0]].labels))
    for strategy, cv in curves.items():
        mark = " *" if strategy == DEFAULT else ""
        print(f"{strategy + mark:<17}" + "".join(f"{a:>7.3f}" for a in cv.mean) + f"   AULC {cv.aulc:.4f}")
    found = checks(curves, DEFAULT) if DEFAULT in curves else {}
    print(f"default {DEFAULT}: {found}")
    if name == "banking77":
        title = f"BANKING77: {budget} labels per round, {args.seeds} seeds, {args.model}"
        write_curves(curves, RESULTS / args.out, title=title)
    return {
        "rounds": rounds,
        "budget": budget,
        "pool": len(data.y),
        "test": len(data.y_test),
        "classes": len(data.classes),
        "checks": found,
        "strategies": {
            n: {
                "aulc": round(cv.aulc, 4),
                "aulc_se": round(cv.aulc_se, 4),
                "curve": [round(float(a), 4) for a in cv.mean],
                "se": [round(float(a), 4) for a in cv.se],
                "labels_to_0.90": cv.labels_to(0.90),
            }
            for n, cv in curves.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", nargs="*", default=list(REGIMES), choices=list(REGIMES))
    ap.add_argument("--strategies", nargs="*", default=ALL)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--model", default=DEFAULT_ROUND_MODEL, help="classifier fitted after each round")
    ap.add_argument("--out", default="active_learning", help="results/OUT.json and results/OUT/curves.*")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    out = {"default": DEFAULT, "model": args.model, "seeds": args.seeds, "slack": SLACK}
    load_before = os.getloadavg()[0]
    out["regimes"] = {name: run_regime(name, args) for name in args.regimes}
    out["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)  # accuracies do not depend on it
    print(f"\nload average {out['load_avg']} on {os.cpu_count()} cores")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
