"""Reading a loop file or a connection profile: YAML, the config models, then every plugin
section bound to its constructor, so a mistake is one line naming the file and the field
before any data is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from curation.config import ConnectorConfig, LoopConfig, PluginConfig, VersionConfig
from curation.connectors.base import ANNOTATORS, STORES
from curation.errors import ConfigError
from curation.issues.base import DETECTORS
from curation.steps.model import MODELS
from curation.strategies.base import STRATEGIES
from curation.support.data import column_names, require_columns
from curation.support.redact import refuse_credentials
from curation.support.registry import config_error


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
    cfg._source = path
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
    for key, value in params.items():
        refuse_credentials(value, f"version.{key}", source)
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
    for key, value in params.items():
        refuse_credentials(value, key, str(path))
    return ConnectorConfig(name=cfg.name, **params)
