"""The sweep report: one self-contained HTML file (plots inlined as base64 PNG, no scripts).

Plots: issue counts, the worst examples, label shares against the previous sweep, and
drift over time. Tables: the gates, the drift tests, validation failures per check, the
broken rows, the duplicate texts and the flagged rows of every detector.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl
from jinja2 import Environment, select_autoescape
from markupsafe import Markup

ROWS_SHOWN = 25

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>curation sweep {{ s.sweep }}: {{ s.dataset }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} .verdict{font-size:1.3rem;font-weight:bold;padding:.4rem .8rem;display:inline-block}
.passed{background:#d9f2d9} .failed{background:#f8d7da}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.n{text-align:right} img{max-width:100%;border:1px solid #eee}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem} .muted{color:#777}
</style></head><body>
<h1>Data-quality sweep {{ s.sweep }}</h1>
<p class="muted">{{ s.dataset }} &middot; contract {{ s.schema }} &middot; {{ s.started }}
&middot; {{ s.seconds }} s &middot; compared with {{ s.compared_with or "nothing (first sweep)" }}</p>
<p class="verdict {{ 'passed' if s.passed else 'failed' }}">{{ "PASSED" if s.passed else "FAILED" }}</p>

<h2>Summary</h2>
{{ table(summary_rows, "summary") }}
<h2>Gates</h2>
{{ table(s.gates, "gates") }}
<h2>Drift against the previous sweep</h2>
{% if s.drift %}{{ table(s.drift, "drift") }}{% else %}<p>No earlier sweep in this history.</p>{% endif %}

<h2>Plots</h2>
<div class="grid">
{% for title, png in plots %}<figure><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
<figcaption>{{ title }}</figcaption></figure>
{% endfor %}</div>

<h2>Validation failures by check</h2>
{{ table(checks, "checks") }}
{% for title, rows, total, id in sections %}
<h2>{{ title }} ({{ total }})</h2>
{% if rows %}{{ table(rows, id) }}{% if total > rows|length %}<p class="muted">first {{ rows|length }} of {{ total }}; all in the sweep folder</p>{% endif %}
{% else %}<p>None.</p>{% endif %}
{% endfor %}
</body></html>
"""

TABLE = """<table id="{{ id }}"><thead><tr>{% for k in rows[0] %}<th>{{ k }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in rows %}<tr>{% for v in r.values() %}<td{% if v is number %} class="n"{% endif %}>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>"""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items()) or "-"
    return str(v)


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def issue_counts_plot(summary: dict[str, Any]) -> str:
    """Bars: broken rows, duplicate texts and each detector's flags."""
    counts = {"broken rows": summary["quarantined"], "duplicate texts": summary["duplicate_rows"]}
    counts.update(summary["issues"])
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bars = ax.barh(list(counts), list(counts.values()), color="#c0504d")
    ax.bar_label(bars, padding=2)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title("Issue counts")
    return _png(fig)


def worst_examples_plot(issues: pl.DataFrame, n: int = 15) -> str:
    """Horizontal bars of the highest-scored flags of each issue (id, issue, the text's start)."""
    per = max(n // max(issues["issue"].n_unique(), 1), 1)
    top = issues.sort("score", descending=True).group_by("issue", maintain_order=True).head(per)
    top = top.sort("issue", "score", descending=[False, True])
    text = top["text"].to_list() if "text" in top.columns else [""] * len(top)
    names = [f"{i} [{k}] {(t or '')[:38]}" for i, k, t in zip(top["id"], top["issue"], text)]
    fig, ax = plt.subplots(figsize=(5.5, 0.25 * max(len(top), 4) + 1))
    ax.barh(names, top["score"].to_list(), color="#4f81bd")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (higher is worse)")
    ax.set_title("Worst examples of each issue")
    ax.tick_params(axis="y", labelsize=7)
    return _png(fig)


def label_shift_plot(counts: dict[str, int], before: dict[str, int] | None, n: int = 15) -> str:
    """Label shares now (and in the previous sweep): the ``n`` labels that moved most."""
    total = max(sum(counts.values()), 1)
    now = {k: v / total for k, v in counts.items()}
    old: dict[str, float] = {}
    if before:
        t0 = max(sum(before.values()), 1)
        old = {k: v / t0 for k, v in before.items()}
    keys = sorted(
        set(now) | set(old), key=lambda k: -abs(now.get(k, 0) - old.get(k, 0)) if old else -now.get(k, 0)
    )[:n]
    fig, ax = plt.subplots(figsize=(5.5, 0.25 * max(len(keys), 4) + 1))
    y = range(len(keys))
    ax.barh([i + 0.2 for i in y], [now.get(k, 0) for k in keys], height=0.4, label="this sweep")
    if old:
        ax.barh([i - 0.2 for i in y], [old.get(k, 0) for k in keys], height=0.4, label="previous")
    ax.set_yticks(list(y), keys, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of labeled rows")
    ax.set_title("Label shares" + (" (largest changes)" if old else ""))
    ax.legend(fontsize=7)
    return _png(fig)


def drift_over_time_plot(history: list[dict[str, Any]], alpha: float | None) -> str:
    """The drift tests' p-values per sweep (log scale) against the threshold."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.set_yscale("log")
    for name in ("label", "embedding"):
        pts = [
            (h["sweep"], max(h[f"{name}_drift_p_value"], 1e-300))
            for h in history
            if f"{name}_drift_p_value" in h
        ]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{name} drift p-value")
    if alpha is not None:
        ax.axhline(alpha, color="red", linestyle="--", label=f"threshold {alpha:g}")
    else:
        ax.text(0.5, 0.5, "first sweep: nothing to compare with", ha="center", transform=ax.transAxes)
    ax.set_xlabel("sweep")
    ax.set_xticks([h["sweep"] for h in history])
    ax.set_title("Drift over time")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png(fig)


def _rows(df: pl.DataFrame, n: int = ROWS_SHOWN) -> list[dict[str, Any]]:
    return df.head(n).to_dicts()


def render_report(
    summary: dict[str, Any],
    tables: dict[str, pl.DataFrame],
    history: list[dict[str, Any]],
    counts: dict[str, int],
    prev: Path | None = None,
) -> str:
    """The sweep's HTML report (self-contained).

    Parameters
    ----------
    summary : dict
        The sweep's ``summary.json``.
    tables : dict of str to polars.DataFrame
        ``quarantine``, ``duplicates`` and ``issues``.
    history : list of dict
        Every sweep's ``history.jsonl`` line, this one included.
    counts : dict of str to int
        Rows per label in this sweep.
    prev : Path, optional
        The previous sweep's folder (for its label counts).
    """
    before = None
    if prev is not None and (prev / "state" / "label_counts.json").exists():
        before = json.loads((prev / "state" / "label_counts.json").read_text(encoding="utf-8"))
    alpha = summary["drift"][0]["alpha"] if summary["drift"] else None
    plots = [
        ("Issue counts", issue_counts_plot(summary)),
        ("Worst examples", worst_examples_plot(tables["issues"])),
        ("Label shares", label_shift_plot(counts, before)),
        ("Drift over time", drift_over_time_plot(history, alpha)),
    ]
    keys = (
        "rows",
        "valid",
        "quarantined",
        "invalid_fraction",
        "duplicate_rows",
        "duplicate_groups",
        "labeled",
        "classes",
        "issues",
        "issue_fraction",
        "detectors",
    )
    summary_rows = [{"figure": k, "value": summary[k]} for k in keys]
    summary_rows += [
        {"figure": f"cross-validated accuracy ({m['name']})", "value": m["accuracy"]}
        for m in summary["models"]
    ]
    checks = [{"check": k, "rows": v} for k, v in summary["by_check"].items()] or [{"check": "-", "rows": 0}]
    q = tables["quarantine"]
    q = q.select([c for c in q.columns if not c.startswith("curation_") or c == "curation_reason"])
    sections = [
        ("Broken rows", _rows(q), len(q), "broken"),
        ("Duplicate texts", _rows(tables["duplicates"]), len(tables["duplicates"]), "duplicates"),
    ]
    issues = tables["issues"]
    for name in sorted(issues["issue"].unique().to_list()):
        part = issues.filter(pl.col("issue") == name).sort("rank")
        title = "Suspected label errors" if name == "label" else f"Flagged: {name}"
        sections.append((title, _rows(part), len(part), f"issues-{name}"))
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals["fmt"] = _fmt
    table_t = env.from_string(TABLE)
    env.globals["table"] = lambda rows, id: Markup(table_t.render(rows=rows, id=id)) if rows else ""
    return env.from_string(TEMPLATE).render(
        s=summary, summary_rows=summary_rows, plots=plots, checks=checks, sections=sections
    )
