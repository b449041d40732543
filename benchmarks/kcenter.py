"""k-center greedy speed: ours against small-text, scikit-activeml and modAL, and the memory bound.

Selects k centers from N random unit vectors (384-d) and prints, per N: seconds for ours
(exact greedy, a batch of picks per BLAS pass; see ``curation.strategies.kcenter``), for
our int8 one-pass-per-pick kernel, for plain greedy (one float32 matrix-vector product per
pick) and for the three libraries' k-center/coreset; ours as a fraction of the
memory-bandwidth bound (one pass over N x 384 float32 per pick, the bandwidth measured in
the same run), and our covering radius over plain greedy's. Every contender runs with the
same BLAS threads (``--threads``, default all cores). Writes ``benchmarks/results/kcenter.json``.

With ``--partitioned ROWS`` it also runs the partitioned k-center over Ray Data blocks on
a generated pool of ROWS rows (never held in memory at once), and compares its covering
radius with single-machine greedy on a 1M sample (``kcenter_partitioned.json``).

Usage::

    python benchmarks/kcenter.py                      # N=100k and 1M, k=1000
    python benchmarks/kcenter.py --sizes 100000 --k 100 --repeat 1
    python benchmarks/kcenter.py --sizes --partitioned 10000000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, prange
from threadpoolctl import threadpool_limits

from curation.strategies.kcenter import covering_radius, kcenter_greedy, kcenter_partitioned

DIM = 16 * 24
RESULTS = Path(__file__).parent / "results"


def unit_vectors(n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` random unit vectors (float32), generated chunk by chunk."""
    X = np.empty((n, DIM), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for i in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - i), DIM), dtype=np.float32)
        X[i : i + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X


@njit(parallel=True)
def _read(words: np.ndarray) -> int:
    total = 0
    for i in prange(len(words)):
        total += words[i]
    return total


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds over ``repeat`` runs, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bandwidth(X: np.ndarray, repeat: int = 7) -> float:
    """Bytes per second of the fastest full read of ``X``: a streaming sum, or the fp32 gemv."""
    words = X.reshape(-1).view(np.int64)
    _read(words[:8])
    v = X[0].copy()
    best = np.inf
    for _ in range(repeat):
        for fn in (lambda: _read(words), lambda: X @ v):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    with threadpool_limits(1, "blas"):
        for _ in range(repeat):
            t0 = time.perf_counter()
            X @ v
            best = min(best, time.perf_counter() - t0)
    return X.nbytes / best


def small_text(X: np.ndarray, k: int) -> np.ndarray:
    from small_text.query_strategies.coresets import greedy_coreset

    return greedy_coreset(
        X, np.arange(1, len(X)), np.array([0]), k, distance_metric="euclidean", normalized=True
    )


def skactiveml(X: np.ndarray, k: int) -> np.ndarray:
    from skactiveml.pool import CoreSet

    y = np.full(len(X), np.nan)
    y[0] = 0
    return CoreSet(random_state=0).query(X, y, batch_size=k)


def modal(X: np.ndarray, k: int) -> np.ndarray:
    from modAL.batch import ranked_batch
    from modAL.models import ActiveLearner
    from sklearn.dummy import DummyClassifier

    # ranked batch with equal uncertainty is greedy max-min distance (k-center); one labeled
    # row avoids modAL's cold start, which builds the full N x N distance matrix.
    learner = ActiveLearner(DummyClassifier(), X_training=X[:1], y_training=np.array([0]))
    return ranked_batch(learner, X, np.zeros(len(X)), k, metric="euclidean", n_jobs=1)[0]


COMPETITORS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "small_text": small_text,
    "skactiveml": skactiveml,
    "modal": modal,
}


def run_competitor(name: str, X: np.ndarray, k: int, probe: int, budget_s: float) -> tuple[float | None, str]:
    """Seconds for ``k`` picks, or None with the reason when it cannot run here.

    A probe of ``probe`` picks runs first; the full run happens only when the probe,
    scaled by ``(k / probe) ** 2`` (these implementations grow with k^2 or keep a
    k x N matrix), fits in ``budget_s``.
    """
    if name == "skactiveml" and k * len(X) * 8 > 4e9:
        return None, f"keeps a k x N float64 utility matrix: {k * len(X) * 8 / 1e9:.0f} GB"
    if name in ("modal", "small_text") and len(X) > 200_000:
        return None, (
            "recomputes distances to every center at each pick, O(N k^2): hours (see its N=100k probe)"
        )
    fn = COMPETITORS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_probe, _ = timed(lambda: fn(X, probe), 1)
        estimate = t_probe * (k / probe) ** 2
        if name != "skactiveml" and estimate > budget_s:
            return None, (
                f"{probe} picks took {t_probe:.1f} s; {k} would take about "
                f"{estimate:.0f} s (k^2 growth), over the {budget_s:.0f} s budget"
            )
        t_full, _ = timed(lambda: fn(X, k), 1)
    return t_full, f"probe {probe} picks: {t_probe:.1f} s"


def plain_greedy(X: np.ndarray, k: int, first: int = 0) -> np.ndarray:
    """Exact float32 greedy, the textbook way: one matrix-vector product per pick."""
    mind = np.full(len(X), np.inf, dtype=np.float32)
    picks = np.empty(k, dtype=np.int64)
    for j in range(k):
        p = first if j == 0 else int(np.argmax(mind))
        picks[j] = p
        np.minimum(mind, 2.0 - 2.0 * (X @ X[p]), out=mind)
        mind[p] = -1.0
    return picks


def one_size(n: int, k: int, repeat: int, probe: int, budget_s: float) -> dict[str, Any]:
    X = unit_vectors(n, seed=0)
    kcenter_greedy(X[:1000], 2, precision="int8")  # compile the kernel outside the timing
    bw = bandwidth(X)
    ours_s, (idx, _) = timed(lambda: kcenter_greedy(X, k, first=0), repeat)
    int8_s, _ = timed(lambda: kcenter_greedy(X, k, first=0, precision="int8"), 1)
    exact_s, exact = timed(lambda: plain_greedy(X, k), 1)
    bound_s = k * X.nbytes / bw
    r_ours, r_exact = covering_radius(X, X[idx]), covering_radius(X, X[exact])
    row: dict[str, Any] = {"ours_s": round(ours_s, 3)}
    notes = {}
    for name in COMPETITORS:
        secs, why = run_competitor(name, X, k, probe, budget_s)
        row[f"{name}_s"] = None if secs is None else round(secs, 2)
        notes[name] = why
    row["bandwidth_fraction"] = round(bound_s / ours_s, 3)
    row["radius_ratio"] = round(r_ours / r_exact, 5)
    row.update(
        ours_int8_s=round(int8_s, 3),
        plain_fp32_s=round(exact_s, 3),
        same_picks_as_plain=round(float(np.mean(idx == exact)), 4),
        bandwidth_gb_s=round(bw / 1e9, 1),
        bound_s=round(bound_s, 3),
    )
    print(
        f"\nN={n:,}, k={k}: bandwidth {bw / 1e9:.1f} GB/s, fp32 bound {bound_s:.2f} s "
        f"({X.nbytes / 1e6:.0f} MB per pick)"
    )
    print(f"{'method':<12}{'seconds':>10}  note")
    print(
        f"{'ours':<12}{ours_s:>10.2f}  exact batched greedy, median of {repeat}; "
        f"{bound_s / ours_s:.2f}x the fp32 bound; radius {r_ours:.4f} vs plain {r_exact:.4f}; "
        f"{np.mean(idx == exact):.1%} of picks identical to plain"
    )
    print(f"{'ours int8':<12}{int8_s:>10.2f}  one fused pass per pick over an int8 copy")
    print(f"{'plain fp32':<12}{exact_s:>10.2f}  one matrix-vector product per pick")
    for name in COMPETITORS:
        secs = row[f"{name}_s"]
        print(f"{name:<12}{'-' if secs is None else f'{secs:.2f}':>10}  {notes[name]}")
    fastest = min((s for nm in COMPETITORS if (s := row[f"{nm}_s"]) is not None), default=None)
    if fastest:
        print(f"ours is {fastest / ours_s:.0f}x faster than the fastest of them")
    return row


def partitioned(rows: int, k: int, block_rows: int, sample_rows: int) -> dict[str, Any]:
    """Partitioned k-center over generated Ray Data blocks vs greedy on a 1M sample."""
    import ray

    from curation.support.engine import ensure_ray

    ensure_ray(None)
    n_blocks = rows // block_rows

    def gen(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = int(batch["id"][0])
        return {"block": np.full(block_rows, b), "embedding": unit_vectors(block_rows, seed=1000 + b)}

    ds = ray.data.range(n_blocks, override_num_blocks=n_blocks).map_batches(gen, batch_size=1)
    t0 = time.perf_counter()
    centers = kcenter_partitioned(ds, k, block_rows=block_rows)
    part_s = time.perf_counter() - t0
    C = centers["embedding"]

    def radius(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"r": np.array([covering_radius(batch["embedding"], C)])}

    t0 = time.perf_counter()
    r_part = float(ds.map_batches(radius, batch_size=block_rows).max("r"))
    radius_s = time.perf_counter() - t0
    peak_driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    sample = np.concatenate(
        [unit_vectors(block_rows, seed=1000 + b) for b in range(sample_rows // block_rows)]
    )
    t0 = time.perf_counter()
    single, _ = kcenter_greedy(sample, k)
    single_s = time.perf_counter() - t0
    r_single = covering_radius(sample, sample[single])
    ray.shutdown()
    out = {
        "rows": rows,
        "k": k,
        "block_rows": block_rows,
        "partitioned_s": round(part_s, 1),
        "radius_pass_s": round(radius_s, 1),
        "partitioned_radius": round(r_part, 5),
        "single_machine_sample_rows": sample_rows,
        "single_machine_s": round(single_s, 1),
        "single_machine_radius": round(r_single, 5),
        "radius_ratio": round(r_part / r_single, 4),
        "driver_peak_rss_gb": round(peak_driver, 2),
    }
    print(
        f"\npartitioned k-center: {rows:,} generated rows in {n_blocks} blocks of {block_rows:,}, "
        f"k={k}: {part_s:.0f} s (+{radius_s:.0f} s for the radius pass), driver peak RSS "
        f"{peak_driver:.2f} GB"
    )
    print(
        f"covering radius: partitioned on {rows:,} = {r_part:.4f}; single-machine greedy on a "
        f"{sample_rows:,} sample = {r_single:.4f}; ratio {r_part / r_single:.3f} (goal <= 2)"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--probe", type=int, default=100, help="picks in a competitor's probe run")
    ap.add_argument("--budget-s", type=float, default=600.0, help="longest competitor run to attempt")
    ap.add_argument("--partitioned", type=int, default=0, help="rows of the generated partitioned run")
    ap.add_argument("--partitioned-k", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads for every contender")
    args = ap.parse_args()
    missing = [m for m in ("small_text", "skactiveml", "modAL") if importlib.util.find_spec(m) is None]
    if args.sizes and missing:
        raise SystemExit(
            f"kcenter.py times ours against small-text, scikit-activeml and modAL; not installed: "
            f"{', '.join(missing)}. Run: .venv/bin/pip install -e '.[bench]' (torch stays as it is)"
        )
    if args.threads:
        threadpool_limits(args.threads, "blas")
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    if args.sizes:
        results = {
            str(n): one_size(n, args.k, args.repeat if n <= 200_000 else 1, args.probe, args.budget_s)
            for n in args.sizes
        }
        path = RESULTS / "kcenter.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        load = round(max(load_before, os.getloadavg()[0]), 2)
        path.write_text(json.dumps({**old, **results, "load_avg": load}, indent=2) + "\n")
    if args.partitioned:
        out = partitioned(args.partitioned, args.partitioned_k, 250_000, 1_000_000)
        out["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)
        (RESULTS / "kcenter_partitioned.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
