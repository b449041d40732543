"""Every registered plugin runs its extension point's contract suite: a new detector,
strategy, connector or version store without one fails here."""

from __future__ import annotations

from curation.connectors.base import ANNOTATORS, STORES
from curation.issues.base import DETECTORS
from curation.strategies.base import STRATEGIES
from tests.contracts import test_annotators, test_detectors, test_strategies, test_version_stores


def test_every_registered_detector_runs_the_detector_suite() -> None:
    assert sorted(test_detectors.DETECTORS_TESTED) == DETECTORS.names()


def test_every_registered_strategy_has_a_contract_class() -> None:
    tested = {c.name for c in test_strategies.StrategyContract.__subclasses__()}
    assert tested == set(STRATEGIES.names())


def test_every_registered_connector_runs_the_annotator_suite() -> None:
    assert sorted(test_annotators.ANNOTATORS_TESTED) == ANNOTATORS.names()


def test_every_registered_store_runs_the_version_store_suite() -> None:
    assert sorted(test_version_stores.STORES_TESTED) == STORES.names()


def test_a_plugin_registered_without_a_suite_is_caught() -> None:
    from typing import ClassVar

    from curation.issues.base import Detector

    class Unsuited(Detector):
        name: ClassVar[str] = "unsuited-for-this-test"

        def find(self, inputs):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    DETECTORS.register(Unsuited)
    try:
        assert sorted(test_detectors.DETECTORS_TESTED) != DETECTORS.names()
    finally:
        DETECTORS._classes.pop(Unsuited.name)
