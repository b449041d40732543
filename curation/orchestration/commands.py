"""What the ``curation validate`` and ``curation embed`` commands do before they run: their
options laid over a loop file's settings and the config models' defaults. The CLI only
parses options and prints; the merging lives here, where it is tested without a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from curation.config import Columns, EmbedConfig, ValidateConfig
from curation.errors import ConfigError
from curation.load import load_loop
from curation.support.progress import Reporter
from curation.support.registry import config_error

if TYPE_CHECKING:
    from curation.steps.embed import EmbedResult

ENGINES = ("auto", "ray", "local")


@dataclass
class ValidationPlan:
    """What ``curation validate`` checks, against what, with which settings, into where."""

    data: str
    schema: str
    out: Path
    settings: ValidateConfig
    columns: Columns
    engine: str = "auto"
    ray_address: str | None = None


def validation_plan(
    source: str,
    schema: str | None = None,
    out: Path | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    **overrides: Any,
) -> ValidationPlan:
    """The plan of ``curation validate SOURCE``: a loop file (its dataset, contract, columns
    and ``validate`` section) or data with ``--schema``; given options override.

    ``overrides`` are fields of :class:`ValidateConfig` (``None`` means not given) and
    ``text`` / ``label`` (the columns, for data). Without a loop the gate is off
    (``max_invalid_fraction`` 1.0) unless given.

    Examples
    --------
    >>> p = validation_plan("data.parquet", "schemas/x.yaml", min_per_class=3)
    >>> p.settings.min_per_class, p.settings.max_invalid_fraction, p.out
    (3, 1.0, PosixPath('validation'))
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    cols = {k: given.pop(k) for k in ("text", "label") if k in given}
    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", field="engine", choices=list(ENGINES))
    if source.endswith((".yaml", ".yml")) and Path(source).is_file():
        cfg = load_loop(source)
        base, columns = cfg.validate_.model_dump(), cfg.columns
        plan = ValidationPlan(
            str(cfg.path(cfg.dataset)),
            schema or str(cfg.path(cfg.schema_path)),
            out or cfg.root / "validation" / cfg.name,
            ValidateConfig(),
            columns,
            "local" if cfg.engine == "local" else "auto",
            ray_address or cfg.ray_address,
        )
    elif schema is None:
        raise ConfigError("give --schema schemas/x.yaml (or a loop file instead of the data)", field="schema")
    else:
        base, columns = {"max_invalid_fraction": 1.0}, Columns(**cols)
        plan = ValidationPlan(
            source, schema, out or Path("validation"), ValidateConfig(), columns, "auto", ray_address
        )
    try:
        plan.settings = ValidateConfig(**{**base, **given})
    except ValidationError as e:
        raise config_error(e, prefix="validate.") from e
    plan.engine = engine or plan.engine
    return plan


def embed_settings(**options: Any) -> EmbedConfig:
    """The ``embed`` section of ``curation embed``'s options (``None`` means not given).

    Examples
    --------
    >>> embed_settings(backend="onnx", model=None).backend
    'onnx'
    """
    try:
        return EmbedConfig(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as e:
        raise config_error(e, prefix="embed.") from e


def run_validation(
    plan: ValidationPlan, progress: Callable[[int, int | None], None] | None = None
) -> dict[str, Any]:
    """Run a :func:`validation_plan` (see :func:`curation.steps.validate.validate_source`)."""
    from curation.steps.validate import load_schema, validate_source

    return validate_source(
        plan.data,
        load_schema(plan.schema),
        plan.out,
        plan.settings,
        plan.columns,
        engine=cast(Any, plan.engine),
        ray_address=plan.ray_address,
        progress=progress,
    )


def embed_file(
    data: Path,
    settings: EmbedConfig,
    text: str,
    id_column: str,
    engine: str,
    root: Path,
    out: Path | None,
    rep: Reporter,
) -> EmbedResult:
    """What ``curation embed DATA`` does: read, embed (cached), write ``id, vector`` rows to ``out``."""
    import polars as pl

    from curation.steps.embed import embed_with_report
    from curation.support.data import read_table, write_parquet
    from curation.support.engine import ensure_ray

    if engine not in ("ray", "local"):
        raise ConfigError(
            f"expected ray or local, found {engine!r}", field="engine", choices=["ray", "local"]
        )
    df = read_table(data)
    for col in (text, id_column):
        if col not in df.columns:
            raise ConfigError(f"column {col!r} not in {data}", field="columns", choices=df.columns)
    if engine == "ray":
        ensure_ray()
    rep.start("embed", len(df))
    res = embed_with_report(
        df[text].to_list(),
        settings,
        ids=df[id_column].to_list(),
        root=root,
        engine=cast(Any, engine),
        progress=rep.advance,
    )
    r = res.report
    rep.finish(f"embed: {r['embedded']} embedded, {r['cached']} from the cache, {r['truncated']} truncated")
    if out is not None:
        write_parquet(pl.DataFrame({id_column: df[id_column], "vector": res.vectors}), out)
    return res
