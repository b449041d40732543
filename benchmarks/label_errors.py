"""Label-error detection: ours against cleanlab's reference recipe and each of our views alone.

Five settings: 20 Newsgroups (test split) against its 82 crowd-confirmed errors, and 20
Newsgroups and BANKING77 (train split) with 5% and 15% class-conditional noise planted (a
moved row takes the class its embedding neighbours hold, see :func:`plant`). On each, every
labeled row is ranked by label quality (lowest first) and the errors among the top 100 and
top 200 are counted for ours (the ensemble recipe, all detectors), the reference recipe
(cleanlab's ``find_label_issues`` ranked by self-confidence, 5-fold cross-validated logistic
regression on the MiniLM embeddings) and each view of ours alone (``views``; the members
the ensemble chose from, with their held-out log-loss and weight in ``members``).

``--scale N`` also runs the step on N generated rows (384-d, 20 classes) and
prints its time and peak memory, after timing its kNN graph (k = 10) against faiss IVF as the
step used it before (nlist sqrt(N), nprobe 8), both scored by recall@10 against exact search
on ``--queries`` sampled rows (``knn`` in ``label_errors_scale.json``; ``--knn-only`` skips
the step and keeps the step's figures already in the file). ``--knn-sweep`` runs only
:func:`knn_sweep`, on the generated rows and on the real vectors of ../shared/data: how the
recall of a k-means-list search grows with the share of rows it scans (``knn_sweep``).

Usage::

    .venv/bin/python benchmarks/label_errors.py            # writes benchmarks/results/label_errors.json
    .venv/bin/python benchmarks/label_errors.py --scale 1000000
    .venv/bin/python benchmarks/label_errors.py --skip-news --scale 1000000 --knn-only
    .venv/bin/python benchmarks/label_errors.py --skip-news --scale 1000000 --knn-sweep
    .venv/bin/python benchmarks/label_errors.py --skip-news --ray 10000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.config import IssuesConfig, PluginConfig
from curation.issues.find import find_issues, label_codes
from curation.issues.knn import knn_graph
from curation.issues.label import label_quality
from curation.steps.embed import embed
from curation.support.similarity import top_k

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results" / "label_errors.json"
ALL = ["label", "outlier", "near_duplicate", "class_imbalance"]
CLASSES = [f"c{v:02d}" for v in range(20)]  # of the generated rows


def confirmed_errors() -> set[str]:
    """Ids of the 82 items that crowd workers confirmed as mislabeled (votes_given < 3)."""
    m = pl.read_csv(DATA / "20news_test_mturk.csv").filter(pl.col("votes_given") < 3)
    return {str(i) for i in m["id"]}


def top_counts(quality: np.ndarray, ids: list[str], errors: set[str]) -> dict[str, int]:
    """Errors among the 100 and 200 labeled rows of lowest label quality (all rows ranked)."""
    order = [ids[i] for i in np.argsort(quality, kind="stable") if not np.isnan(quality[i])]
    return {"top100": len(errors & set(order[:100])), "top200": len(errors & set(order[:200]))}


def plant(X: np.ndarray, labels: list[str], share: float, seed: int = 0) -> tuple[list[str], set[int]]:
    """Class-conditional noise: ``share`` of the rows moved to the class their neighbours hold.

    A moved row takes the most common label other than its own among its 10 nearest
    embedding neighbours (a random other class when all ten share its label): the confusable
    errors a real annotator makes, not uniform noise.
    """
    import faiss

    classes = sorted(set(labels))
    code = np.array([classes.index(v) for v in labels])
    rng = np.random.default_rng(seed)
    nbr = faiss.knn(X, X, 11, faiss.METRIC_INNER_PRODUCT)[1][:, 1:]
    moved = rng.choice(len(labels), size=int(share * len(labels)), replace=False)
    given = code.copy()
    for i in moved:
        other = code[nbr[i]][code[nbr[i]] != code[i]]
        given[i] = (
            np.bincount(other).argmax()
            if len(other)
            else (code[i] + rng.integers(1, len(classes))) % len(classes)
        )
    return [classes[c] for c in given], set(moved.tolist())


def settings() -> dict[str, tuple[pl.DataFrame, np.ndarray, set[str]]]:
    """20news with its confirmed errors, and 20news and BANKING77 with 5% and 15% planted."""
    out = {}
    for name, file in (("20news", "20news_test"), ("banking77", "banking77_train")):
        df = pl.read_parquet(DATA / f"{file}.parquet").drop_nulls(["text", "label"])
        df = df.filter(pl.col("text").str.strip_chars() != "")
        X = embed(df["text"].to_list(), ids=df["id"].to_list(), root=ROOT, engine="local")
        df = df.with_columns(pl.col("id").cast(pl.String))
        if name == "20news":
            out["20news_real"] = (df, X, confirmed_errors())
        for share in (0.05, 0.15):
            labels, moved = plant(X, df["label"].to_list(), share)
            ids = df["id"].to_list()
            out[f"{name}_planted{round(share * 100)}"] = (
                df.with_columns(pl.Series("label", labels)),
                X,
                {ids[i] for i in moved},
            )
    return out


def run_recipe(
    recipe: str, df: pl.DataFrame, X: np.ndarray, detectors: list[str]
) -> tuple[pl.DataFrame, dict]:
    cfg = IssuesConfig(recipe=recipe, detectors=[PluginConfig(name=d) for d in detectors])
    texts = df["text"].to_list() if recipe == "ensemble" else None
    return find_issues(
        texts, df["id"].to_list(), df["label"].to_list(), sorted(df["label"].unique().to_list()), X, cfg
    )


def evaluate(df: pl.DataFrame, X: np.ndarray, errors: set[str]) -> dict[str, Any]:
    """Top-100/200 counts of ours, the reference recipe and each of our views alone."""
    ids = df["id"].to_list()
    out: dict[str, Any] = {}
    _, ref = run_recipe("reference", df, X, ["label"])
    _, ours = run_recipe("ensemble", df, X, ALL)
    out["ours"] = top_counts(ours["label_quality"], ids, errors)
    out["ours"]["flagged"] = int(ours["flagged"].get("label", 0))
    out["reference"] = top_counts(ref["label_quality"], ids, errors)
    out["reference"]["flagged"] = int(ref["flagged"].get("label", 0))
    codes = label_codes(df["label"].to_list(), sorted(df["label"].unique().to_list()))
    out["views"] = {
        m.name: top_counts(label_quality(codes, m.pred_probs), ids, errors) for m in ours["evidence"]
    }
    out["members"] = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()} for m in ours["members"]
    ]
    out["seconds"] = {k: round(v, 2) for k, v in ours["seconds"].items()}
    return out


def quality() -> dict[str, Any]:
    """:func:`evaluate` on every setting of :func:`settings`, printed as one table."""
    results = {}
    for name, (df, X, errors) in settings().items():
        t = time.perf_counter()
        results[name] = r = evaluate(df, X, errors)
        print(f"\n{name}: {len(df):,} rows, {len(errors):,} errors, {time.perf_counter() - t:.0f} s")
        for m in r["members"]:
            print(
                f"  member {m['name']:22s} accuracy {m['accuracy']:.3f}  log-loss {m['log_loss']:.3f}  weight {m['weight']:.3f}"
            )
        rows = {"ours": r["ours"], "reference": r["reference"], **r["views"]}
        for who, c in rows.items():
            print(f"  {who:24s} top100 {c['top100']:4d}  top200 {c['top200']:4d}")
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

    n = len(X)
    q = np.sort(np.random.default_rng(1).choice(n, min(queries, n), replace=False))
    t = time.perf_counter()
    exact = top_k(X[q], X, k + 1)[1]  # exact: every row's product (by torch, at SGEMM speed)
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


def real_vectors() -> np.ndarray:
    """MiniLM vectors of every text in ../shared/data (BANKING77 both splits, 20news test)."""
    texts: list[str] = []
    for name in ("banking77_train", "banking77_test", "20news_test"):
        df = pl.read_parquet(DATA / f"{name}.parquet")
        texts += df.filter(pl.col("text").str.strip_chars().str.len_chars() > 0)["text"].to_list()
    return np.ascontiguousarray(embed(texts, root=ROOT, engine="local"), dtype=np.float32)


def knn_sweep(X: np.ndarray, queries: int = 5_000, k: int = 10) -> dict[str, Any]:
    """How hard the data's neighbours are to find: recall@k of k-means-list (IVF) search
    against the share of rows it scans, with the time a blocked search of all rows would take
    at that share (the share of an exact search's time, measured on ``queries`` rows), and the
    error of the mean distance to the neighbours found (what the outlier detector reads)."""
    import faiss

    n, d = X.shape
    q = np.sort(np.random.default_rng(1).choice(n, min(queries, n), replace=False))
    t = time.perf_counter()
    sim, found = faiss.knn(X[q], X, k + 1, faiss.METRIC_INNER_PRODUCT)
    exact_all_s = (time.perf_counter() - t) * n / len(q)
    truth, true_dist = without_self(found, q, k), 1 - sim[:, 1:].mean(1)
    nlist = max(1, int(min(math.sqrt(n), n // 40)))
    km = faiss.Kmeans(d, nlist, niter=10, seed=0, spherical=True, max_points_per_centroid=64)
    km.train(X)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.quantizer.add(km.centroids)
    index.is_trained = True  # the lists are the k-means lists above
    index.add(X)
    random_cos = (X[q] * X[np.random.default_rng(2).choice(n, len(q))]).sum(1)
    out: dict[str, Any] = {
        "rows": n,
        "queries": len(q),
        "exact_all_rows_s": round(exact_all_s, 1),
        "cos_1st_nn": round(float(np.median(sim[:, 1])), 3),
        "cos_kth_nn": round(float(np.median(sim[:, k])), 3),
        "cos_random_row": round(float(np.median(random_cos)), 3),
        "probes": [],
    }
    for probe in (16, 32, 64, 128, 256, 512):
        if probe > nlist:
            break
        index.nprobe = probe
        s, j = index.search(X[q], k + 1)
        got = without_self(j, q, k)
        dist = 1 - np.where(j == q[:, None], np.nan, s)[:, : k + 1]
        dist = np.sort(np.nan_to_num(dist, nan=np.inf), axis=1)[:, :k].mean(1)
        row = {
            "probe": probe,
            "scanned": round(probe / nlist, 4),
            "recall_at_10": round(recall_at(got, truth), 4),
            "blocked_s_estimate": round(exact_all_s * probe / nlist, 1),
            "mean_dist_rel_err": round(float(np.mean(dist / true_dist - 1)), 4),
        }
        out["probes"].append(row)
        print(
            f"  probe {probe:4d} of {nlist} lists ({row['scanned']:.1%} of rows): recall@10 "
            f"{row['recall_at_10']:.3f}, mean distance +{row['mean_dist_rel_err']:.2%}, "
            f"~{row['blocked_s_estimate']:.0f} s for all rows"
        )
    out["load_avg"] = round(os.getloadavg()[0], 2)
    print(
        f"kNN sweep, {n:,} rows: cosine of the 1st / {k}th neighbour {out['cos_1st_nn']} / "
        f"{out['cos_kth_nn']}, of a random row {out['cos_random_row']}; exact ~{exact_all_s:.0f} s"
    )
    return out


def scale_config(seed: int = 0, reuse: bool = True) -> IssuesConfig:
    """The step as :func:`scale` runs it: every detector, the ensemble's default views."""
    detectors = [PluginConfig(name=d) for d in ALL]
    return IssuesConfig(detectors=detectors, seed=seed, reuse_above=0 if reuse else None)


def scale(X: np.ndarray, labels: list[str], moved: set[int]) -> tuple[dict[str, Any], Any]:
    """The issue step on generated rows (:func:`generated`): seconds, memory, recall; and the
    work it kept for a next round (:class:`~curation.issues.memory.IssueMemory`)."""
    n = len(X)
    t = time.perf_counter()
    table, report = find_issues(None, np.arange(n), labels, CLASSES, X, scale_config())
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
    out = {"rows": n, "seconds": total, "peak_gb": peak_gb, "stages": report["seconds"]}
    return out | {"label_flags": len(flagged), "recall": recall}, report["memory"]


def next_round(X: np.ndarray, labels: list[str], memory: Any, relabel: float = 0.001) -> dict[str, Any]:
    """The round after :func:`scale`'s: its rows and 1% more (``X``, ``labels``), ``relabel`` of
    the old rows given another label. Timed reusing ``memory`` and in full, and the flags of
    both compared (Jaccard per issue) beside those of a full run with another seed, the
    tolerance: a reused round must agree with a full run as two full runs agree."""
    n_old = len(memory.keys)
    labels = list(labels)
    for i in np.random.default_rng(5).choice(n_old, int(relabel * n_old), replace=False):
        labels[i] = CLASSES[(CLASSES.index(labels[i]) + 1) % len(CLASSES)]
    runs, seconds = {}, {}
    for name, cfg, mem in (
        ("reused", scale_config(), memory),
        ("full", scale_config(reuse=False), None),
        ("full_seed1", scale_config(seed=1, reuse=False), None),
    ):
        t = time.perf_counter()
        runs[name], report = find_issues(None, np.arange(len(X)), labels, CLASSES, X, cfg, memory=mem)
        seconds[name] = time.perf_counter() - t
        print(
            f"  next round, {name}: {seconds[name]:.1f}s { ({k: round(v, 1) for k, v in report['seconds'].items()}) }"
        )
        assert (report["reused"] is not None) == (name == "reused")

    def jaccard(a: str, b: str) -> dict[str, float]:
        out = {}
        for issue in sorted(set(runs[a]["issue"]) | set(runs[b]["issue"])):
            x, y = (set(runs[r].filter(pl.col("issue") == issue)["id"].to_list()) for r in (a, b))
            out[issue] = round(len(x & y) / max(len(x | y), 1), 4)
        return out

    out = {
        "next_round_rows": len(X),
        "new_rows": len(X) - n_old,
        "relabeled": int(relabel * n_old),
        "incremental_s": round(seconds["reused"], 2),
        "full_s": round(seconds["full"], 2),
        "incremental_share": round(seconds["reused"] / seconds["full"], 4),
        "flags_jaccard": jaccard("reused", "full"),
        "flags_jaccard_full_vs_seed1": jaccard("full", "full_seed1"),
    }
    print(
        f"  reused {out['incremental_s']:.1f}s against {out['full_s']:.1f}s in full "
        f"({out['incremental_share']:.1%}); flags Jaccard {out['flags_jaccard']} "
        f"(two full runs, seeds 0 and 1: {out['flags_jaccard_full_vs_seed1']})"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=0, help="also run on this many generated rows")
    ap.add_argument("--skip-news", action="store_true", help="only the scale run")
    ap.add_argument("--queries", type=int, default=20_000, help="rows whose exact neighbours score recall")
    ap.add_argument("--knn-only", action="store_true", help="only the kNN graph comparison of --scale")
    ap.add_argument("--knn-sweep", action="store_true", help="with --scale: only recall against rows scanned")
    ap.add_argument(
        "--skip-knn", action="store_true", help="with --scale: keep the kNN comparison in the file"
    )
    ap.add_argument("--ray", type=int, default=0, help="rows of the Ray job on a 2-node cluster")
    ap.add_argument("--ray-sample", type=int, default=200_000, help="rows both ways for sample_jaccard")
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the Ray run's Parquet and scratch")
    args = ap.parse_args()
    if args.ray:
        run_ray(args.ray, args.ray_sample, args.scratch)
    if not args.skip_news:
        load_before = os.getloadavg()[0]
        results = quality()
        # the load before the run (other work) or at its end (this run's own), the higher
        results["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {OUT.relative_to(ROOT)}")
    if args.scale:
        run_scale(args)


def run_scale(args: argparse.Namespace) -> None:
    """``--scale``: the step, its next round, the kNN comparison; into label_errors_scale.json."""
    path = OUT.with_name("label_errors_scale.json")
    n = args.scale
    X, labels, moved = generated(n + n // 100)  # the next round has 1% more rows
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    scaled = dict(old)
    load_before = os.getloadavg()[0]
    if not (args.knn_only or args.knn_sweep):
        step, memory = scale(
            X[:n], labels[:n], {i for i in moved if i < n}
        )  # first: its peak memory is its own
        scaled.update(step)
        scaled.update(next_round(X, labels, memory))
        scaled["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)
        del memory
    if args.knn_sweep:  # only the sweep: the other figures stay as they are in the file
        scaled["knn_sweep"] = {"generated": knn_sweep(X[:n]), "real": knn_sweep(real_vectors())}
    elif not args.skip_knn:
        scaled["knn"] = knn_compare(X[:n], args.queries)
    path.write_text(json.dumps(scaled, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")


def generated_parts(folder: Path, n: int, chunk: int = 500_000, seed: int = 0) -> set[int]:
    """:func:`generated`'s rows (same centres and noise, chunk by chunk) as Parquet files in
    ``folder`` (``id``, ``label``, ``embedding``); returns the moved rows."""
    folder.mkdir(parents=True, exist_ok=True)
    centres = np.random.default_rng(seed).normal(size=(20, 384)).astype(np.float32)
    moved: set[int] = set()
    for i in range(0, n, chunk):
        rng = np.random.default_rng([seed, i])
        m = min(chunk, n - i)
        y = rng.integers(0, 20, m)
        X = centres[y] + 4.0 * rng.standard_normal((m, 384), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        hit = rng.random(m) < 0.05
        y = np.where(hit, (y + rng.integers(1, 20, m)) % 20, y)
        moved |= set((i + np.flatnonzero(hit)).tolist())
        pl.DataFrame(
            {
                "id": np.arange(i, i + m).astype(str),
                "label": np.array(CLASSES)[y],
                "embedding": pl.Series(X, dtype=pl.Array(pl.Float32, 384)),
            }
        ).write_parquet(folder / f"part-{i // chunk:05d}.parquet", row_group_size=65_536)
    return moved


def run_ray(n: int, sample: int, scratch: Path | None) -> None:
    """``--ray``: the Ray job on a 2-node cluster at ``n`` rows, then both ways on ``sample``."""
    import multiprocessing
    import shutil
    import tempfile

    import ray
    from ray.cluster_utils import Cluster

    from curation.issues.distributed import find_issues_ray
    from curation.support.engine import ensure_ray

    path = OUT.with_name("label_errors_scale.json")
    root = Path(tempfile.mkdtemp(prefix="curation-ray-bench-", dir=scratch))
    load_before = os.getloadavg()[0]
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # the driver's memory is the job's alone
        moved = pool.apply(generated_parts, (root / "rows", n))
        pool.apply(generated_parts, (root / "sample", sample))
    store = 3 * 1024**3  # each node's object store: the training sample (1.3 GB at 10M rows) unspilled
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
    cluster.add_node(num_cpus=1, object_store_memory=store)
    cluster.wait_for_nodes()
    ensure_ray(cluster.address)
    try:
        t = time.perf_counter()
        table, report = find_issues_ray(
            root / "rows", CLASSES, scale_config(reuse=False), scratch=root / "scratch"
        )
        seconds = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        flagged = set(table.filter(pl.col("issue") == "label")["id"].cast(pl.Int64).to_list())
        run = {
            "rows": n,
            "seconds": round(seconds, 1),
            "driver_peak_gb": round(peak, 3),
            "stages": report["seconds"],
        }
        run |= {"recall": round(len(flagged & moved) / len(moved), 4), "flagged": report["flagged"]}
        print(
            f"Ray job, {n:,} rows on 2 nodes: {seconds:.0f} s, driver peak {peak:.2f} GB, recall {run['recall']}"
        )
        on_ray, _ = find_issues_ray(root / "sample", CLASSES, scale_config(reuse=False))
    finally:
        ray.shutdown()
        cluster.shutdown()
    df = pl.read_parquet(root / "sample")
    shutil.rmtree(root, ignore_errors=True)
    X = df["embedding"].to_numpy()
    in_process, _ = find_issues(None, df["id"], df["label"].to_list(), CLASSES, X, scale_config(reuse=False))
    jaccard = {}
    for issue in [*ALL, "all"]:
        a, b = (
            set(t.filter((pl.col("issue") == issue) | (issue == "all")).select("id", "issue").rows())
            for t in (in_process, on_ray)
        )
        jaccard[issue] = round(len(a & b) / len(a | b), 4) if a | b else 1.0
    print(f"flags on {sample:,} rows, Ray job against in process: Jaccard {jaccard}")
    scaled = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    scaled["ray_10M" if n == 10_000_000 else f"ray_{n}"] = run | {
        "load_avg": round(max(load_before, os.getloadavg()[0]), 2)
    }
    scaled["sample_jaccard"] = jaccard | {"rows": sample}
    path.write_text(json.dumps(scaled, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
