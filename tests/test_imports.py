"""The public API a notebook user calls is pinned: a change to it is a deliberate one."""

from __future__ import annotations

import subprocess
import sys

import curation

PUBLIC = [
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


def test_the_public_api_is_pinned() -> None:
    assert sorted(curation.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in curation.__all__:
        obj = getattr(curation, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        curation.nothing_here  # noqa: B018
    except AttributeError as e:
        assert "nothing_here" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_import_curation_is_light() -> None:
    code = "import sys, curation; print(sorted(m for m in ('torch', 'sklearn', 'ray', 'polars') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
