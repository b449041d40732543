"""The loop's steps as file-to-file stages, so DVC can cache each one (``dvc.yaml``).

Each stage reads what the stage before it wrote and writes its own files into one folder
(``.curation/stages/<loop>/`` by default); the work itself is the loop's step functions
(:mod:`curation.orchestration.round`), run unchanged:

==========  ==============================================  ==========================================
stage       reads                                           writes
==========  ==============================================  ==========================================
validate    the loop's dataset and contract                 ``validation/``: ``valid/``, ``quarantine/``,
                                                            ``report.json`` (metrics)
embed       ``valid/``                                      ``embeddings.parquet`` (id, vector)
issues      ``valid/``, ``embeddings.parquet``              ``issues.parquet``, ``issues.json``,
                                                            ``label_quality.parquet`` (all labeled rows)
select      ``valid/``, ``embeddings.parquet``,             ``selection.parquet``, ``tasks.parquet``,
            ``issues.parquet`` (review candidates)
                                                            ``select.json``, ``learning_curve.csv``
push        ``tasks.parquet``, ``valid/``                   ``push.json``
==========  ==============================================  ==========================================

The settings are the loop file's, overridden by a DVC ``params.yaml`` (see
:func:`stage_config`), so ``dvc exp run -S select.strategy=margin`` tries another strategy.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from curation.config import LoopConfig
from curation.errors import ConfigError, DataError
from curation.load import bind_plugins, load_loop
from curation.orchestration.adapters import (
    annotator_for,
    eval_accuracy,
    pool_probs,
    step_embed,
    step_issues_with_probs,
    step_select,
)
from curation.orchestration.state import (
    codes,
    label_choices,
    last_round,
    load_state,
    make_tasks,
    review_verdicts,
    store_for,
    suggestions,
)
from curation.steps.model import accuracy, fit_predict_proba, unlabeled_rows
from curation.steps.validate import load_schema, read_outputs, validate_source
from curation.support.data import write_parquet
from curation.support.progress import LogReporter, Reporter
from curation.support.registry import config_error

log = logging.getLogger(__name__)

STAGES = ("validate", "embed", "issues", "select", "push")
CURVE_ROUNDS = 5
NO_SUSPECTS = pl.DataFrame(schema={"id": pl.String, "score": pl.Float64})


class SelectParams(BaseModel):
    """The ``select`` section of ``params.yaml``: the loop's ``strategy``, ``budget`` and
    ``model``, and the stage's own ``curve_rounds``."""

    model_config = ConfigDict(extra="forbid")
    strategy: Any = None
    budget: int | None = None
    model: str | None = None
    #: Rounds of the learning curve replayed over the labeled rows.
    curve_rounds: int = CURVE_ROUNDS


class PushParams(BaseModel):
    """The ``push`` section of ``params.yaml``: whether ``dvc repro`` queues the selection.

    Off by default, and never inside a DVC experiment (``dvc exp run``) unless
    ``in_experiments`` is set too: comparing strategies creates no annotator work unless asked.
    ``curation push --loop LOOP`` without ``--params`` always pushes (you asked).
    """

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    in_experiments: bool = False


#: ``params.yaml`` sections that are loop-file sections: any of their fields may be set.
LOOP_SECTIONS = ("validate", "embed", "issues")
#: ``params.yaml`` top-level keys that are loop-file fields.
LOOP_SCALARS = ("seed", "engine")


def params_keys(section: str) -> list[str]:
    """The keys ``params.yaml`` accepts in ``section``, from the config models.

    Examples
    --------
    >>> params_keys("select")
    ['budget', 'curve_rounds', 'model', 'strategy']
    """
    if section == "select":
        return sorted(SelectParams.model_fields)
    if section == "push":
        return sorted(PushParams.model_fields)
    return sorted(LoopConfig.model_fields[_field(section)].annotation.model_fields)  # type: ignore[union-attr]


def _field(section: str) -> str:
    return "validate_" if section == "validate" else section


def stage_dir(cfg: LoopConfig) -> Path:
    """The default folder of a loop's stage outputs: ``.curation/stages/<loop>``."""
    return cfg.root / ".curation" / "stages" / cfg.name


def read_params(path: Path | None) -> dict[str, Any]:
    """The ``params.yaml`` mapping (empty when ``path`` is None)."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise ConfigError(f"file not found: {path}; expected a DVC params.yaml", field="--params")
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", source=str(path))
    return data


def _strategy(current: Any, value: Any) -> Any:
    """A strategy name keeps the loop's arguments when it names the same strategy."""
    if isinstance(value, str):
        same = isinstance(current, dict) and current.get("name") == value
        return current if same else {"name": value}
    return value


def apply_params(cfg: LoopConfig, params: dict[str, Any], source: str = "params.yaml") -> LoopConfig:
    """The loop ``cfg`` with the settings of a DVC ``params.yaml`` laid over it.

    Parameters
    ----------
    cfg : LoopConfig
        The loop, as read from its file.
    params : dict
        ``{"select": {"strategy": "margin", "budget": 100}, "embed": {...}, "seed": 0, ...}``:
        the loop's ``validate``, ``embed`` and ``issues`` sections, the ``select`` section
        (:class:`SelectParams`) and ``seed`` and ``engine``. Unknown keys raise.

    Examples
    --------
    >>> cfg = LoopConfig(name="x", dataset="d.parquet", schema="s.yaml", connector="c.yaml")
    >>> apply_params(cfg, {"select": {"strategy": "random", "budget": 7}}).strategy.name
    'random'
    """
    tree = cfg.model_dump(mode="json", by_alias=True)
    sections = [*LOOP_SECTIONS, "select", "push"]
    for section, value in params.items():
        if section in LOOP_SCALARS:
            tree[section] = value
            continue
        if section not in sections:
            raise ConfigError(
                "unknown section", field=section, source=source, choices=sorted([*sections, *LOOP_SCALARS])
            )
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, found {value!r}", field=section, source=source)
        for key, v in value.items():
            if key not in params_keys(section):
                raise ConfigError(
                    "unknown key", field=f"{section}.{key}", source=source, choices=params_keys(section)
                )
            _lay(tree, section, key, v)
    try:
        new = LoopConfig.model_validate(tree)
        new._source = cfg.source
        return new
    except ValidationError as e:
        raise config_error(e, source) from e


def _lay(tree: dict[str, Any], section: str, key: str, value: Any) -> None:
    """One ``params.yaml`` setting laid over the loop's tree (the stages' own keys skipped)."""
    if section in LOOP_SECTIONS:
        if key == "detectors":
            value = [{"name": d} if isinstance(d, str) else d for d in value]
        tree[section][key] = value
    elif section == "select" and key == "strategy":
        tree["strategy"] = _strategy(tree.get("strategy"), value)
    elif section == "select" and key != "curve_rounds":
        tree[key] = value


def stage_config(loop: Path, params: Path | None = None) -> tuple[LoopConfig, dict[str, Any]]:
    """Read a loop file and lay ``params.yaml`` over it; also return the params read."""
    p = read_params(params)
    cfg = apply_params(load_loop(loop), p, str(params))
    bind_plugins(cfg, str(params))
    return cfg, p


# ---------------------------------------------------------------- file helpers


def _need(path: Path, stage: str) -> Path:
    if not path.exists():
        raise DataError(
            f"missing; run the `{stage}` stage first (`dvc repro` or `curation {stage} --loop LOOP.yaml`)",
            path=str(path),
        )
    return path


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _valid(out: Path) -> pl.DataFrame:
    _need(out / "validation" / "report.json", "validate")
    return read_outputs(out / "validation")[0]


def _embeddings(cfg: LoopConfig, out: Path, valid: pl.DataFrame) -> np.ndarray:
    """The vectors of ``valid``'s rows, in its order, from ``embeddings.parquet`` (id, vector)."""
    path = _need(out / "embeddings.parquet", "embed")
    table = pl.read_parquet(path)
    ids = valid[cfg.columns.id].cast(pl.String)
    if len(table) != len(valid) or not table[cfg.columns.id].cast(pl.String).equals(ids):
        raise DataError(
            f"expected one vector per valid row, in order ({len(valid)}), found "
            f"{len(table)} rows; rerun the `embed` stage",
            path=str(path),
        )
    return np.asarray(table["vector"].to_list(), dtype=np.float32).reshape(len(table), -1)


def _split(cfg: LoopConfig, valid: pl.DataFrame, X: np.ndarray) -> dict[str, Any]:
    """Labeled rows, pool rows, their vectors, the classes and the label codes."""
    c = cfg.columns
    is_lab = valid[c.label].is_not_null().to_numpy()
    labeled, pool = valid.filter(is_lab), valid.filter(~is_lab)
    classes = label_choices(cfg, load_schema(cfg.path(cfg.schema_path)), labeled)
    return {
        "labeled": labeled,
        "pool": pool,
        "lab_X": X[is_lab],
        "pool_X": X[~is_lab],
        "classes": classes,
        "y": codes(labeled[c.label], classes),
    }


# ---------------------------------------------------------------- the stages


def run_validate(cfg: LoopConfig, out: Path, rep: Reporter | None = None) -> dict[str, Any]:
    """Validate the loop's dataset into ``out/validation`` (as ``curation validate LOOP --out``).

    Writes ``valid/*.parquet``, ``quarantine/*.parquet`` and ``report.json`` (the metrics).
    """
    rep = rep or LogReporter()
    rep.start("validate", None)
    report = validate_source(
        str(cfg.path(cfg.dataset)),
        load_schema(cfg.path(cfg.schema_path)),
        out / "validation",
        cfg.validate_,
        cfg.columns,
        ray_address=cfg.ray_address,
        engine="local" if cfg.engine == "local" else "auto",
    )
    rep.finish(f"validate: {report['valid']} valid, {report['quarantined']} quarantined")
    return report


def run_embed(cfg: LoopConfig, out: Path, rep: Reporter | None = None) -> dict[str, Any]:
    """Embed the valid rows (cached by content) into ``embeddings.parquet`` (id, vector).

    The same file as ``curation embed out/validation/valid --out out/embeddings.parquet``.
    """
    valid = _valid(out)
    X = step_embed(cfg, valid, rep or LogReporter())
    write_parquet(
        pl.DataFrame({cfg.columns.id: valid[cfg.columns.id], "vector": X}), out / "embeddings.parquet"
    )
    return {"rows": int(X.shape[0]), "dim": int(X.shape[1])}


def run_issues(cfg: LoopConfig, out: Path, rep: Reporter | None = None) -> dict[str, Any]:
    """Run the loop's detectors on the valid rows; write ``issues.parquet`` and ``issues.json``."""
    rep = rep or LogReporter()
    c = cfg.columns
    valid = _valid(out)
    X = _embeddings(cfg, out, valid)
    labeled = valid.filter(pl.col(c.label).is_not_null())
    classes = label_choices(cfg, load_schema(cfg.path(cfg.schema_path)), labeled)
    labels = load_state(cfg, store_for(cfg)).labels
    found = step_issues_with_probs(cfg, valid, X, classes, review_verdicts(labels), rep)
    issues, report = found.issues, found.report
    write_parquet(issues, out / "issues.parquet")
    write_parquet(found.quality, out / "label_quality.parquet")
    metrics: dict[str, Any] = {
        "labeled": len(labeled),
        "flagged": len(issues),
        "flagged_fraction": round(len(issues) / max(len(labeled), 1), 6),
        "by_issue": {k: int(v) for k, v in sorted(report["flagged"].items())},
    }
    metrics.update(
        {f"accuracy_{m['name'].replace('/', '_')}": round(m["accuracy"], 6) for m in report["members"]}
    )
    metrics["views"] = {
        m["name"]: {k: round(float(m[k]), 6) for k in ("accuracy", "log_loss", "weight")}
        for m in report["members"]
    }
    _write_json(out / "issues.json", metrics)
    return metrics


def learning_curve(cfg: LoopConfig, s: dict[str, Any], rounds: int, rep: Reporter) -> list[dict[str, Any]]:
    """Replay the loop's strategy over the labeled rows: held-out accuracy against labels.

    The labeled rows stand in for a pool whose labels are known: a random seed batch of
    ``budget`` rows, then ``rounds`` batches chosen by the strategy (:func:`step_select`).
    Accuracy is on the loop's ``eval_dataset`` (or, without one, on a seeded 20% of the
    labeled rows held out from the replay).
    """
    X, y, classes = s["lab_X"], s["y"], s["classes"]
    ids = s["labeled"][cfg.columns.id].cast(pl.String)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(y))
    held = order[: len(y) // 5] if cfg.eval_dataset is None else order[:0]
    avail = np.setdiff1d(order, held)
    chosen = rng.permutation(avail)[: cfg.budget]
    curve = []
    for r in range(rounds + 1):
        if r:
            rest = np.setdiff1d(avail, chosen)
            if len(rest) == 0:
                break
            probs = fit_predict_proba(
                X[chosen], y[chosen], X[rest], len(classes), cfg.seed, cfg.model, unlabeled=X[rest]
            )
            pool = s["labeled"][rest].with_columns(ids[rest].alias(cfg.columns.id))
            pos = {v: i for i, v in enumerate(ids[rest].to_list())}
            sel = step_select(cfg, pool, X[rest], X[chosen], probs, NO_SUSPECTS, rep)
            sel = sel.filter(pl.col("id").is_in(list(pos)))
            chosen = np.concatenate([chosen, rest[[pos[i] for i in sel["id"].to_list()]]])
        acc: float | None
        unlabeled = unlabeled_rows(cfg.model, X, np.setdiff1d(avail, chosen))
        if len(held):
            acc = accuracy(
                X[chosen], y[chosen], X[held], y[held], len(classes), cfg.seed, cfg.model, unlabeled
            )
        else:
            acc = eval_accuracy(cfg, X[chosen], y[chosen], classes, rep, unlabeled)
        curve.append(
            {
                "round": r,
                "labels": len(chosen),
                "accuracy": round(float(acc), 6) if acc is not None else None,
                "strategy": cfg.strategy.name,
            }
        )
    return curve


def run_select(
    cfg: LoopConfig, out: Path, rep: Reporter | None = None, curve_rounds: int = CURVE_ROUNDS
) -> dict[str, Any]:
    """Choose the next batch from the pool; write the selection, its tasks, metrics and a learning curve."""
    rep = rep or LogReporter()
    valid = _valid(out)
    s = _split(cfg, valid, _embeddings(cfg, out, valid))
    trainable = len(np.unique(s["y"])) >= 2
    probs = pool_probs(cfg, s["lab_X"], s["y"], s["pool_X"], len(s["classes"]))
    issues = pl.read_parquet(_need(out / "issues.parquet", "issues"))
    suspects = issues.filter(pl.col("issue") == "label")
    verdicts = review_verdicts(load_state(cfg, store_for(cfg)).labels)
    sel = step_select(cfg, s["pool"], s["pool_X"], s["lab_X"], probs, suspects, rep, verdicts)
    hints = suggestions(s["pool"], probs, issues, cfg.columns.id, s["classes"])
    tasks = make_tasks(cfg, last_round(store_for(cfg), cfg.name)[0] + 1, sel, valid, hints)
    write_parquet(sel, out / "selection.parquet")
    write_parquet(tasks, out / "tasks.parquet")
    curve = learning_curve(cfg, s, curve_rounds, rep) if trainable and curve_rounds > 0 else []
    with open(out / "learning_curve.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["round", "labels", "accuracy", "strategy"])
        w.writeheader()
        w.writerows(curve)
    accs = [p["accuracy"] for p in curve]
    metrics = {
        "strategy": cfg.strategy.name,
        "budget": cfg.budget,
        "pool": len(s["pool"]),
        "selected": len(sel),
        "labeled": len(s["y"]),
        "mean_score": float(sel["score"].mean() or 0.0) if len(sel) else None,  # type: ignore[arg-type]
        "curve_final_accuracy": accs[-1] if accs else None,
        "curve_aulc": round(float(np.mean(accs)), 6) if accs else None,
    }
    _write_json(out / "select.json", metrics)
    return metrics


def push_refused(params: dict[str, Any] | None) -> str | None:
    """Why the push stage must not push (``None``: push). No ``params.yaml``: push (a person
    ran ``curation push``); else ``push.enabled``, and inside ``dvc exp run`` (DVC sets
    ``DVC_EXP_NAME``) ``push.in_experiments`` too.

    Examples
    --------
    >>> push_refused({"push": {"enabled": False}})
    'push.enabled is false in params.yaml: nothing was queued for annotators'
    """
    if params is None:
        return None
    try:
        push = PushParams.model_validate(params.get("push") or {})
    except ValidationError as e:
        raise config_error(e, "params.yaml", "push.") from e
    if not push.enabled:
        return "push.enabled is false in params.yaml: nothing was queued for annotators"
    in_experiment = os.environ.get("DVC_EXP_NAME") or os.environ.get("DVC_EXP_BASELINE_REV")
    if in_experiment and not push.in_experiments:
        return "a DVC experiment (dvc exp run) queues nothing unless push.in_experiments is true"
    return None


def run_push(
    cfg: LoopConfig, out: Path, rep: Reporter | None = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Push the selected tasks to the loop's annotation queue (see :func:`push_refused`);
    write ``push.json``."""
    rep = rep or LogReporter()
    tasks = pl.read_parquet(_need(out / "tasks.parquet", "select"))
    refused = push_refused(params)
    if refused is not None:
        rep.start("push", None)
        rep.finish(f"push: {refused}")
        metrics = {"connector": None, "tasks": len(tasks), "pushed": 0, "skipped": refused}
        _write_json(out / "push.json", metrics)
        return metrics
    valid = _valid(out)
    labeled = valid.filter(pl.col(cfg.columns.label).is_not_null())
    classes = label_choices(cfg, load_schema(cfg.path(cfg.schema_path)), labeled)
    annotator, project = annotator_for(cfg, classes)
    rep.start("push", len(tasks))
    pushed = annotator.push(project, tasks)
    rep.finish(f"push: {pushed} of {len(tasks)} tasks to {annotator.name}")
    metrics = {"connector": annotator.name, "tasks": len(tasks), "pushed": int(pushed)}
    _write_json(out / "push.json", metrics)
    return metrics


def run_stage(
    stage: str,
    cfg: LoopConfig,
    out: Path | None = None,
    rep: Reporter | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one stage by name into ``out`` (default :func:`stage_dir`); return its metrics.

    Examples
    --------
    In the reference project (BANKING77 train has 5 broken rows)::

        run_stage("validate", load_loop("loops/banking77.yaml"))["quarantined"]   # 5
    """
    out = Path(out) if out is not None else stage_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if stage == "select":
        rounds = (params or {}).get("select", {}).get("curve_rounds", CURVE_ROUNDS)
        return run_select(cfg, out, rep, int(rounds))
    if stage == "push":
        return run_push(cfg, out, rep, params)
    funcs = {"validate": run_validate, "embed": run_embed, "issues": run_issues}
    if stage not in funcs:
        raise ConfigError(f"unknown stage {stage!r}", choices=list(STAGES))
    return funcs[stage](cfg, out, rep)
