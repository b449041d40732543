"""Pool-based active-learning simulation: learning curves that prove a strategy.

Every label a strategy asks for is answered by an oracle (the true label of the row);
after each round a model is fitted on the labels so far and scored on a held-out set. The
curve (accuracy against labels) is averaged over seeds, and the area under it (AULC, the
mean of the per-round accuracies) sums it up.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from curation.config import LoopConfig, PluginConfig
from curation.connectors.base import Project
from curation.connectors.oracle import Oracle
from curation.errors import ConfigError, DataError
from curation.orchestration.adapters import step_embed, step_validate
from curation.steps.model import fit_predict_proba
from curation.strategies.base import STRATEGIES, Pool, Strategy
from curation.support.data import read_table
from curation.support.progress import LogReporter

log = logging.getLogger(__name__)
Answer = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]


@dataclass
class Curve:
    """One strategy's learning curve: accuracy per round (rows: seeds) against labels."""

    strategy: str
    labels: list[int]
    accuracy: list[list[float]]

    @property
    def mean(self) -> np.ndarray:
        """Accuracy per round, mean over seeds."""
        return np.mean(self.accuracy, axis=0)

    @property
    def std(self) -> np.ndarray:
        """Accuracy per round, standard deviation over seeds."""
        return np.std(self.accuracy, axis=0)

    @property
    def aulc(self) -> float:
        """The area under the learning curve: the mean of the per-round mean accuracies."""
        return float(self.mean.mean())

    def labels_to(self, target: float) -> int | None:
        """The fewest labels at which the mean accuracy reaches ``target`` (None if never)."""
        hit = np.flatnonzero(self.mean >= target)
        return int(self.labels[hit[0]]) if len(hit) else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: labels, mean, std, per-seed curves, AULC, labels to 0.90."""
        return {
            "labels": self.labels,
            "mean": self.mean.round(4).tolist(),
            "std": self.std.round(4).tolist(),
            "per_seed": self.accuracy,
            "aulc": round(self.aulc, 4),
            "labels_to_0.90": self.labels_to(0.90),
        }


def simulate(
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    strategy: Strategy,
    *,
    rounds: int,
    budget: int,
    seeds: Sequence[int],
    n_classes: int,
    answer: Answer | None = None,
    progress: Progress | None = None,
    model: str = "logreg_cv",
) -> Curve:
    """Run ``rounds`` rounds of ``budget`` labels from a cold start, once per seed.

    Parameters
    ----------
    X, y : numpy.ndarray
        The pool: unit-norm embeddings and integer labels ``0..n_classes-1`` (hidden from
        the strategy; revealed by ``answer`` when a row is selected).
    X_test, y_test : numpy.ndarray
        The held-out set the model is scored on after each round.
    strategy : Strategy
        What selects.
    rounds, budget : int
        How many rounds, and labels per round.
    seeds : sequence of int
        One simulation per seed.
    n_classes : int
        The number of classes.
    answer : callable, optional
        ``answer(pool_positions) -> labels``: the oracle (default: ``y[positions]``).
    progress : callable, optional
        Called with ``(rounds done, rounds in all)``.
    model : str
        The classifier of :data:`curation.steps.model.MODELS` fitted after each round.

    Returns
    -------
    Curve
        Accuracy after each round, per seed.
    """
    if rounds * budget > len(X):
        raise DataError(
            f"{rounds} rounds of {budget} labels need {rounds * budget} pool rows, "
            f"the pool has {len(X)}; lower --rounds or the budget"
        )
    answer = answer or (lambda pos: y[pos])
    ids = np.arange(len(X)).astype(str)
    acc: list[list[float]] = []
    for s, seed in enumerate(seeds):
        labeled = np.zeros(len(X), dtype=bool)
        got = np.full(len(X), -1, dtype=np.int64)
        probs, row = None, []
        for r in range(rounds):
            free = np.flatnonzero(~labeled)
            pool = Pool(ids[free], X[free], X[labeled], probs, seed=seed * 1000 + r)
            sel = strategy.select(pool, budget)
            pos = sel.filter(pl.col("kind") == "label")["id"].cast(pl.Int64).to_numpy()
            if len(np.unique(pos)) != len(pos) or labeled[pos].any():
                raise DataError(f"strategy {strategy.name!r} selected a row twice or a labeled row")
            got[pos] = answer(pos)
            labeled[pos] = True
            lab = np.flatnonzero(labeled)
            rest = np.flatnonzero(~labeled)
            with threadpool_limits(1, "blas"):  # small dense fits: threads only add wake-ups
                p = fit_predict_proba(
                    X[lab], got[lab], np.concatenate([X[rest], X_test]), n_classes, seed, model
                )
            probs = p[: len(rest)]
            row.append(float((p[len(rest) :].argmax(1) == y_test).mean()))
            log.info(
                "%s seed %d round %d: %d labels, accuracy %.4f", strategy.name, seed, r + 1, len(lab), row[-1]
            )
            if progress:
                progress(s * rounds + r + 1, len(seeds) * rounds)
        acc.append(row)
    return Curve(strategy.name, [budget * (r + 1) for r in range(rounds)], acc)


def oracle_answer(
    cfg: LoopConfig, ids: np.ndarray, texts: list[str], labels: list[str], classes: list[str], state_dir: Path
) -> Answer:
    """An ``answer`` that asks the loop's oracle connector (push tasks, pull the answers)."""
    oracle = Oracle(label_column="truth", annotator="simulation")
    project = Project(cfg.name, classes, state_dir)
    index = {c: i for i, c in enumerate(classes)}

    def answer(pos: np.ndarray) -> np.ndarray:
        tasks = pl.DataFrame(
            {
                "task_id": [f"label:{ids[i]}" for i in pos],
                "id": ids[pos].astype(str),
                "kind": ["label"] * len(pos),
                "text": [texts[i] for i in pos],
                "truth": [labels[i] for i in pos],
            }
        )
        oracle.push(project, tasks)
        got = dict(zip(*oracle.pull(project).annotations.select("id", "label")))
        return np.array([index[got[str(ids[i])]] for i in pos], dtype=np.int64)

    return answer


def compared_strategies(cfg: LoopConfig, compare: Sequence[str] | None = None) -> list[PluginConfig]:
    """The loop's strategy, then each of ``compare`` (default ``random``) it is not, with its
    default arguments (checked: an unknown name lists the known ones).

    Examples
    --------
    >>> cfg = LoopConfig(name="x", dataset="d.parquet", schema="s.yaml", connector="c.yaml")
    >>> [s.name for s in compared_strategies(cfg, ["margin", "hybrid"])]
    ['hybrid', 'margin']
    """
    names = [n for n in (compare or ["random"]) if n != cfg.strategy.name]
    for n in names:
        STRATEGIES.get(n, field="--compare")
    return [cfg.strategy, *(PluginConfig(name=n) for n in dict.fromkeys(names))]


def simulate_loop(
    cfg: LoopConfig,
    strategies: Sequence[PluginConfig],
    rounds: int,
    seeds: int,
    out_dir: Path,
    progress: Progress | None = None,
) -> dict[str, Curve]:
    """Simulate the loop's data with each strategy; write ``curves.json`` and ``curves.png``.

    The loop's dataset is the pool (its label column is the oracle's hidden truth), its
    ``eval_dataset`` the held-out set, its ``budget`` the labels per round.
    """
    if cfg.eval_dataset is None:
        raise ConfigError(
            "simulation scores a held-out set; set eval_dataset in the loop file", field="eval_dataset"
        )
    c, rep = cfg.columns, LogReporter()
    pool = step_validate(cfg, read_table(cfg.path(cfg.dataset)), rep).valid
    pool = pool.filter(pl.col(c.label).is_not_null())
    test = read_table(cfg.path(cfg.eval_dataset))
    classes = sorted(pool[c.label].cast(pl.String).unique().to_list())
    test = test.filter(pl.col(c.text).is_not_null() & pl.col(c.label).cast(pl.String).is_in(classes))
    X, X_test = step_embed(cfg, pool, rep), step_embed(cfg, test, rep, what="embed held-out")
    index = {k: i for i, k in enumerate(classes)}
    y = np.array([index[v] for v in pool[c.label].cast(pl.String)], dtype=np.int64)
    y_test = np.array([index[v] for v in test[c.label].cast(pl.String)], dtype=np.int64)
    curves: dict[str, Curve] = {}
    with tempfile.TemporaryDirectory() as state:
        for k, spec in enumerate(strategies):
            strategy = STRATEGIES.create(spec.name, spec.params(), field="strategy")
            answer = oracle_answer(
                cfg,
                pool[c.id].cast(pl.String).to_numpy(),
                pool[c.text].to_list(),
                pool[c.label].cast(pl.String).to_list(),
                classes,
                Path(state) / f"{k}-{spec.name}",
            )
            done = k * rounds * seeds

            def tick(i: int, n: int, done: int = done) -> None:
                if progress:
                    progress(done + i, len(strategies) * rounds * seeds)

            curves[spec.name] = simulate(
                X,
                y,
                X_test,
                y_test,
                strategy,
                rounds=rounds,
                budget=cfg.budget,
                seeds=range(seeds),
                n_classes=len(classes),
                answer=answer,
                progress=tick,
                model=cfg.model,
            )
    write_curves(curves, out_dir, title=f"{cfg.name}: {cfg.budget} labels per round, {seeds} seeds")
    return curves


def write_curves(curves: dict[str, Curve], out_dir: Path, title: str = "") -> None:
    """``curves.json`` (per strategy: labels, mean, std, per-seed, AULC) and ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "curves.json").write_text(
        json.dumps({name: cv.to_dict() for name, cv in curves.items()}, indent=2), encoding="utf-8"
    )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, cv in curves.items():
        ax.plot(cv.labels, cv.mean, marker="o", ms=3, label=f"{name} (AULC {cv.aulc:.3f})")
        ax.fill_between(cv.labels, cv.mean - cv.std, cv.mean + cv.std, alpha=0.2)
    ax.set(xlabel="labels", ylabel="held-out accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=120)
    plt.close(fig)
