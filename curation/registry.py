"""A name -> class registry shared by the plugin folders (issues, strategies, connectors)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from curation.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Plugins of one kind, registered by their ``name``.

    Parameters
    ----------
    kind : str
        What the plugins are, for error messages ("strategy", "detector", ...).

    Examples
    --------
    >>> reg = Registry("strategy")
    >>> @reg.register
    ... class Random:
    ...     name = "random"
    >>> reg.names()
    ['random']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Add ``cls`` under ``cls.name``; a second class with the same name is an error."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{cls.__qualname__} has no string `name`", field="name")
        if name in self._classes and self._classes[name] is not cls:
            raise RegistryError(
                f"duplicate {self.kind} name {name!r}: already taken by "
                f"{self._classes[name].__qualname__}"
            )
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str, *, field: str | None = None) -> type[T]:
        """The class registered as ``name``; an unknown name lists the known ones."""
        if name not in self._classes:
            raise RegistryError(
                f"unknown {self.kind} {name!r}", field=field, choices=self.names()
            )
        return self._classes[name]

    def create(self, name: str, params: dict[str, Any] | None = None, *, field: str | None = None) -> T:
        """Instantiate ``name`` with ``params`` (config maps one-to-one onto constructor arguments)."""
        cls = self.get(name, field=field)
        try:
            return cls(**(params or {}))
        except TypeError as e:
            raise RegistryError(f"bad parameters for {self.kind} {name!r}: {e}", field=field) from e
