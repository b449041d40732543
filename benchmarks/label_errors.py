"""Label-error detection on 20 Newsgroups against the 82 crowd-confirmed errors.

Compares cleanlab's reference recipe (``find_label_issues`` ranked by self-confidence, on
5-fold cross-validated logistic regression over MiniLM embeddings) with ours (the ensemble
recipe: the views and models the tool weighs itself). Prints, for each, how many confirmed
errors are in the top 100 and top 200 flags, how many are flagged at all, and the seconds of
each stage. ``--scale N`` also runs the step on N generated rows (384-d, 20 classes) and
prints its time and peak memory, after timing its kNN graph (k = 10) against faiss IVF as the
step used it before (nlist sqrt(N), nprobe 8), both scored by recall@10 against exact search
on ``--queries`` sampled rows (``knn`` in ``label_errors_scale.json``; ``--knn-only`` skips
the step and keeps the step's figures already in the file).

Usage::

    .venv/bin/python benchmarks/label_errors.py            # writes benchmarks/results/label_errors.json
    .venv/bin/python benchmarks/label_errors.py --scale 1000000
    .venv/bin/python benchmarks/label_errors.py --skip-news --scale 1000000 --knn-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.config import IssuesConfig, PluginConfig
from curation.issues.find import find_issues
from curation.issues.knn import knn_graph
from curation.steps.embed import embed

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results" / "label_errors.json"
ALL = ["label", "outlier", "near_duplicate", "class_imbalance"]


def confirmed_errors() -> set[str]:
    """Ids of the 82 items that crowd workers confirmed as mislabeled (votes_given < 3)."""
    m = pl.read_csv(DATA / "20news_test_mturk.csv").filter(pl.col("votes_given") < 3)
    return {str(i) for i in m["id"]}


def score(table: pl.DataFrame, errors: set[str]) -> dict[str, int]:
    """Confirmed errors among the top 100, top 200 and all label flags; the number flagged."""
    ids = [str(i) for i in table.filter(pl.col("issue") == "label").sort("rank")["id"]]
    return {
        "top100": len(errors & set(ids[:100])),
        "top200": len(errors & set(ids[:200])),
        "found": len(errors & set(ids)),
        "flagged": len(ids),
    }


def run_recipe(
    recipe: str, df: pl.DataFrame, X: np.ndarray, detectors: list[str]
) -> tuple[pl.DataFrame, dict]:
    cfg = IssuesConfig(recipe=recipe, detectors=[PluginConfig(name=d) for d in detectors])
    texts = df["text"].to_list() if recipe == "ensemble" else None
    return find_issues(
        texts, df["id"].to_list(), df["label"].to_list(), sorted(df["label"].unique().to_list()), X, cfg
    )


def news(repeat: int) -> dict[str, Any]:
    df = pl.read_parquet(DATA / "20news_test.parquet")
    errors = confirmed_errors()
    t = time.perf_counter()
    X = embed(df["text"].to_list(), ids=df["id"].to_list(), root=ROOT, engine="local")
    print(f"embed (MiniLM, 256 tokens, cached under .curation/): {time.perf_counter() - t:.1f}s")
    results: dict[str, Any] = {}
    for name, recipe, detectors in (("reference", "reference", ["label"]), ("ours", "ensemble", ALL)):
        runs = [run_recipe(recipe, df, X, detectors) for _ in range(repeat)]
        table, report = runs[-1]
        results[name] = score(table, errors)
        stages = {k: statistics.median(r[1]["seconds"][k] for r in runs) for k in report["seconds"]}
        print(f"\n{name} ({recipe}); stage seconds, median of {repeat}:")
        for k, v in stages.items():
            print(f"  {k:28s} {v:8.2f}")
        for m in report["members"]:
            print(f"  member {m['name']:21s} cv accuracy {m['accuracy']:.3f}  weight {m['weight']:.3f}")
        print(f"  flags per issue: {report['flagged']}")
    print(
        f"\n{'recipe':10s} {'top100':>7s} {'top200':>7s} {'found':>6s} {'flagged':>8s}   (of {len(errors)} confirmed)"
    )
    for name, r in results.items():
        print(f"{name:10s} {r['top100']:7d} {r['top200']:7d} {r['found']:6d} {r['flagged']:8d}")
    return results


def generated(
    n: int, dim: int = 384, classes: int = 20, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, list[str], set[int]]:
    """``n`` unit vectors around ``classes`` centres, with ``noise`` of the labels moved."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, n)
    X = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, 100_000):
        j = slice(i, min(n, i + 100_000))
        X[j] = centres[y[j]] + 4.0 * rng.standard_normal((X[j].shape[0], dim), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    moved = rng.choice(n, size=int(noise * n), replace=False)
    given = y.copy()
    given[moved] = (y[moved] + rng.integers(1, classes, len(moved))) % classes
    return X, [f"c{v:02d}" for v in given], set(moved.tolist())


def faiss_ivf(X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The k nearest other rows by faiss IVF as the issue step searched before (nlist sqrt(n))."""
    import faiss

    n, d = X.shape
    nlist = max(1, int(min(math.sqrt(n), n // 40)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(X[np.random.default_rng(seed).choice(n, size=min(n, 40 * nlist), replace=False)])
    index.add(X)
    index.nprobe = 8
    return without_self(index.search(X, k + 1)[1], np.arange(n), k)


def without_self(idx: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` neighbours of each row of ``idx`` other than the row itself (``rows``)."""
    return np.array([[j for j in found if j != i][:k] for i, found in zip(rows, idx)])


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true neighbours among those found."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def knn_compare(X: np.ndarray, queries: int, k: int = 10) -> dict[str, Any]:
    """Seconds of our graph and of faiss IVF, and their recall@k on sampled rows."""
    import faiss

    n = len(X)
    q = np.sort(np.random.default_rng(1).choice(n, min(queries, n), replace=False))
    t = time.perf_counter()
    exact = faiss.knn(X[q], X, k + 1, faiss.METRIC_INNER_PRODUCT)[1]
    exact_s = time.perf_counter() - t
    truth = without_self(exact, q, k)
    t = time.perf_counter()
    ours = knn_graph(X, k).indices.reshape(n, k)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    ivf = faiss_ivf(X, k)
    ivf_s = time.perf_counter() - t
    out = {
        "rows": n,
        "k": k,
        "queries": len(q),
        "ours_s": round(ours_s, 2),
        "faiss_ivf_s": round(ivf_s, 2),
        "recall_at_10": round(recall_at(ours[q], truth), 4),
        "faiss_ivf_recall_at_10": round(recall_at(ivf[q], truth), 4),
        "exact_queries_s": round(exact_s, 2),
        "load_avg": round(os.getloadavg()[0], 2),
    }
    print(
        f"kNN graph, {n:,} rows, k={k}: ours {ours_s:.1f} s, recall@10 {out['recall_at_10']:.3f}; "
        f"faiss IVF {ivf_s:.1f} s, recall@10 {out['faiss_ivf_recall_at_10']:.3f} "
        f"(exact on {len(q):,} rows: {exact_s:.1f} s)"
    )
    return out


def scale(X: np.ndarray, labels: list[str], moved: set[int]) -> dict[str, Any]:
    """The issue step on generated rows (:func:`generated`): seconds, memory, recall."""
    n = len(X)
    t = time.perf_counter()
    table, report = find_issues(
        None,
        np.arange(n),
        labels,
        [f"c{v:02d}" for v in range(20)],
        X,
        IssuesConfig(detectors=[PluginConfig(name=d) for d in ALL]),
    )
    total = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    flagged = table.filter(pl.col("issue") == "label")["id"].cast(pl.Int64).to_list()
    recall = len(moved & set(flagged)) / len(moved)
    print(f"\n{n:,} generated rows, 384-d, 20 classes, {len(moved):,} labels moved:")
    for k, v in report["seconds"].items():
        print(f"  {k:28s} {v:8.1f}s")
    for m in report["members"]:
        print(f"  member {m['name']:21s} cv accuracy {m['accuracy']:.3f}  weight {m['weight']:.3f}")
    print(
        f"  total {total:.0f}s, peak memory {peak_gb:.2f} GB, label flags {len(flagged):,}, "
        f"recall of moved labels {recall:.3f}, flags per issue {report['flagged']}"
    )
    return {
        "rows": n,
        "seconds": total,
        "peak_gb": peak_gb,
        "stages": report["seconds"],
        "label_flags": len(flagged),
        "recall": recall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs per recipe (timings: median)")
    ap.add_argument("--scale", type=int, default=0, help="also run on this many generated rows")
    ap.add_argument("--skip-news", action="store_true", help="only the scale run")
    ap.add_argument("--queries", type=int, default=20_000, help="rows whose exact neighbours score recall")
    ap.add_argument("--knn-only", action="store_true", help="only the kNN graph comparison of --scale")
    args = ap.parse_args()
    if not args.skip_news:
        results = news(args.repeat)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {OUT.relative_to(ROOT)}")
    if args.scale:
        path = OUT.with_name("label_errors_scale.json")
        X, labels, moved = generated(args.scale)
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        scaled = old if args.knn_only else scale(X, labels, moved)  # first: its peak memory is its own
        scaled["knn"] = knn_compare(X, args.queries)
        path.write_text(json.dumps(scaled, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
