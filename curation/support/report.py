"""The sweep report: one self-contained HTML file (plots inlined as base64 PNG, no scripts).

Plots: issue counts, the worst examples, label shares against the previous sweep, and
drift over time (p-values and effect sizes). Tables: the gates, the drift tests, the worst
examples with their texts, validation failures per check, the broken rows, the duplicate
texts and the flagged rows of every detector (a near-duplicate with its partner's id and
text). Long texts are cut at a word boundary; the whole text is in the cell's tooltip and
in a ``<details>`` element. The pieces shared with the round report (``png``, ``fmt``,
``text_cell``, ``html_env``) live here.
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
from markupsafe import Markup, escape

ROWS_SHOWN = 25
#: Columns whose values are texts (cut short, whole on hover and in a details element).
TEXT_COLUMNS = ("text", "partner_text", "eval_text", "pool_text")
#: Columns of sentences, kept wide enough to read.
WIDE_COLUMNS = ("reason", "status", "verdict", "curation_reason")
#: Characters of a text shown before it is cut; the tooltip holds at most TOOLTIP of them.
TEXT_SHOWN, TOOLTIP, TEXT_MAX = 120, 1000, 20_000

#: The CSS both reports share.
STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
td.n,th{white-space:nowrap}
th{background:#f3f3f3} td.n{text-align:right} img{max-width:100%;border:1px solid #eee}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem} .muted{color:#777}
details.text summary{cursor:pointer} details.text[open] summary{color:#777}
details.text div{white-space:pre-wrap;max-width:60ch;margin-top:.3rem}
td.t{min-width:28ch} td.w{min-width:32ch} figcaption{font-size:.85rem;color:#444}"""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>curation sweep {{ s.sweep }}: {{ s.dataset }}</title>
<style>
{{ style }}
.verdict{font-size:1.3rem;font-weight:bold;padding:.4rem .8rem;display:inline-block}
.passed{background:#d9f2d9} .failed{background:#f8d7da}
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
{% for title, png, caption in plots %}<figure><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
<figcaption id="caption-{{ loop.index }}">{{ caption or title }}</figcaption></figure>
{% endfor %}</div>

<h2>Worst examples</h2>
{% if worst %}{{ table(worst, "worst") }}{% else %}<p>None.</p>{% endif %}
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
<tbody>{% for r in rows %}<tr>{% for k, v in r.items() %}<td{% if v is number %} class="n"{% elif k in text_columns %} class="t"{% elif k in wide_columns %} class="w"{% endif %}>{{ cell(k, v) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>"""


def fmt(v: Any) -> str:
    """A table cell's value as text: ``-`` for none, floats to 4 places (small ones in 3 digits).

    Examples
    --------
    >>> fmt(None), fmt(0.123456), fmt(0.00001234), fmt({"a": 1})
    ('-', '0.1235', '1.23e-05', 'a: 1')
    """
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items()) or "-"
    return str(v)


def short_text(text: str, limit: int = TEXT_SHOWN) -> str:
    """``text`` on one line, cut at a word boundary before ``limit`` characters (with ``…``).

    Examples
    --------
    >>> short_text("Why was my card\\n declined   at the shop?", 20)
    'Why was my card…'
    >>> short_text("short")
    'short'
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:.") + "…"


def text_cell(text: str | None, limit: int = TEXT_SHOWN) -> Markup:
    """A text for an HTML cell: short ones whole; long ones cut (:func:`short_text`), the
    whole text in the tooltip (its first ``TOOLTIP`` characters) and in a ``<details>``.

    Examples
    --------
    >>> str(text_cell("<b>hi</b>"))
    '&lt;b&gt;hi&lt;/b&gt;'
    >>> str(text_cell("a b c d e f", 6))
    '<details class="text"><summary title="a b c d e f">a b c…</summary><div>a b c d e f</div></details>'
    """
    if text is None:
        return Markup("-")
    if len(text) <= limit and "\n" not in text:
        return escape(text)
    whole = text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + f"… ({len(text) - TEXT_MAX} more characters)"
    return Markup('<details class="text"><summary title="{}">{}</summary><div>{}</div></details>').format(
        text[:TOOLTIP], short_text(text, limit), whole
    )


def cell(column: str, value: Any) -> Markup | str:
    """A table cell: a text column through :func:`text_cell`, anything else through :func:`fmt`."""
    if column in TEXT_COLUMNS and (value is None or isinstance(value, str)):
        return text_cell(value)
    return fmt(value)


def html_env() -> Environment:
    """The autoescaping Jinja environment both reports render with: ``fmt``, ``cell`` and
    ``table(rows, id)`` (a table of dicts, nothing for no rows) as globals."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals["fmt"] = fmt
    env.globals["cell"] = cell
    env.globals["style"] = Markup(STYLE)
    env.globals["text_columns"] = TEXT_COLUMNS
    env.globals["wide_columns"] = WIDE_COLUMNS
    table_t = env.from_string(TABLE)
    env.globals["table"] = lambda rows, id: Markup(table_t.render(rows=rows, id=id)) if rows else ""
    return env


def png(fig: plt.Figure) -> str:
    """The figure as base64 PNG (for a ``data:`` URI), without metadata; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
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
    return png(fig)


def worst_examples(issues: pl.DataFrame, n: int = 15) -> pl.DataFrame:
    """The highest-scored flags of each issue, about ``n`` in all, by issue then score."""
    per = max(n // max(issues["issue"].n_unique(), 1), 1)
    top = issues.sort("score", descending=True).group_by("issue", maintain_order=True).head(per)
    return top.sort("issue", "score", descending=[False, True])


def worst_examples_plot(issues: pl.DataFrame, n: int = 15) -> str:
    """Horizontal bars of the highest-scored flags of each issue (id, issue, the text's start)."""
    top = worst_examples(issues, n)
    text = top["text"].to_list() if "text" in top.columns else [""] * len(top)
    names = [f"{i} [{k}] {short_text(t or '', 36)}" for i, k, t in zip(top["id"], top["issue"], text)]
    fig, ax = plt.subplots(figsize=(5.5, 0.25 * max(len(top), 4) + 1))
    ax.barh(names, top["score"].to_list(), color="#4f81bd")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (higher is worse)")
    ax.set_title("Worst examples of each issue")
    ax.tick_params(axis="y", labelsize=7)
    return png(fig)


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
    return png(fig)


#: The effect size of each drift test (by the start of its ``test``), as the drift plot and
#: its caption name it.
EFFECT = {
    "chi-square": "TV distance",
    "kNN pockets": "pocket share",
    "domain classifier": "ROC AUC",
    "MMD": "MMD²",
    "KS per dimension": "KS statistic",
    "text descriptors": "descriptor distance",
}


def effect(test: str) -> str:
    """The name of a drift test's effect size.

    Examples
    --------
    >>> effect("domain classifier ROC AUC (5-fold ridge, 200 permutations)")
    'ROC AUC'
    """
    return next((name for start, name in EFFECT.items() if test.startswith(start)), "effect size")


def drift_over_time_plot(history: list[dict[str, Any]], drift: list[dict[str, Any]]) -> str:
    """Per sweep, each drift test's p-value (log scale, left) and its effect size (right: the
    label shares' total variation distance, the embedding test's effect size, the text
    descriptors' largest distance), each against its threshold (``drift``: this sweep's
    tests, for the thresholds and the effect sizes' names)."""
    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(7.5, 3.2))
    ax.set_yscale("log")
    limits = {d["name"]: d for d in drift}
    for i, name in enumerate(("label", "embedding", "text")):
        rows = [h for h in history if f"{name}_drift_p_value" in h]
        if not rows:
            continue
        colour = f"C{i}"
        x = [h["sweep"] for h in rows]
        ax.plot(
            x, [max(h[f"{name}_drift_p_value"], 1e-300) for h in rows], marker="o", color=colour, label=name
        )
        d = [h[f"{name}_drift_distance"] for h in rows]
        unit = effect(limits[name]["test"]) if name in limits else "effect size"
        ax_d.plot(x, d, marker="o", color=colour, label=f"{name}: {unit}")
        ax_d.annotate(f"{d[-1]:.3f}", (x[-1], d[-1]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if name in limits:
            ax_d.axhline(limits[name]["min_distance"], color=colour, linestyle=":", linewidth=1)
    if drift:
        ax.axhline(drift[0]["alpha"], color="red", linestyle="--", label=f"threshold {drift[0]['alpha']:g}")
    else:
        ax.text(0.5, 0.5, "first sweep: nothing to compare with", ha="center", transform=ax.transAxes)
    for a, title in ((ax, "p-value"), (ax_d, "effect size (dotted: minimum)")):
        a.set_xlabel("sweep")
        a.set_xticks([h["sweep"] for h in history])
        a.set_title(title, fontsize=9)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    ax_d.set_ylim(bottom=0)
    fig.suptitle("Drift over time")
    return png(fig)


def drift_caption(drift: list[dict[str, Any]]) -> str:
    """This sweep's drift tests in words: effect size and p-value against their thresholds.

    Examples
    --------
    >>> drift_caption([{"name": "label", "test": "chi-square homogeneity", "distance": 0.031,
    ...                 "min_distance": 0.02, "p_value": 1.2e-5, "alpha": 0.01, "drift": True}])
    'Drift over time. This sweep: label drift: TV distance 0.031 (minimum 0.02), p = 1.2e-05 (threshold 0.01): drift.'
    """
    if not drift:
        return "Drift over time: the first sweep has nothing to compare with."
    parts = [
        f"{d['name']} drift: {effect(d.get('test', ''))} {_number(d['distance'])} "
        f"(minimum {d['min_distance']:g}), p = {d['p_value']:.2g} (threshold {d['alpha']:g}): "
        + ("drift" if d["drift"] else "no drift")
        for d in drift
    ]
    return "Drift over time. This sweep: " + "; ".join(parts) + "."


def _number(x: float) -> str:
    """Three decimals, or two significant digits below 0.01 (an MMD² is about 0.001)."""
    return f"{x:.3f}" if abs(x) >= 0.01 or x == 0 else f"{x:.2g}"


def _rows(df: pl.DataFrame, n: int = ROWS_SHOWN) -> list[dict[str, Any]]:
    return df.head(n).to_dicts()


def _worst_columns(issues: pl.DataFrame) -> list[str]:
    first = ["issue", "id", "score", "text", "given_label", "suggested_label", "partner", "partner_text"]
    return [c for c in first if c in issues.columns] + [
        c for c in issues.columns if c not in first and c != "rank"
    ]


def filled(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` without its all-null columns (another detector's column on this detector's rows)."""
    return df.select([c for c in df.columns if df[c].null_count() < len(df)]) if len(df) else df


def _sections(tables: dict[str, pl.DataFrame]) -> list[tuple[str, list[dict[str, Any]], int, str]]:
    """The report's tables: title, first rows, row count, element id."""
    q = tables["quarantine"]
    q = q.select([c for c in q.columns if not c.startswith("curation_") or c == "curation_reason"])
    sections = [
        ("Broken rows", _rows(q), len(q), "broken"),
        ("Duplicate texts", _rows(tables["duplicates"]), len(tables["duplicates"]), "duplicates"),
    ]
    if "leaks" in tables:
        leaks = tables["leaks"]
        sections.append(
            (
                "Leaky splits: held-out rows that nearly repeat a dataset row",
                _rows(leaks),
                len(leaks),
                "leaks",
            )
        )
    issues = tables["issues"]
    for name in sorted(issues["issue"].unique().to_list()):
        part = filled(issues.filter(pl.col("issue") == name).sort("rank"))
        title = "Suspected label errors" if name == "label" else f"Flagged: {name}"
        sections.append((title, _rows(part), len(part), f"issues-{name}"))
    return sections


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
        ``quarantine``, ``duplicates`` and ``issues`` (with ``text``; a near-duplicate with
        ``partner`` and ``partner_text``), and ``leaks`` when the sweep had a held-out set.
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
    issues = tables["issues"]
    plots = [
        ("Issue counts", issue_counts_plot(summary), None),
        ("Worst examples", worst_examples_plot(issues), None),
        ("Label shares", label_shift_plot(counts, before), None),
        ("Drift over time", drift_over_time_plot(history, summary["drift"]), drift_caption(summary["drift"])),
    ]
    keys: tuple[str, ...] = (
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
    if summary.get("eval_rows") is not None:  # a held-out set: leaky splits
        keys += ("eval_rows", "leaked_rows", "leak_pairs")
    summary_rows = [{"figure": k, "value": summary[k]} for k in keys]
    summary_rows += [
        {"figure": f"cross-validated accuracy ({m['name']})", "value": m["accuracy"]}
        for m in summary["models"]
    ]
    checks = [{"check": k, "rows": v} for k, v in summary["by_check"].items()] or [{"check": "-", "rows": 0}]
    sections = _sections(tables)
    worst = _rows(filled(worst_examples(issues).select(_worst_columns(issues))), 100) if len(issues) else []
    return (
        html_env()
        .from_string(TEMPLATE)
        .render(
            s=summary, summary_rows=summary_rows, plots=plots, checks=checks, sections=sections, worst=worst
        )
    )
