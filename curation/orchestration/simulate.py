"""Pool-based active-learning simulation: learning curves that prove a strategy.

Every label a strategy asks for is answered by an oracle (the true label of the row), or by
a noisy first annotator whose errors a review sets right (``first``); after each round a model is fitted on the labels so far and scored on a held-out set. The
curve (accuracy against labels) is averaged over seeds, and the area under it (AULC, the
mean of the per-round accuracies) sums it up.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from curation.config import DEFAULT_ROUND_MODEL, LoopConfig, PluginConfig
from curation.connectors.base import Project
from curation.connectors.oracle import Oracle
from curation.errors import ConfigError, DataError
from curation.issues.base import IssueInputs
from curation.issues.label import LabelIssues
from curation.orchestration.adapters import step_embed, step_validate
from curation.steps.model import cross_val_probs, fit_predict_proba, unlabeled_rows
from curation.strategies.base import STRATEGIES, Pool, Strategy
from curation.support.data import read_table
from curation.support.progress import LogReporter

log = logging.getLogger(__name__)
Answer = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]


@dataclass
class Curve:
    """One strategy's learning curve: accuracy per round (rows: seeds) against labels
    (annotations spent: new labels and reviews), and the reviews among them."""

    strategy: str
    labels: list[int]
    accuracy: list[list[float]]
    reviews: list[list[int]] = field(default_factory=list)

    @property
    def mean(self) -> np.ndarray:
        """Accuracy per round, mean over seeds."""
        return np.mean(self.accuracy, axis=0)

    @property
    def std(self) -> np.ndarray:
        """Accuracy per round, standard deviation over seeds."""
        return np.std(self.accuracy, axis=0)

    @property
    def se(self) -> np.ndarray:
        """Accuracy per round, standard error of the mean over seeds (0 with one seed)."""
        acc = np.asarray(self.accuracy)
        return acc.std(axis=0, ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else np.zeros(acc.shape[1])

    @property
    def aulc_se(self) -> float:
        """Standard error of the AULC over seeds (0 with one seed).

        Examples
        --------
        >>> cv = Curve("random", [10, 20], [[0.5, 0.7], [0.6, 0.8]])
        >>> round(cv.aulc, 3), round(cv.aulc_se, 3), cv.se.round(3).tolist()
        (0.65, 0.05, [0.05, 0.05])
        """
        per_seed = np.asarray(self.accuracy).mean(axis=1)
        return float(per_seed.std(ddof=1) / np.sqrt(len(per_seed))) if len(per_seed) > 1 else 0.0

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
    model: str = DEFAULT_ROUND_MODEL,
    first: Answer | None = None,
    folds: int = 3,
) -> Curve:
    """Run ``rounds`` rounds of ``budget`` annotations from a cold start, once per seed.

    Parameters
    ----------
    X, y : numpy.ndarray
        The pool: unit-norm embeddings and integer labels ``0..n_classes-1`` (hidden from
        the strategy; revealed by ``answer`` when a row is selected).
    X_test, y_test : numpy.ndarray
        The held-out set the model is scored on after each round.
    strategy : Strategy
        What selects. One that reviews (``strategy.review_mode`` not ``none``) is shown,
        from the second round on, the suspected label errors of the labels so far: cleanlab's
        label-issue detector (:class:`~curation.issues.label.LabelIssues`) on ``folds``-fold
        out-of-sample probabilities of ``logreg`` on the embeddings (the reference recipe),
        rows already reviewed left out.
    rounds, budget : int
        How many rounds, and annotations per round: a new label and a review cost one each.
    seeds : sequence of int
        One simulation per seed.
    n_classes : int
        The number of classes.
    answer : callable, optional
        ``answer(pool_positions) -> labels``: the oracle (default: ``y[positions]``); it
        answers every review.
    progress : callable, optional
        Called with ``(rounds done, rounds in all)``.
    model : str
        The classifier of :data:`curation.steps.model.MODELS` fitted after each round.
    first : callable, optional
        What the first annotation of a pool row answers (default ``answer``); planted label
        noise goes here, and a review of the row then sets it right.
    folds : int
        Cross-validation folds for the suspects' probabilities.

    Returns
    -------
    Curve
        Accuracy after each round, per seed, against the annotations spent.
    """
    if rounds * budget > len(X):
        raise DataError(
            f"{rounds} rounds of {budget} labels need {rounds * budget} pool rows, "
            f"the pool has {len(X)}; lower --rounds or the budget"
        )
    answer = answer or (lambda pos: y[pos])
    run = _Run(X, X_test, y_test, strategy, n_classes, answer, first or answer, model, folds)
    acc: list[list[float]] = []
    reviews: list[list[int]] = []
    for s, seed in enumerate(seeds):

        def tick(r: int, s: int = s) -> None:
            if progress:
                progress(s * rounds + r, len(seeds) * rounds)

        row, n_reviews = run.curve(seed, rounds, budget, tick)
        acc.append(row)
        reviews.append(n_reviews)
    return Curve(strategy.name, [budget * (r + 1) for r in range(rounds)], acc, reviews)


@dataclass
class _Run:
    """One strategy's simulation: what stays the same across seeds and rounds."""

    X: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    strategy: Strategy
    n_classes: int
    answer: Answer
    first: Answer
    model: str
    folds: int

    def curve(
        self, seed: int, rounds: int, budget: int, tick: Callable[[int], None]
    ) -> tuple[list[float], list[int]]:
        """Accuracy after each of ``rounds`` rounds from a cold start, and reviews per round."""
        X, ids = self.X, np.arange(len(self.X)).astype(str)
        labeled, reviewed = np.zeros(len(X), dtype=bool), np.zeros(len(X), dtype=bool)
        got = np.full(len(X), -1, dtype=np.int64)
        probs, suspects, row, n_reviews = None, _no_suspects(), [], []
        verdicts = (0, 0)  # reviews answered, and how many changed the label
        for r in range(rounds):
            free = np.flatnonzero(~labeled)
            pool = Pool(ids[free], X[free], X[labeled], probs, seed * 1000 + r, *suspects, verdicts)
            sel = self.strategy.select(pool, budget)
            pos, rev = _positions(sel, "label"), _positions(sel, "review")
            if len(np.unique(pos)) != len(pos) or labeled[pos].any() or not labeled[rev].all():
                raise DataError(
                    f"strategy {self.strategy.name!r} selected a row twice, a labeled row to label "
                    "or an unlabeled row to review"
                )
            got[pos], labeled[pos] = self.first(pos), True
            before, (got[rev], reviewed[rev]) = got[rev], (self.answer(rev), True)
            verdicts = (verdicts[0] + len(rev), verdicts[1] + int((got[rev] != before).sum()))
            probs, accuracy = self._fit(labeled, got, seed)
            row.append(accuracy)
            n_reviews.append(len(rev))
            if self.strategy.review_mode != "none":
                suspects = self._suspects(labeled, reviewed, got, seed)
            log.info(
                "%s seed %d round %d: %d labels, %d reviews, accuracy %.4f",
                self.strategy.name, seed, r + 1, len(pos), len(rev), accuracy,
            )  # fmt: skip
            tick(r + 1)
        return row, n_reviews

    def _fit(self, labeled: np.ndarray, got: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        """The pool rows' probabilities and the held-out accuracy of a model on the labels."""
        lab, rest = np.flatnonzero(labeled), np.flatnonzero(~labeled)
        with threadpool_limits(1, "blas"):  # small dense fits: threads only add wake-ups
            p = fit_predict_proba(
                self.X[lab],
                got[lab],
                np.concatenate([self.X[rest], self.X_test]),
                self.n_classes,
                seed,
                self.model,
                unlabeled=unlabeled_rows(
                    self.model, self.X, rest
                ),  # the pool only: the test rows stay unseen
            )
        return p[: len(rest)], float((p[len(rest) :].argmax(1) == self.y_test).mean())

    def _suspects(
        self, labeled: np.ndarray, reviewed: np.ndarray, got: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flagged label errors not reviewed yet, worst first, and their label quality."""
        lab = np.flatnonzero(labeled)
        with threadpool_limits(1, "blas"):
            oos = cross_val_probs(self.X[lab], got[lab], self.n_classes, self.folds, seed, "logreg")
        classes = [str(k) for k in range(self.n_classes)]
        inputs = IssueInputs(lab.astype(str), got[lab], classes, self.X[lab], oos)
        flags = LabelIssues().find(inputs)
        flags = flags.filter(~pl.col("id").cast(pl.Int64).is_in(np.flatnonzero(reviewed).tolist()))
        return flags["id"].to_numpy().astype(str), 1.0 - flags["score"].to_numpy()


def _no_suspects() -> tuple[np.ndarray, np.ndarray | None]:
    return np.array([], dtype=str), None


def _positions(sel: pl.DataFrame, kind: str) -> np.ndarray:
    return sel.filter(pl.col("kind") == kind)["id"].cast(pl.Int64).to_numpy()


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
