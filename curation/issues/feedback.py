"""Reviewers' verdicts on flagged rows: the measured precision of the label-error flags."""

from __future__ import annotations

from typing import Any

import polars as pl

from curation.errors import DataError


def flag_precision(issues: pl.DataFrame, verdicts: pl.DataFrame, issue: str = "label") -> dict[str, Any]:
    """How many reviewed flags were real errors.

    A reviewed flag is *confirmed* when the reviewer's label differs from the label the row
    had when it was flagged. The newest verdict per id counts (by ``updated_at`` when the
    table has it); with a ``kind`` column only ``kind == "review"`` rows are verdicts.

    Parameters
    ----------
    issues : polars.DataFrame
        The issue table (``ISSUE_COLUMNS``); its ``rank`` splits the precision by rank.
    verdicts : polars.DataFrame
        ``id``, ``given_label`` (the label under review) and ``label`` (the verdict).
    issue : str
        Which issue's flags to measure.

    Returns
    -------
    dict
        ``reviewed``, ``confirmed``, ``precision`` (``None`` before any review) and
        ``precision_top100`` (among reviewed flags ranked in the top 100 now, or ``None``).

    Examples
    --------
    >>> v = pl.DataFrame({"id": ["1", "2"], "given_label": ["a", "a"], "label": ["b", "a"]})
    >>> flag_precision(pl.DataFrame({"id": [], "issue": [], "rank": []}), v)["precision"]
    0.5
    """
    missing = {"id", "given_label", "label"} - set(verdicts.columns)
    if missing:
        raise DataError(
            f"review verdicts need columns id, given_label, label; missing {sorted(missing)}: "
            "join the review tasks' given_label onto the pulled annotations"
        )
    v = verdicts
    if "kind" in v.columns:
        v = v.filter(pl.col("kind") == "review")
    if "updated_at" in v.columns:
        v = v.sort("updated_at")
    v = (
        v.filter(pl.col("label").is_not_null())
        .unique(subset=["id"], keep="last", maintain_order=True)
        .select(pl.col("id").cast(pl.String), (pl.col("label") != pl.col("given_label")).alias("confirmed"))
    )
    n, k = len(v), int(v["confirmed"].sum())
    ranks = issues.filter(pl.col("issue") == issue).select(pl.col("id").cast(pl.String), "rank")
    top = v.join(ranks, on="id", how="inner").filter(pl.col("rank") <= 100)
    return {
        "reviewed": n,
        "confirmed": k,
        "precision": k / n if n else None,
        "precision_top100": float(top["confirmed"].cast(pl.Float64).mean() or 0.0) if len(top) else None,  # type: ignore[arg-type]
    }
