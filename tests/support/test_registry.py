from typing import ClassVar

import pytest

from curation.connectors.base import ANNOTATORS
from curation.errors import ConfigError, RegistryError
from curation.issues.base import DETECTORS
from curation.strategies.base import STRATEGIES
from curation.support.registry import Registry


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(RegistryError) as e:
        STRATEGIES.get("nope", field="strategy.name")
    msg = str(e.value)
    assert "strategy.name" in msg and "'nope'" in msg
    for name in STRATEGIES.names():
        assert name in msg
    assert e.value.choices == STRATEGIES.names()


def test_duplicate_name_is_an_error() -> None:
    reg: Registry[object] = Registry("thing")

    class A:
        name: ClassVar[str] = "a"

    class B:
        name: ClassVar[str] = "a"

    reg.register(A)
    reg.register(A)  # the same class twice is harmless
    with pytest.raises(RegistryError, match="duplicate thing name 'a'"):
        reg.register(B)


def test_bad_parameters_name_the_plugin() -> None:
    with pytest.raises(ConfigError, match="bad parameters for strategy 'random'"):
        STRATEGIES.create("random", {"nonsense": 1})


def test_builtin_plugins_are_registered() -> None:
    assert {"random", "kcenter"} <= set(STRATEGIES.names())
    assert "label" in DETECTORS.names()
    assert {"oracle", "files"} <= set(ANNOTATORS.names())
