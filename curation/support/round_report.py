"""The round report: one self-contained HTML page per round of a loop (plots inlined as PNG).

Sections: the round's figures; what validation quarantined and why; the suspected label
errors with their texts, given and suggested labels, and the reviewers' verdicts on flags;
the other flags (a near-duplicate with its partner); leaky splits (held-out rows that nearly
repeat a dataset row); what was selected and why, one reason
per row; the learning curve so far; a 2-D map of the embeddings (labeled, pool, selected,
flagged); and the confusion of given against suggested labels over the labeled rows.

The inputs are plain tables (:class:`RoundReport`), gathered from a round by
:func:`curation.orchestration.reporting.step_report`; nothing here reads a store or a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from markupsafe import Markup

from curation.support.report import filled, html_env, png

#: Rows each table shows at most (the whole tables are in the round's folder).
TABLE_ROWS = {
    "quarantine": 100,
    "label_issues": 100,
    "verdicts": 200,
    "other_issues": 50,
    "leaks": 100,
    "selection": 500,
}
#: The columns of the leaky-splits table the page shows.
LEAK_SHOWN = ("similarity", "eval_id", "eval_text", "pool_id", "pool_text", "in_train")
#: How each group of the embedding map is drawn: colour, marker, size; in drawing order.
GROUPS = {
    "pool": ("#b8b8b8", "o", 6),
    "labeled": ("#4f81bd", "o", 8),
    "flagged": ("#c0504d", "X", 28),
    "selected": ("#f39c12", "*", 60),
}
#: The confusion heatmap shows at most this many classes (those with the most disagreements).
CONFUSION_CLASSES = 30

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>curation {{ r.loop }}: round {{ r.round }}</title>
<style>
{{ style }}
body{max-width:1400px} section{margin-bottom:2rem} figure{margin:0} .wide img{max-width:760px}
</style></head><body>
<h1>{{ r.loop }}: round {{ r.round }}</h1>
<p class="muted">strategy {{ r.strategy }} &middot; dataset {{ r.dataset }}</p>

<section id="summary"><h2>The round in figures</h2>
{{ table(figures, "figures") }}</section>

<section id="quarantine"><h2>Quarantined rows ({{ r.quarantine|length }})</h2>
{% if r.quarantine|length %}<p>Rows that failed the contract; they stay out of the round until fixed.</p>
{{ table(reasons, "quarantine-reasons") }}{{ table(rows.quarantine, "quarantine") }}{{ more("quarantine") }}
{% else %}<p>None: every row passed the contract.</p>{% endif %}</section>

<section id="label-issues"><h2>Suspected label errors ({{ r.label_issues|length }})</h2>
{% if r.label_issues|length %}<p>Worst first. <em>suggested</em> is the out-of-sample prediction of the issue
step; <em>status</em> says whether a reviewer has seen the flag.</p>
{{ table(rows.label_issues, "label-issues") }}{{ more("label_issues") }}
{% else %}<p>None flagged this round.</p>{% endif %}
<h3>Reviewers' verdicts on flags ({{ r.verdicts|length }}{% if r.verdicts|length %}: {{ confirmed }} confirmed, precision {{ fmt(precision) }}{% endif %})</h3>
{% if r.verdicts|length %}{{ table(rows.verdicts, "verdicts") }}{{ more("verdicts") }}
{% else %}<p>No flag has been reviewed yet{% if review == "none" %} (set <code>review: decision</code> in the loop's strategy to send the flags worth it to review){% endif %}.</p>{% endif %}</section>

<section id="other-issues"><h2>Other flags ({{ r.other_issues|length }})</h2>
{% if r.other_issues|length %}{{ table(rows.other_issues, "other-issues") }}{{ more("other_issues") }}
{% else %}<p>None.</p>{% endif %}</section>

<section id="leaks"><h2>Leaky splits ({{ r.leaks|length }})</h2>
{% if r.leak_threshold is none %}<p>No held-out set (<code>eval_dataset</code>): nothing to compare.</p>
{% elif r.leaks|length %}<p>Pairs of a held-out row and a dataset row whose embeddings have a cosine similarity of at
least {{ r.leak_threshold }} (<code>issues.leak_threshold</code>): the held-out row nearly repeats a row the model may
learn from, so its accuracy measures memory. {{ leaked }} held-out rows leak; <em>accuracy_without_leaks</em> leaves
them out. <em>in_train</em>: the dataset row is a training row of this round's model.</p>
{{ table(rows.leaks, "leaks") }}{{ more("leaks") }}
{% else %}<p>None: no held-out row is that close to a dataset row.</p>{% endif %}</section>

<section id="selection"><h2>Selected for annotation ({{ r.selection|length }})</h2>
{% if r.selection|length %}<p>In priority order; <em>review</em> rows re-check a suspected label error,
<em>label</em> rows come from the pool. The reason is the strategy's, for that row.</p>
{{ table(rows.selection, "selection") }}{{ more("selection") }}
{% else %}<p>Nothing was selected (an empty pool).</p>{% endif %}</section>

<section id="curve"><h2>Learning curve</h2>
<figure class="wide"><img alt="Learning curve" src="data:image/png;base64,{{ plots.curve }}">
<figcaption>{{ captions.curve }}</figcaption></figure>
{{ table(rows.curve, "curve") }}</section>

<section id="map"><h2>Embedding map</h2>
<figure class="wide"><img alt="Embedding map" src="data:image/png;base64,{{ plots.map }}">
<figcaption>{{ captions.map }}</figcaption></figure></section>

<section id="confusion"><h2>Given against suggested labels</h2>
{% if plots.confusion %}<figure class="wide"><img alt="Confusion of given and suggested labels" src="data:image/png;base64,{{ plots.confusion }}">
<figcaption>{{ captions.confusion }}</figcaption></figure>
<h3>Most frequent disagreements</h3>
{% if pairs %}{{ table(pairs, "confused-pairs") }}{% else %}<p>None: the model agrees with every given label.</p>{% endif %}
{% else %}<p>{{ captions.confusion }}</p>{% endif %}</section>
</body></html>
"""


@dataclass
class RoundReport:
    """What one round's report shows.

    Attributes
    ----------
    loop, round, strategy, dataset
        Which round of which loop, and what it ran with.
    metrics : dict
        The round's figures (``curation run``'s table).
    quarantine : polars.DataFrame
        ``id``, ``text``, ``label``, ``reason``: the rows validation quarantined.
    label_issues : polars.DataFrame
        ``rank``, ``id``, ``text``, ``given_label``, ``suggested_label``, ``score``, ``status``.
    verdicts : polars.DataFrame
        ``id``, ``text``, ``flagged_label`` (the label under review), ``reviewer_label``,
        ``verdict``, ``round``: the reviewers' verdicts on flags.
    other_issues : polars.DataFrame
        ``issue``, ``rank``, ``id``, ``text``, ``score`` and the detectors' own columns
        (``partner``, ``partner_text``).
    selection : polars.DataFrame
        ``rank``, ``id``, ``kind``, ``text``, ``score``, ``suggested``, ``reason``.
    curve : polars.DataFrame
        ``round``, ``labels``, ``accuracy``: the committed rounds and this one.
    points : polars.DataFrame
        ``x``, ``y``, ``group`` (``labeled``, ``pool``, ``selected``, ``flagged``): the map.
    classes : list of str
        The label set.
    given, suggested : list of str
        Over the labeled rows, the given label and the issue step's suggestion (its
        out-of-sample prediction); ``suggested`` is ``None`` when there was no model.
    review : str
        The strategy's review mode (``decision``, ``fixed`` or ``none``; with ``none`` the
        report says how to turn review on).
    leaks : polars.DataFrame
        ``eval_id``, ``pool_id``, ``similarity``, ``eval_text``, ``pool_text``, ``in_train``:
        the leaky splits (see :func:`curation.issues.leaks.find_leaks`).
    leak_threshold : float or None
        Their similarity threshold; ``None`` without a held-out set.
    """

    loop: str
    round: int
    strategy: str
    dataset: str
    metrics: dict[str, Any]
    quarantine: pl.DataFrame
    label_issues: pl.DataFrame
    verdicts: pl.DataFrame
    other_issues: pl.DataFrame
    selection: pl.DataFrame
    curve: pl.DataFrame
    points: pl.DataFrame
    classes: list[str]
    given: list[str] = field(default_factory=list)
    suggested: list[str] | None = None
    review: str = "none"
    leaks: pl.DataFrame = field(default_factory=pl.DataFrame)
    leak_threshold: float | None = None


def confusion(given: list[str], suggested: list[str], classes: list[str]) -> np.ndarray:
    """Counts of (given, suggested) pairs: row = given label, column = suggested label.

    Examples
    --------
    >>> confusion(["a", "a", "b"], ["a", "b", "b"], ["a", "b"]).tolist()
    [[1, 1], [0, 1]]
    """
    index = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(m, ([index[g] for g in given], [index[s] for s in suggested]), 1)
    return m


def confused_pairs(m: np.ndarray, classes: list[str], n: int = 15) -> list[dict[str, Any]]:
    """The ``n`` most frequent (given, suggested) disagreements, with their share of the given class.

    Examples
    --------
    >>> confused_pairs(np.array([[8, 2], [0, 5]]), ["a", "b"])
    [{'given': 'a', 'suggested': 'b', 'rows': 2, 'share of given': 0.2}]
    """
    off = m.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    rows = []
    for g, s in zip(*np.unravel_index(order, m.shape)):
        if off[g, s] == 0:
            break
        share = round(float(off[g, s] / m[g].sum()), 4)
        rows.append(
            {"given": classes[g], "suggested": classes[s], "rows": int(off[g, s]), "share of given": share}
        )
    return rows


def confusion_plot(m: np.ndarray, classes: list[str]) -> tuple[str, list[str]]:
    """A heatmap of ``m`` (colour: share of the given class); at most ``CONFUSION_CLASSES``
    classes, those with the most disagreements. Returns the PNG and the classes shown."""
    keep: np.ndarray = np.arange(len(classes))
    if len(classes) > CONFUSION_CLASSES:
        off = m - np.diag(np.diag(m))
        keep = np.sort(np.argsort(-(off.sum(0) + off.sum(1)), kind="stable")[:CONFUSION_CLASSES])
    sub = m[np.ix_(keep, keep)]
    share = sub / np.maximum(m[keep].sum(1, keepdims=True), 1)
    names = [classes[i] for i in keep]
    size = 2.5 + 0.22 * len(keep)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(keep)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(keep)), names, fontsize=7)
    if len(keep) <= 12:
        for (i, j), v in np.ndenumerate(sub):
            if v:
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("suggested label (out-of-sample prediction)")
    ax.set_ylabel("given label")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the given label's rows")
    ax.set_title("Given vs suggested labels")
    return png(fig), names


def curve_plot(curve: pl.DataFrame) -> str:
    """Held-out accuracy against the number of labels, one point per round."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    pts = curve.filter(pl.col("accuracy").is_not_null())
    if len(pts):
        ax.plot(pts["labels"], pts["accuracy"], marker="o", color="#4f81bd")
        for r, x, y in pts.select("round", "labels", "accuracy").iter_rows():
            ax.annotate(f"round {r}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        acc = pts["accuracy"].to_numpy()
        ax.set_ylim(max(0.0, float(acc.min()) - 0.05), min(1.0, float(acc.max()) + 0.03) + 0.005)
    else:
        ax.text(
            0.5,
            0.5,
            "no held-out accuracy: set eval_dataset in the loop file",
            ha="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("labels")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Learning curve")
    ax.grid(alpha=0.3)
    return png(fig)


def map_plot(points: pl.DataFrame) -> str:
    """The embeddings' 2-D projection, one colour and marker per group, with a legend."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for group, (colour, marker, size) in GROUPS.items():
        part = points.filter(pl.col("group") == group)
        if len(part):
            edge = "black" if group == "selected" else "none"
            ax.scatter(
                part["x"],
                part["y"],
                s=size,
                c=colour,
                marker=marker,
                edgecolors=edge,
                linewidths=0.4,
                alpha=0.6 if group == "pool" else 0.9,
                label=f"{group} ({len(part)})",
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_title("Embedding map (PCA)")
    if len(points):
        ax.legend(fontsize=8, loc="best", markerscale=1.2)
    return png(fig)


def _rows(df: pl.DataFrame, name: str) -> list[dict[str, Any]]:
    return df.head(TABLE_ROWS[name]).to_dicts()


def _confusion_part(r: RoundReport) -> tuple[str | None, str, list[dict[str, Any]]]:
    if r.suggested is None or not r.given:
        return None, "No model this round (fewer than two labeled classes): no suggested labels yet.", []
    m = confusion(r.given, r.suggested, r.classes)
    image, shown = confusion_plot(m, r.classes)
    agree = float(np.trace(m) / max(m.sum(), 1))
    caption = (
        f"Over the {int(m.sum())} labeled rows, the suggested label agrees with the given one for "
        f"{agree:.1%}. Rows: given label; columns: the issue step's out-of-sample prediction"
        + (
            f"; the {len(shown)} classes of {len(r.classes)} with the most disagreements."
            if len(shown) < len(r.classes)
            else "."
        )
    )
    return image, caption, confused_pairs(m, r.classes)


def _map_caption(points: pl.DataFrame) -> str:
    counts = dict(points.group_by("group").len().iter_rows())
    shown = ", ".join(f"{counts.get(g, 0)} {g}" for g in ("labeled", "pool", "selected", "flagged"))
    return (
        f"{len(points)} rows ({shown}), projected on the first two principal components of the "
        "embeddings. Selected: picked this round (to label or to review); flagged: suspected "
        "label errors; a large sample of the other rows."
    )


def render_round_report(r: RoundReport) -> str:
    """The round's HTML report (self-contained: plots are inlined PNG, no scripts, no URLs).

    Parameters
    ----------
    r : RoundReport
        The round's tables.

    Returns
    -------
    str
        The page.

    Examples
    --------
    >>> empty = pl.DataFrame()
    >>> r = RoundReport(
    ...     "demo", 1, "hybrid", "data.parquet", {"labels": 3},
    ...     pl.DataFrame({"id": ["x"], "text": ["<b>"], "label": ["a"], "reason": ["text: str_length"]}),
    ...     empty, empty, empty, empty,
    ...     pl.DataFrame({"round": [1], "labels": [3], "accuracy": [0.5]}),
    ...     pl.DataFrame({"x": [0.0, 1.0], "y": [1.0, 0.0], "group": ["labeled", "pool"]}),
    ...     ["a", "b"], ["a", "b", "b"], ["a", "a", "b"],
    ... )
    >>> page = render_round_report(r)
    >>> "Quarantined rows (1)" in page, "&lt;b&gt;" in page, page.count("data:image/png;base64,")
    (True, True, 3)
    """
    confusion_png, confusion_caption, pairs = _confusion_part(r)
    verdicts = r.verdicts
    confirmed = int((verdicts["verdict"].str.starts_with("confirmed")).sum()) if len(verdicts) else 0
    reasons = r.quarantine.group_by("reason").len("rows").sort("rows", "reason", descending=[True, False])
    names = ("quarantine", "label_issues", "verdicts", "other_issues", "selection")
    tables = {name: getattr(r, name) for name in names}
    tables["leaks"] = r.leaks.select([c for c in LEAK_SHOWN if c in r.leaks.columns])
    rows = {name: _rows(filled(t), name) for name, t in tables.items()} | {"curve": r.curve.to_dicts()}
    accuracy = r.curve.filter(pl.col("accuracy").is_not_null())
    env = html_env()
    env.globals["more"] = lambda name: (
        Markup('<p class="muted">first {} of {}; all in the round\'s folder</p>').format(
            TABLE_ROWS[name], len(tables[name])
        )
        if len(tables[name]) > TABLE_ROWS[name]
        else ""
    )
    return env.from_string(TEMPLATE).render(
        r=r,
        figures=[{"figure": k, "value": v} for k, v in r.metrics.items() if k != "round"],
        reasons=reasons.to_dicts(),
        rows=rows,
        confirmed=confirmed,
        precision=confirmed / len(verdicts) if len(verdicts) else None,
        review=r.review,
        leaked=r.leaks["eval_id"].n_unique() if "eval_id" in r.leaks.columns else 0,
        pairs=pairs,
        plots={"curve": curve_plot(r.curve), "map": map_plot(r.points), "confusion": confusion_png},
        captions={
            "curve": f"Held-out accuracy of the round's classifier against the labels it was fitted on, "
            f"over {len(r.curve)} round(s)"
            + ("." if len(accuracy) else "; no held-out set (eval_dataset) to measure it."),
            "map": _map_caption(r.points),
            "confusion": confusion_caption,
        },
    )
