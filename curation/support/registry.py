"""A name -> class registry, one per extension point (detectors, strategies, connectors, stores).

A registry is a leaf: it imports no implementation. The built-in implementations are named
as module paths and imported on the first lookup; each registers itself with the
:meth:`Registry.register` decorator. Third-party plugins register the same way from a module
listed in the ``curation.plugins`` entry-point group.

Config maps one-to-one onto constructor arguments, and :meth:`Registry.bind` checks a config
section against the constructor's signature (names and types) when the config is loaded,
before any data is read.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import ConfigDict, ValidationError, create_model

from curation.errors import ConfigError, RegistryError

T = TypeVar("T")

#: The entry-point group third-party plugin modules are listed in.
PLUGIN_GROUP = "curation.plugins"


def config_error(
    e: ValidationError,
    source: str | None = None,
    prefix: str = "",
    what: str = "",
    choices: list[str] | None = None,
) -> ConfigError:
    """One :class:`ConfigError` for a pydantic error: the first problem, its field, its file.

    Examples
    --------
    >>> from pydantic import BaseModel
    >>> class M(BaseModel):
    ...     n: int
    >>> try:
    ...     M(n="x")
    ... except ValidationError as e:
    ...     print(config_error(e, "loops/a.yaml", "budget."))
    loops/a.yaml: budget.n: Input should be a valid integer, unable to parse string as an integer
    """
    err = e.errors()[0]
    field = prefix + ".".join(str(p) for p in err["loc"])
    unknown = err["type"] == "extra_forbidden"
    msg = "unknown field" if unknown else err["msg"]
    return ConfigError(
        f"{what}{msg}", field=field.rstrip(".") or None, source=source, choices=choices if unknown else None
    )


class Registry(Generic[T]):
    """Plugins of one kind, registered by their ``name``.

    Parameters
    ----------
    kind : str
        What the plugins are, for error messages ("strategy", "detector", ...).
    builtins : iterable of str
        Modules that register the built-in plugins, imported on the first lookup.

    Examples
    --------
    >>> reg = Registry("strategy")
    >>> @reg.register
    ... class Random:
    ...     name = "random"
    ...     def __init__(self, n: int = 1) -> None:
    ...         self.n = n
    >>> reg.names()
    ['random']
    >>> reg.bind("random", {"n": "3"})
    {'n': 3}
    """

    def __init__(self, kind: str, builtins: Iterable[str] = ()) -> None:
        self.kind = kind
        self.builtins = tuple(builtins)
        self._classes: dict[str, type[T]] = {}
        self._loaded = not self.builtins

    def register(self, cls: type[T]) -> type[T]:
        """Add ``cls`` under ``cls.name`` (a class decorator); a second class with the same
        name is an error."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{cls.__qualname__} has no string `name`", field="name")
        if name in self._classes and self._classes[name] is not cls:
            raise RegistryError(
                f"duplicate {self.kind} name {name!r}: already taken by {self._classes[name].__qualname__}"
            )
        self._classes[name] = cls
        return cls

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtins:
            importlib.import_module(module)
        for ep in entry_points(group=PLUGIN_GROUP):
            importlib.import_module(ep.value)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._classes)

    def get(self, name: str, *, field: str | None = None, source: str | None = None) -> type[T]:
        """The class registered as ``name``; an unknown name lists the known ones."""
        self._load()
        if name not in self._classes:
            raise RegistryError(
                f"unknown {self.kind} {name!r}", field=field, source=source, choices=self.names()
            )
        return self._classes[name]

    def bind(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        field: str | None = None,
        source: str | None = None,
        provided: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Check ``params`` against the constructor of ``name``; return them coerced.

        Parameters
        ----------
        name : str
            The plugin.
        params : dict, optional
            Its config section without ``name``.
        field : str, optional
            The config field of the section (``strategy``), for messages.
        source : str, optional
            The config file, for messages.
        provided : iterable of str
            Constructor arguments the caller supplies (not settable from config).

        Raises
        ------
        ConfigError
            An unknown argument, a missing one or a value of the wrong type, naming the
            file and the field (``loops/x.yaml: strategy.shortlst: unknown field``).
        """
        model = _params_model(
            self.get(name, field=f"{field}.name" if field else None, source=source), set(provided)
        )
        prefix = f"{field}." if field else ""
        try:
            bound = model.model_validate(params or {})
        except ValidationError as e:
            raise config_error(
                e, source, prefix, f"bad parameters for {self.kind} {name!r}: ", sorted(model.model_fields)
            ) from e
        return {k: getattr(bound, k) for k in (params or {})}

    def create(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        field: str | None = None,
        source: str | None = None,
        **provided: Any,
    ) -> T:
        """Instantiate ``name`` with ``params`` (checked by :meth:`bind`) and ``provided``."""
        args = self.bind(name, params, field=field, source=source, provided=provided)
        return self.get(name)(**args, **provided)


def _params_model(cls: type, provided: set[str]) -> Any:
    """A pydantic model of the constructor's parameters (those the config may set)."""
    init = cls.__init__  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(init)
    except (NameError, TypeError):
        hints = {}
    fields: dict[str, Any] = {}
    for p in inspect.signature(init).parameters.values():
        if p.name == "self" or p.name in provided or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Params", __config__=config, **fields)
