"""How result objects show in a notebook: their figures and tables as HTML (``_repr_html_``)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import polars as pl

#: Rows of each table a result shows (the objects hold them all).
HEAD = 5


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, Mapping | list):
        return html.escape(json.dumps(v, default=str)[:300])
    return html.escape("-" if v is None else str(v))


def facts_html(facts: Mapping[str, Any]) -> str:
    """A two-column HTML table of ``name: value`` (floats to 4 digits, nested values as JSON).

    Examples
    --------
    >>> facts_html({"valid": 9, "rate": 0.123456})
    '<table><tr><th style="text-align:left">valid</th><td>9</td></tr><tr><th style="text-align:left">rate</th><td>0.1235</td></tr></table>'
    """
    rows = "".join(
        f'<tr><th style="text-align:left">{html.escape(str(k))}</th><td>{_value(v)}</td></tr>'
        for k, v in facts.items()
    )
    return f"<table>{rows}</table>"


def result_html(title: str, facts: Mapping[str, Any], tables: Mapping[str, pl.DataFrame]) -> str:
    """A result as HTML: a title, its figures, and the first rows of each table (shape given).

    Examples
    --------
    >>> out = result_html("round 1", {"valid": 2}, {"issues": pl.DataFrame({"id": [1, 2]})})
    >>> "<h4>round 1</h4>" in out and "issues</b> (2 rows" in out
    True
    """
    parts = [f"<h4>{html.escape(title)}</h4>", facts_html(facts)]
    opened = False  # the first table with rows is shown open, the others folded
    for name, t in tables.items():
        show = " open" if len(t) and not opened else ""
        opened = opened or bool(show)
        parts.append(
            f"<details{show}><summary><b>{html.escape(name)}</b> ({len(t)} rows, {t.width} columns)"
            f"</summary>{t.head(HEAD)._repr_html_()}</details>"
        )
    return "<div>" + "".join(parts) + "</div>"
