"""Relabel or label new? Reviews of suspected label errors against new labels, on BANKING77.

Pool: ../shared/data/banking77_train.parquet (rows with a null text or label dropped) with
planted label noise: a share of the rows (10%, 20%) has its label moved to another class at
random (a different draw per seed). The first annotation of a row answers that noisy label;
a review answers the true label (as the oracle does). Test: banking77_test.parquet. MiniLM
embeddings (cached under ``.curation/``), ``curation.orchestration.simulate`` (suspects from
cleanlab's label-issue detector on 3-fold out-of-sample probabilities), 10 rounds of 200
annotations from a cold start, each review and each new label costing one annotation.

Compared, with the same base strategy (``--strategy``, default ``margin``) and the same noise:

- ``none``: every annotation goes to a new row;
- ``fixed``: 10% of each round's budget reviews the worst suspects (``review: fixed``);
- ``decision``: each suspect and each row of the batch gets its ActiveLab score, the budget
  goes to the lowest (``review: decision``).

Prints the accuracy after each round (mean over seeds) and the AULC (mean of the per-round
accuracies), and writes ``benchmarks/results/review.json``.

Usage::

    python benchmarks/review.py                    # noise 0.1 and 0.2, 3 seeds, margin
    python benchmarks/review.py --seeds 1 --noise 0.2 --strategy hybrid
    python benchmarks/review.py --methods decision --out /tmp/decision.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from active_learning import RESULTS, regime

from curation.orchestration.simulate import Curve, simulate
from curation.strategies.base import STRATEGIES

METHODS: dict[str, dict[str, Any]] = {
    "none": {"review": "none"},
    "fixed": {"review": "fixed", "review_share": 0.1},
    "decision": {"review": "decision"},
}


def plant_noise(y: np.ndarray, share: float, n_classes: int, seed: int) -> np.ndarray:
    """``y`` with ``share`` of its labels moved to another class, uniformly at random."""
    rng = np.random.default_rng(10_000 + seed)
    noisy = y.copy()
    hit = rng.choice(len(y), size=round(share * len(y)), replace=False)
    noisy[hit] = (y[hit] + rng.integers(1, n_classes, size=len(hit))) % n_classes
    return noisy


def run_method(args: argparse.Namespace, method: str, share: float, data: tuple) -> dict[str, Any]:
    """One method at one noise level, every seed: mean curve, AULC, standard errors."""
    X, y, X_test, y_test, n_classes = data
    acc, reviews = [], []
    for seed in range(args.seeds):
        noisy = plant_noise(y, share, n_classes, seed)
        cv: Curve = simulate(
            X,
            y,
            X_test,
            y_test,
            STRATEGIES.create(args.strategy, METHODS[method]),
            rounds=args.rounds,
            budget=args.budget,
            seeds=[seed],
            n_classes=n_classes,
            model=args.model,
            first=lambda pos, noisy=noisy: noisy[pos],
        )
        acc.append(cv.accuracy[0])
        reviews.append(cv.reviews[0])
    a = np.array(acc)
    sem = a.std(axis=0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.zeros(a.shape[1])
    aulc = a.mean(axis=1)
    return {
        "aulc": round(float(aulc.mean()), 4),
        "curve": [round(float(v), 4) for v in a.mean(axis=0)],
        "aulc_sem": round(float(aulc.std(ddof=1) / np.sqrt(len(aulc))) if len(aulc) > 1 else 0.0, 4),
        "curve_sem": [round(float(v), 4) for v in sem],
        "aulc_per_seed": [round(float(v), 4) for v in aulc],
        "reviews_per_round": [round(float(v), 1) for v in np.mean(reviews, axis=0)],
    }


def print_table(out: dict[str, Any], annotations: list[int]) -> None:
    """Accuracy per round against annotations spent, per noise level and method."""
    print(
        f"\n{'noise  method':<18}"
        + "".join(f"{n:>7}" for n in annotations)
        + "     AULC (± s.e.)  reviews/round"
    )
    for share in (k for k in out if k.replace(".", "").isdigit()):
        for method, r in out[share].items():
            print(
                f"{share:<6} {method:<11}"
                + "".join(f"{v:>7.3f}" for v in r["curve"])
                + f"   {r['aulc']:.4f} ± {r['aulc_sem']:.4f}"
                + f"  {np.mean(r['reviews_per_round'][1:]):.1f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", nargs="*", type=float, default=[0.1, 0.2])
    ap.add_argument("--strategy", default="margin", help="the base strategy every method shares")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", default="logreg", help="classifier fitted after each round")
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--out", type=Path, default=RESULTS / "review.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)

    t0 = time.perf_counter()
    X, y, X_test, y_test, classes = regime("banking77")
    data = (X, y, X_test, y_test, len(classes))
    print(f"pool {len(y):,} rows, test {len(y_test):,}, {len(classes)} classes")
    out: dict[str, Any] = {}
    for share in args.noise:
        out[str(share)] = {}
        for method in args.methods:
            t = time.perf_counter()
            r = out[str(share)][method] = run_method(args, method, share, data)
            print(
                f"noise {share} {method:<9} AULC {r['aulc']:.4f}  ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    out.update(
        load_avg=round(os.getloadavg()[0], 2),
        seconds=round(time.perf_counter() - t0),
        seeds=args.seeds,
        budget=args.budget,
        rounds=args.rounds,
        strategy=args.strategy,
        model=args.model,
        machine=f"{platform.machine()}, {os.cpu_count()} cores",
    )
    print_table(out, [args.budget * (r + 1) for r in range(args.rounds)])
    print(f"\n{out['seconds']} s; load average {out['load_avg']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
