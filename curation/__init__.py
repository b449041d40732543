"""curation: data-centric curation and active learning.

validate (Pandera) -> embed (sentence-transformers) -> find issues (cleanlab) ->
select (active learning) -> annotate (Label Studio) -> version (DVC, lakeFS or local).

The functions a notebook calls are here (imported on first use, so ``import curation`` is
cheap); see ``docs/architecture.md`` for where each lives.

Examples
--------
>>> import curation
>>> sorted(curation.__all__)[:3]
['LoopConfig', 'RoundResult', 'SweepSettings']
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_API: dict[str, str] = {
    "LoopConfig": "curation.config",
    "load_loop": "curation.load",
    "validate": "curation.steps.validate",
    "validate_source": "curation.steps.validate",
    "load_schema": "curation.steps.validate",
    "embed": "curation.steps.embed",
    "find_issues": "curation.issues.find",
    "find_issues_ray": "curation.issues.distributed",
    "find_leaks": "curation.issues.leaks",
    "select": "curation.strategies.select",
    "run_round": "curation.orchestration.round",
    "RoundResult": "curation.orchestration.round",
    "run_sweep": "curation.orchestration.sweep",
    "SweepSettings": "curation.orchestration.sweep",
    "simulate": "curation.orchestration.simulate",
    "read_table": "curation.support.data",
}

__all__ = [
    "LoopConfig",
    "RoundResult",
    "SweepSettings",
    "embed",
    "find_issues",
    "find_issues_ray",
    "find_leaks",
    "load_loop",
    "load_schema",
    "read_table",
    "run_round",
    "run_sweep",
    "select",
    "simulate",
    "validate",
    "validate_source",
]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'curation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
