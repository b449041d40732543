"""A data-quality sweep: validation, duplicates, label issues, outliers, drift; a report and gates.

A sweep is steps 1-3 of a round (validate, embed, find issues) with no selection, plus
drift against the previous sweep of the same history folder. Each sweep writes an
immutable folder ``<history>/sweep-NNNN/`` holding:

- ``summary.json``: the figures, the drift tests and the gates (what the webhook gets);
- ``report.html``: a self-contained report (plots inlined as PNG);
- ``quarantine.parquet``, ``duplicates.parquet``, ``issues.parquet``: the flagged rows;
- ``leaks.parquet`` (with an ``eval_dataset``): leaky splits, the held-out rows that nearly
  repeat a dataset row (:func:`curation.find_leaks`), with both texts;
- ``state/label_counts.json``, ``state/embeddings.npy``, ``state/texts.parquet``: what the
  next sweep's drift tests compare against (a seeded sample of at most ``sample`` rows: their
  vectors, float32 (half precision moves near-constant dimensions enough for the KS test to
  see it), and their texts).

``<history>/history.jsonl`` gets one line per sweep (the drift-over-time plot reads it).
Sweeps are numbered and never rewritten, so the folder is the versioned history; track
it with git or ``dvc add`` to keep it elsewhere too.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curation.config import Columns, EmbedConfig, IssuesConfig, LoopConfig
from curation.errors import ConfigError, ConnectorError, GateError
from curation.load import bind_plugins, load_loop
from curation.orchestration.adapters import leak_pairs, step_embed, step_issues, step_validate
from curation.orchestration.schedule import run_lock
from curation.orchestration.state import label_choices
from curation.steps.drift import (
    DEFAULT_EMBEDDING_TEST,
    DriftTest,
    EmbeddingTest,
    embedding_test,
    label_drift,
    text_drift,
)
from curation.steps.validate import RESERVED, load_schema
from curation.support.data import read_table, require_columns, write_parquet
from curation.support.display import result_html
from curation.support.progress import LogReporter, Reporter
from curation.support.redact import redact_text, redact_url
from curation.support.registry import config_error

log = logging.getLogger(__name__)
KEY = f"{RESERVED}key"


class Gates(BaseModel):
    """Thresholds whose breach makes a sweep fail (``None`` turns a gate off).

    Attributes
    ----------
    max_invalid_fraction : float or None
        Largest share of rows validation may quarantine.
    max_issue_fraction : float or None
        Largest share of labeled rows the detectors may flag.
    max_duplicate_fraction : float or None
        Largest share of rows that may repeat another row's text.
    alpha : float
        Significance threshold of the drift tests.
    label_min_distance : float
        Smallest total variation distance of the label shares that counts as drift.
    embedding_test : {"knn", "mmd", "classifier", "ks"}
        The embedding drift test (``curation.steps.drift.EMBEDDING_TESTS``): kNN pockets
        (default, the best in ``benchmarks/drift.py``), MMD, the domain classifier, or KS per
        dimension.
    embedding_min_distance : float or None
        Smallest effect size that counts as embedding drift, in the test's unit (``None``:
        the test's own: pocket share 0.005, ROC AUC 0.55, MMD² 0, KS distance 0.1).
    text_min_distance : float
        Smallest KS (length, out-of-vocabulary share) or TV (script) distance of the text
        descriptors that counts as text drift.
    drift : bool
        Whether drift breaches a gate (else it is only reported).
    max_label_issue_increase : float or None
        Largest relative rise of the share of labeled rows flagged as label errors since the
        previous sweep (0.25: a quarter more); a rise of under half a point never breaches it.
        On by default: shuffling 10% of BANKING77's labels raises the share by about two thirds.
    """

    model_config = ConfigDict(extra="forbid")
    max_invalid_fraction: float | None = Field(0.05, ge=0.0, le=1.0)
    max_issue_fraction: float | None = Field(None, ge=0.0, le=1.0)
    max_duplicate_fraction: float | None = Field(None, ge=0.0, le=1.0)
    alpha: float = Field(0.01, gt=0.0, lt=1.0)
    label_min_distance: float = Field(0.02, ge=0.0, le=1.0)
    embedding_test: EmbeddingTest = DEFAULT_EMBEDDING_TEST
    embedding_min_distance: float | None = Field(None, ge=0.0, le=1.0)
    text_min_distance: float = Field(0.1, ge=0.0, le=1.0)
    drift: bool = True
    max_label_issue_increase: float | None = Field(0.25, ge=0.0)


class SweepSettings(BaseModel):
    """What a sweep reads and how: the dataset, its contract, the history folder, and the
    same ``embed`` and ``issues`` sections (and defaults) as a loop file.

    Attributes
    ----------
    dataset : str
        A Parquet, CSV or JSON Lines file, folder or glob.
    schema_path : Path
        The Pandera contract (``schema`` when constructed).
    history : Path
        The sweep history folder (one per dataset).
    columns : Columns
        Names of the id, text and label columns.
    embed : EmbedConfig
        The embedding model (the cache makes repeated sweeps cheap).
    issues : IssuesConfig
        The detectors, recipe and folds.
    sample : int
        Rows (vectors and texts) kept for the next sweep's embedding and text drift tests.
    engine : {"local", "ray"}
        Where validation and embedding run.
    seed : int
        Seed of the cross-validation and of the sample.
    gates : Gates
        What fails the sweep.
    root : Path
        The folder the embedding cache is relative to.
    eval_dataset : str or None
        A held-out set (same columns): its rows that nearly repeat a row of the dataset
        (cosine similarity of the embeddings at least ``issues.leak_threshold``) are reported
        as leaky splits.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    dataset: str
    schema_path: Path = Field(alias="schema")
    history: Path
    columns: Columns = Field(default_factory=Columns)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    issues: IssuesConfig = Field(default_factory=IssuesConfig)
    sample: int = Field(2000, gt=0)
    engine: Literal["local", "ray"] = "local"
    seed: int = 0
    gates: Gates = Field(default_factory=Gates)
    root: Path = Path(".")
    eval_dataset: str | None = None

    def loop_config(self) -> LoopConfig:
        """The loop config the step functions take (no selection, no annotator)."""
        cfg = LoopConfig.model_validate(
            {
                "name": "sweep",
                "dataset": self.dataset,
                "schema": self.schema_path,
                "connector": "-",
                "columns": self.columns,
                "embed": self.embed,
                "issues": self.issues.model_copy(update={"seed": self.seed}),
                "validate": {"max_invalid_fraction": 1.0},
                "engine": self.engine,
                "seed": self.seed,
                "root": self.root,
            }
        )
        bind_plugins(cfg)
        return cfg


def sweep_settings(
    dataset: str | None,
    schema: Path | None,
    history: Path | None = None,
    *,
    loop: Path | None = None,
    detectors: list[str] | None = None,
    gates: dict[str, Any] | None = None,
    **options: Any,
) -> SweepSettings:
    """The settings of ``curation sweep``: options laid over a loop file's settings (``loop``:
    its dataset, contract, columns, ``embed`` and ``issues``) or the config models' defaults.

    ``history`` defaults to ``sweeps/NAME`` (NAME the loop's name, or the dataset's file stem);
    ``detectors`` names the issue detectors; the options ``id``, ``text``, ``label`` name the
    columns, ``max_seq_length`` the embedding truncation, ``folds`` and ``recipe`` the issue
    step; every other option is a field of :class:`SweepSettings`.

    Examples
    --------
    >>> sweep_settings("data/x.parquet", Path("schemas/x.yaml"), folds=3).issues.folds
    3
    """
    base = _loop_base(loop) if loop is not None else {"columns": {}, "issues": {}, "embed": {}}
    options = {k: v for k, v in options.items() if v is not None}
    base["columns"].update({k: options.pop(k) for k in ("id", "text", "label") if k in options})
    base["issues"].update({k: options.pop(k) for k in ("folds", "recipe") if k in options})
    if detectors:
        base["issues"]["detectors"] = [{"name": d} for d in detectors]
    if "max_seq_length" in options:
        base["embed"]["max_seq_length"] = options.pop("max_seq_length")
    base.update({k: v for k, v in {"dataset": dataset, "schema": schema, "history": history}.items() if v})
    if "dataset" not in base or "schema" not in base:
        raise ConfigError(
            "give DATA and --schema, or --loop LOOP_FILE (its dataset and contract)",
            field="dataset" if "dataset" not in base else "schema",
        )
    name = base.pop("name", None) or Path(str(base["dataset"]).rstrip("/*")).stem or "dataset"
    base.setdefault("history", Path("sweeps") / name)
    gates = {k: v for k, v in (gates or {}).items() if v is not None}
    try:
        return SweepSettings.model_validate({**base, "gates": gates, **options})
    except ValidationError as e:
        raise config_error(e) from e


def _loop_base(loop: Path) -> dict[str, Any]:
    """What a sweep takes from a loop file: the same data, contract, columns and settings."""
    cfg = load_loop(loop)
    return {
        "name": cfg.name,
        "dataset": str(cfg.path(cfg.dataset)),
        "schema": cfg.path(cfg.schema_path),
        "columns": cfg.columns.model_dump(),
        "embed": cfg.embed.model_dump(mode="json"),
        "issues": cfg.issues.model_dump(mode="json"),
        "root": cfg.root,
        "seed": cfg.seed,
        "history": cfg.root / "sweeps" / cfg.name,
        "eval_dataset": str(cfg.path(cfg.eval_dataset)) if cfg.eval_dataset is not None else None,
    }


@dataclass
class SweepResult:
    """What a sweep found and where it wrote it."""

    summary: dict[str, Any]
    folder: Path
    tables: dict[str, pl.DataFrame]

    @property
    def breached(self) -> list[dict[str, Any]]:
        """The gates this sweep breached (empty when it passed)."""
        return [g for g in self.summary["gates"] if g["breached"]]

    def _repr_html_(self) -> str:
        facts = {k: v for k, v in self.summary.items() if not isinstance(v, dict | list)}
        facts["breached"] = [g["gate"] for g in self.breached] or "none"
        return result_html(f"sweep ({self.folder})", facts, self.tables)


def duplicate_texts(df: pl.DataFrame, columns: Columns) -> pl.DataFrame:
    """Rows whose text (case and surrounding space aside) another row also has.

    Returns
    -------
    polars.DataFrame
        ``id``, ``text``, ``label``, ``group`` (a number per distinct text) and ``size``
        (rows sharing it), grouped together.

    Examples
    --------
    >>> df = pl.DataFrame({"id": [1, 2, 3], "text": ["Hi ", "hi", "yo"], "label": ["a", "b", "a"]})
    >>> duplicate_texts(df, Columns())["id"].to_list()
    ['1', '2']
    """
    c = columns
    key = pl.col(c.text).cast(pl.String).str.strip_chars().str.to_lowercase()
    d = (
        df.filter(pl.col(c.text).is_not_null())
        .with_columns(key.alias(KEY))
        .filter(pl.col(KEY).is_duplicated())
    )
    d = d.with_columns(
        pl.col(KEY).rank("dense").cast(pl.Int64).alias("group"),
        pl.len().over(KEY).cast(pl.Int64).alias("size"),
    )
    return d.sort("group", c.id).select(
        pl.col(c.id).cast(pl.String).alias("id"),
        pl.col(c.text).cast(pl.String).alias("text"),
        pl.col(c.label).cast(pl.String).alias("label"),
        "group",
        "size",
    )


def detect(
    cfg: LoopConfig, valid: pl.DataFrame, X: np.ndarray, rep: Reporter
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Run the detectors on the valid rows (the loop's issue step); add each row's text (and
    a near-duplicate's partner's, as ``partner_text``)."""
    c = cfg.columns
    labeled = valid.filter(pl.col(c.label).is_not_null())
    classes = label_choices(cfg, load_schema(cfg.path(cfg.schema_path)), labeled)
    issues, report = step_issues(cfg, valid, X, classes, None, rep)
    text = valid.select(pl.col(c.id).cast(pl.String).alias("id"), pl.col(c.text).alias("text"))
    issues = issues.join(text, on="id", how="left", maintain_order="left")
    if "partner" in issues.columns:
        partner = text.rename({"id": "partner", "text": "partner_text"})
        issues = issues.join(partner, on="partner", how="left", maintain_order="left")
    return issues, report


def sweep_leaks(
    s: SweepSettings, cfg: LoopConfig, valid: pl.DataFrame, X: np.ndarray, rep: Reporter
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Leaky splits: the pairs of a held-out row (``s.eval_dataset``, rows with a text) and a
    valid row at least ``issues.leak_threshold`` alike, and the summary's ``eval_rows``,
    ``leaked_rows`` (held-out rows with a pair) and ``leak_pairs`` (``None`` without a set)."""
    if s.eval_dataset is None:
        return pl.DataFrame(), dict.fromkeys(("eval_rows", "leaked_rows", "leak_pairs"))
    c = cfg.columns
    ev = read_table(s.eval_dataset)
    require_columns(ev, {"id": c.id, "text": c.text, "label": c.label}, s.eval_dataset)
    ev = ev.filter(pl.col(c.text).is_not_null() & (pl.col(c.text).cast(pl.String).str.strip_chars() != ""))
    ev_X = step_embed(cfg, ev, rep, what="embed held-out")
    rep.start("leaks", None)
    leaks = leak_pairs(ev, ev_X, valid, X, c, s.issues.leak_threshold)
    leaked = leaks["eval_id"].n_unique()
    rep.finish(f"leaks: {leaked} of {len(ev)} held-out rows nearly repeat a dataset row")
    return leaks, {"eval_rows": len(ev), "leaked_rows": leaked, "leak_pairs": len(leaks)}


def previous(history: Path) -> tuple[int, Path | None]:
    """The number and folder of the last finished sweep (0 and None before the first)."""
    done = sorted(p.parent for p in history.glob("sweep-*/summary.json"))
    if not done:
        return 0, None
    return int(done[-1].name.split("-")[1]), done[-1]


def read_history(history: Path) -> list[dict[str, Any]]:
    """Every sweep's line of ``history.jsonl``, oldest first."""
    path = history / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def drift_tests(
    prev: Path | None,
    counts: dict[str, int],
    sample: np.ndarray,
    texts: list[str],
    gates: Gates,
    seed: int = 0,
) -> list[DriftTest]:
    """Label, embedding and text drift against the sweep in ``prev`` (none before the first;
    no text drift against a sweep that kept no texts)."""
    if prev is None:
        return []
    state = prev / "state"
    before = json.loads((state / "label_counts.json").read_text(encoding="utf-8"))
    tests = [label_drift(before, counts, gates.alpha, gates.label_min_distance)]
    old = np.load(state / "embeddings.npy").astype(np.float32)
    if old.shape[1:] == sample.shape[1:]:
        tests.append(
            embedding_test(gates.embedding_test, old, sample, gates.alpha, gates.embedding_min_distance, seed)
        )
    else:
        log.warning(
            "embedding sizes differ (%s vs %s): embedding drift not tested", old.shape[1:], sample.shape[1:]
        )
    if (state / "texts.parquet").exists():
        old_texts = pl.read_parquet(state / "texts.parquet")["text"].to_list()
        tests.append(text_drift(old_texts, texts, gates.alpha, gates.text_min_distance))
    else:
        log.warning("%s kept no texts: text drift not tested", prev.name)
    return tests


def sweep_summary(
    s: SweepSettings,
    n: int,
    started: datetime,
    validation: dict[str, Any],
    dups: pl.DataFrame,
    counts: dict[str, int],
    issues: pl.DataFrame,
    found: dict[str, Any],
    drift: list[DriftTest],
) -> dict[str, Any]:
    """The figures of sweep ``n`` (``summary.json``, the webhook's payload)."""
    labeled, rows = sum(counts.values()), validation["rows"]
    by_issue = {str(k): int(n) for k, n in issues.group_by("issue").len().sort("issue").iter_rows()}
    return {
        "sweep": n,
        "dataset": str(s.dataset),
        "schema": str(s.schema_path),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "rows": rows,
        "valid": validation["valid"],
        "quarantined": validation["quarantined"],
        "invalid_fraction": round(validation["quarantined"] / max(rows, 1), 6),
        "by_check": validation.get("by_check", {}),
        "duplicate_rows": len(dups),
        "duplicate_groups": int(dups["group"].n_unique()),
        "duplicate_fraction": round((len(dups) - dups["group"].n_unique()) / max(rows, 1), 6),
        "labeled": labeled,
        "classes": len(counts),
        "models": [{k: m[k] for k in ("name", "accuracy", "weight")} for m in found["members"]],
        "issues": by_issue,
        "issue_fraction": round(len(issues) / max(labeled, 1), 6),
        "label_issue_fraction": round(by_issue.get("label", 0) / max(labeled, 1), 6),
        "detectors": [d.name for d in s.issues.detectors],
        "drift": [t.to_dict() for t in drift],
    }


def gate_rows(
    summary: dict[str, Any], drift: list[DriftTest], gates: Gates, before: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each gate with its value, its threshold and whether it is breached (``before``: the
    previous sweep's summary, for the gates that compare with it)."""
    rows = []
    was = (before or {}).get("label_issue_fraction")
    if gates.max_label_issue_increase is not None and was:
        now = summary["label_issue_fraction"]
        rise = (now - was) / was
        rows.append(
            {
                "gate": "label_issue_increase",
                "value": round(rise, 6),
                "threshold": gates.max_label_issue_increase,
                "breached": rise > gates.max_label_issue_increase and now - was > 0.005,
            }
        )
    for name, value, limit in (
        ("invalid_fraction", summary["invalid_fraction"], gates.max_invalid_fraction),
        ("issue_fraction", summary["issue_fraction"], gates.max_issue_fraction),
        ("duplicate_fraction", summary["duplicate_fraction"], gates.max_duplicate_fraction),
    ):
        if limit is not None:
            rows.append({"gate": name, "value": value, "threshold": limit, "breached": value > limit})
    for t in drift:
        rows.append(
            {
                "gate": f"{t.name}_drift",
                "value": t.p_value,
                "threshold": t.alpha,
                "breached": gates.drift and t.drift,
            }
        )
    return rows


def run_sweep(s: SweepSettings, rep: Reporter | None = None) -> SweepResult:
    """Sweep a dataset: validate, find duplicates and issues, test drift, write the report.

    Parameters
    ----------
    s : SweepSettings
        The dataset, its contract, the history folder and the gates.
    rep : Reporter, optional
        Where progress goes.

    Returns
    -------
    SweepResult
        The summary (also in ``summary.json``), the sweep's folder and its tables. A
        breached gate does not raise here: see :attr:`SweepResult.breached`.

    Examples
    --------
    A second sweep of relabeled data (see ``docs/sweeps.md``)::

        r = run_sweep(sweep_settings("data.parquet", Path("schemas/x.yaml")))
        [g["gate"] for g in r.breached]      # ['label_drift']
    """
    from curation.support.report import render_report

    rep = rep or LogReporter()
    cfg = s.loop_config()
    c = cfg.columns
    started = datetime.now(UTC)
    df = read_table(s.dataset)
    require_columns(df, {"id": c.id, "text": c.text, "label": c.label}, str(s.dataset))
    v = step_validate(cfg, df, rep)
    dups = duplicate_texts(df, c)
    X = step_embed(cfg, v.valid, rep)
    issues, found = detect(cfg, v.valid, X, rep)
    leaks, leak_figures = sweep_leaks(s, cfg, v.valid, X, rep)

    counts = {
        str(k): int(n)
        for k, n in v.valid.filter(pl.col(c.label).is_not_null())
        .group_by(pl.col(c.label).cast(pl.String))
        .len()
        .iter_rows()
    }
    rng = np.random.default_rng(s.seed)
    rows = np.sort(rng.choice(len(X), min(len(X), s.sample), replace=False))
    sample, texts = X[rows], v.valid[c.text].cast(pl.String).gather(rows).to_list()
    n_prev, prev = previous(s.history)
    drift = drift_tests(prev, counts, sample, texts, s.gates, s.seed)

    summary = sweep_summary(s, n_prev + 1, started, v.report, dups, counts, issues, found, drift)
    summary.update(leak_figures, compared_with=prev.name if prev else None)
    before = json.loads((prev / "summary.json").read_text(encoding="utf-8")) if prev else None
    summary["gates"] = gate_rows(summary, drift, s.gates, before)
    summary["passed"] = not any(g["breached"] for g in summary["gates"])

    tables = {"quarantine": v.quarantine, "duplicates": dups, "issues": issues}
    if s.eval_dataset is not None:
        tables["leaks"] = leaks
    folder = write_sweep(s, summary, tables, counts, sample, texts)
    history = read_history(s.history)
    (folder / "report.html").write_text(
        render_report(summary, tables, history, counts, prev), encoding="utf-8"
    )
    log.info("sweep %d of %s: %s", summary["sweep"], s.dataset, "passed" if summary["passed"] else "FAILED")
    return SweepResult(summary, folder, tables)


def write_sweep(
    s: SweepSettings,
    summary: dict[str, Any],
    tables: dict[str, pl.DataFrame],
    counts: dict[str, int],
    sample: np.ndarray,
    texts: list[str],
) -> Path:
    """Write the sweep's folder (via a temporary name, renamed in) and its history line."""
    folder = s.history / f"sweep-{summary['sweep']:04d}"
    tmp = s.history / f".{folder.name}.tmp"
    (tmp / "state").mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_parquet(table, tmp / f"{name}.parquet")
    (tmp / "state" / "label_counts.json").write_text(json.dumps(counts, sort_keys=True), encoding="utf-8")
    np.save(tmp / "state" / "embeddings.npy", sample.astype(np.float32))
    write_parquet(pl.DataFrame({"text": texts}, schema={"text": pl.String}), tmp / "state" / "texts.parquet")
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(folder)
    line = {
        k: summary[k]
        for k in ("sweep", "started", "rows", "quarantined", "duplicate_rows", "issues", "passed")
    }
    line.update(
        {
            f"{t['name']}_drift_{k}": t[k]
            for t in summary["drift"]
            for k in ("statistic", "p_value", "distance")
        }
    )
    with open(s.history / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=str) + "\n")
    return folder


def one_line(summary: dict[str, Any]) -> str:
    """The sweep in one line (the webhook's ``text``)."""
    issues = ", ".join(f"{n} {k}" for k, n in summary["issues"].items()) or "no issues"
    drift = (
        ", ".join(
            f"{d['name']} drift {'YES' if d['drift'] else 'no'} (p={d['p_value']:.2g})"
            for d in summary["drift"]
        )
        or "no earlier sweep"
    )
    if summary.get("leaked_rows") is not None:
        drift += f"; {summary['leaked_rows']} of {summary['eval_rows']} held-out rows leak"
    bad = [g["gate"] for g in summary["gates"] if g["breached"]]
    verdict = f"FAILED: {', '.join(bad)}" if bad else "passed"
    return (
        f"curation sweep {summary['sweep']} of {summary['dataset']}: {verdict}; "
        f"{summary['rows']} rows, {summary['quarantined']} broken, "
        f"{summary['duplicate_rows']} duplicate texts, {issues}; {drift}"
    )


def sweep_once(
    s: SweepSettings,
    rep: Reporter | None = None,
    *,
    webhook: str | None = None,
    show: Callable[[SweepResult], None] | None = None,
) -> SweepResult:
    """One sweep under the history's run lock; post the summary; raise on a breached gate.

    Raises
    ------
    BusyError
        Another sweep of the same history is running.
    GateError
        A gate is breached (after the report, ``show`` and the webhook).
    """
    with run_lock(s.history / ".sweep.lock"):
        result = run_sweep(s, rep)
    if show is not None:
        show(result)
    if webhook:
        post_webhook(webhook, result.summary)
    if result.breached:
        raise GateError(
            f"{result.folder.name}: sweep gates breached: "
            + "; ".join(
                f"{g['gate']} = {g['value']:.4g} (threshold {g['threshold']:g})" for g in result.breached
            ),
            result.breached,
        )
    return result


def post_webhook(url: str, summary: dict[str, Any], timeout: float = 10.0) -> int:
    """POST the summary as JSON (``text`` is one line, for chat webhooks); return the HTTP status.

    Raises
    ------
    ConnectorError
        The URL did not answer with a 2xx status.
    """
    body = json.dumps({"text": one_line(summary), "summary": summary}, default=str).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except (urllib.error.URLError, OSError) as e:
        raise ConnectorError(
            f"webhook {redact_url(url, path=True)} did not accept the sweep summary "
            f"({redact_text(str(e))}); check the URL, or drop --webhook"
        ) from e


__all__ = [
    "Gates",
    "SweepResult",
    "SweepSettings",
    "duplicate_texts",
    "one_line",
    "post_webhook",
    "read_history",
    "run_sweep",
    "sweep_once",
    "sweep_settings",
]
