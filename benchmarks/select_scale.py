"""Selection at scale: the default strategy (hybrid) and TypiClust on a 1M-row pool, budget 1,000.

The pool is ``--rows`` generated 384-d unit vectors around 200 centres (clustered, as sentence
embeddings are). Timed, each the median of ``--reps`` runs:

- ``hybrid_cold_s``: hybrid with no model yet (its cold start, TypiClust), nothing labeled;
- ``typiclust_s``: TypiClust with 1,000 rows already labeled (a second round);
- ``hybrid_warm_s``: hybrid with the class probabilities of a model (a softmax over the
  distances to 50 class centres), 1,000 rows labeled.

Writes ``benchmarks/results/select_scale.json`` (the figures, the load average during the run)
and prints a table. BANKING77 quality of TypiClust is in ``benchmarks/active_learning.py``.

Usage::

    python benchmarks/select_scale.py                    # 1M rows, budget 1,000, 3 runs
    python benchmarks/select_scale.py --rows 100000 --reps 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from curation.strategies.base import Pool, Strategy
from curation.strategies.hybrid import Hybrid
from curation.strategies.typiclust import TypiClust

RESULTS = Path(__file__).parent / "results"
DIM = 384


def clustered(n: int, centres: int = 200, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around ``centres`` random centres, generated in chunks."""
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((centres, DIM), dtype=np.float32)
    X = np.empty((n, DIM), np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        X[i : i + m] = C[rng.integers(0, centres, m)] + 1.5 * rng.standard_normal((m, DIM), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def model_probs(X: np.ndarray, classes: int = 50, seed: int = 1) -> np.ndarray:
    """Class probabilities of a stand-in model: a softmax over the similarity to class centres."""
    C = np.random.default_rng(seed).standard_normal((classes, DIM)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    out = np.empty((len(X), classes), np.float32)
    for i in range(0, len(X), 100_000):
        z = 20.0 * (X[i : i + 100_000] @ C.T)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        out[i : i + 100_000] = z / z.sum(axis=1, keepdims=True)
    return out


def timed(strategy: Strategy, pool: Pool, budget: int, reps: int) -> tuple[float, list[float]]:
    secs = []
    for _ in range(reps):
        t = time.perf_counter()
        picked = strategy.select(pool, budget)
        secs.append(time.perf_counter() - t)
        assert len(picked) == budget, len(picked)
    return statistics.median(secs), secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--budget", type=int, default=1_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    X = clustered(args.rows)
    ids = np.arange(args.rows).astype(str)
    labeled = X[: args.budget]
    rest = Pool(ids[args.budget :], X[args.budget :], labeled)
    warm = Pool(ids[args.budget :], X[args.budget :], labeled, model_probs(X[args.budget :]))
    cases: dict[str, tuple[Strategy, Pool]] = {
        "hybrid_cold_s": (Hybrid(), Pool(ids, X, X[:0])),
        "typiclust_s": (TypiClust(), rest),
        "hybrid_warm_s": (Hybrid(), warm),
    }
    results: dict[str, Any] = {"rows": args.rows, "budget": args.budget, "reps": args.reps}
    print(f"{args.rows:,} rows x {DIM}, budget {args.budget:,}, median of {args.reps}")
    print(f"{'case':16s} {'seconds':>8s}  runs")
    for name, (strategy, pool) in cases.items():
        median, secs = timed(strategy, pool, args.budget, args.reps)
        results[name] = round(median, 2)
        results[name.removesuffix("_s") + "_runs"] = [round(s, 2) for s in secs]
        print(f"{name:16s} {median:8.1f}  {', '.join(f'{s:.1f}' for s in secs)}")
    results["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)
    results["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"load average {results['load_avg']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "select_scale.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
