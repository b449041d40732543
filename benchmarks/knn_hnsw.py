"""faiss HNSW on the generated rows of label_errors.py: build time, recall@10 and search time.

The question it answers: would a graph index reach the kNN goal (recall@10 >= 0.95 in 60 s at
1M rows) where the k-means lists of ``curation.issues.knn`` do not? For each ``efSearch`` it
searches 2,000 sampled rows, scores recall@10 against exact search (``top_k``) and scales the
search time to all rows. Writes ``benchmarks/results/knn_hnsw.json``.

Usage::

    .venv/bin/python benchmarks/knn_hnsw.py --rows 100000 --m 32 --ef-construction 200
    .venv/bin/python benchmarks/knn_hnsw.py --rows 1000000 --m 16 --ef-construction 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from curation.support.similarity import top_k

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from label_errors import generated  # noqa: E402  (the same generator)


def run(rows: int, m: int, ef_construction: int, efs: list[int], queries: int = 2000) -> dict:
    """Build faiss HNSW on ``rows`` generated rows; recall@10 and seconds per ``efSearch``."""
    import faiss

    X, _, _ = generated(rows)
    q = np.sort(np.random.default_rng(1).choice(rows, queries, replace=False))
    truth = top_k(X[q], X, 11)[1][:, 1:]
    index = faiss.IndexHNSWFlat(X.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    t = time.perf_counter()
    index.add(X)
    out = {
        "rows": rows,
        "m": m,
        "ef_construction": ef_construction,
        "build_s": round(time.perf_counter() - t, 1),
    }
    print(
        f"HNSW on {rows:,} generated rows, M {m}, efConstruction {ef_construction}: built in {out['build_s']} s"
    )
    print(f"{'efSearch':>9} {'recall@10':>10} {'all rows, s':>12}")
    out["searches"] = []
    for ef in efs:
        index.hnsw.efSearch = ef
        t = time.perf_counter()
        found = index.search(X[q], 11)[1]
        s = (time.perf_counter() - t) / len(q) * rows
        recall = float(np.mean([len(set(f) & set(r)) / 10 for f, r in zip(found, truth)]))
        out["searches"].append({"ef_search": ef, "recall_at_10": round(recall, 3), "all_rows_s": round(s)})
        print(f"{ef:>9} {recall:>10.3f} {s:>12.0f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    out = run(args.rows, args.m, args.ef_construction, args.ef_search)
    out["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)
    path = ROOT / "benchmarks" / "results" / "knn_hnsw.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[str(args.rows)] = out
    path.write_text(json.dumps(runs, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
