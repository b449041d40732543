"""Label Studio's ML-backend protocol for a loop: the round's model predicts any task opened.

Label Studio (tested with 1.23) calls a connected model ("Settings > Model > Connect model",
the URL of ``curation serve``) at:

- ``GET /health``: is it up (the receiver answers);
- ``POST /setup`` (``{"project", "schema", ...}``): before every batch of predictions; the
  answer's ``model_version`` tells Label Studio whether the predictions it holds are current;
- ``POST /predict`` (``{"tasks": [...], "label_config", ...}``): one prediction per task,
  ``{"results": [{"result", "score", "model_version"}, ...]}``;
- ``POST /webhook`` with ``{"action": "START_TRAINING"}`` ("Start training"; ``POST /train``
  in older releases): the receiver starts a round (see :mod:`curation.orchestration.serve`).

The model is the loop's round model (:func:`curation.steps.model.fit_model`, the loop's
``model``) fitted on the embeddings (from the cache) of every row labeled as of the loop's
last committed round: the model the next round selects with. It is kept in memory and
refitted when a round is committed.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from curation.config import LoopConfig
from curation.connectors.base import VersionStore
from curation.connectors.ls_format import FROM_NAME, TO_NAME, choice_result
from curation.errors import CurationError, DataError
from curation.orchestration.adapters import step_embed, step_validate
from curation.orchestration.state import codes, label_choices, last_round, load_data, load_state, store_for
from curation.steps.embed import embed
from curation.steps.model import SEMI_SUPERVISED, FittedModel, fit_model, make_model
from curation.steps.semi_supervised import unlabeled_sample
from curation.steps.validate import load_schema
from curation.support.progress import LogReporter

log = logging.getLogger(__name__)

#: The POST paths of the protocol this module answers (``/train`` is the receiver's).
ROUTES = ("/setup", "/predict")


def model_version(loop: str, n: int) -> str:
    """The name predictions of the model fitted as of round ``n`` are stored under.

    Examples
    --------
    >>> model_version("banking77", 3)
    'curation-banking77-round-3'
    """
    return f"curation-{loop}-round-{n}"


@dataclass(frozen=True)
class RoundModel:
    """The round model: fitted on every row labeled as of ``round``.

    Attributes
    ----------
    round : int
        The last committed round of the loop when it was fitted.
    version : str
        Its ``model_version`` in Label Studio.
    classes : list of str
        The label set, in the model's class order.
    model : FittedModel
        The fitted classifier on the embeddings.
    rows : int
        The labeled rows it was fitted on.
    """

    round: int
    version: str
    classes: list[str]
    model: FittedModel
    rows: int


def fit_round_model(cfg: LoopConfig, store: VersionStore) -> RoundModel:
    """Fit the loop's round model on its labeled rows as of its last committed round.

    The rows are validated against the loop's contract and embedded through the cache
    (after a round every row is there), in this process; a model that also learns from the
    pool (``curation.steps.model.SEMI_SUPERVISED``, the default ``logreg_knn``) gets the
    unlabeled rows too, as in the round: only the sample it keeps is read from the cache.
    """
    rep = LogReporter()
    c = cfg.columns
    past = load_state(cfg, store)
    v = step_validate(cfg, load_data(cfg, past.labels), rep)
    labeled = v.valid.filter(pl.col(c.label).is_not_null())
    if not len(labeled):
        raise DataError(f"no labeled rows in {cfg.dataset} to fit a model on", column=c.label)
    classes = label_choices(cfg, load_schema(cfg.path(cfg.schema_path)), labeled)
    X = step_embed(cfg, labeled, rep, what="embed labeled")
    pool, unlabeled = v.valid.filter(pl.col(c.label).is_null()), None
    if cfg.model in SEMI_SUPERVISED and len(pool):  # as the round fits it: the pool included,
        cap = make_model(cfg.model, cfg.seed).max_unlabeled  # the rows it keeps read alone
        keep = unlabeled_sample(np.arange(len(pool)), cap, cfg.seed)
        unlabeled = step_embed(cfg, pool[keep], rep, what="embed pool")
    y = codes(labeled[c.label], classes)
    model = fit_model(X, y, len(classes), cfg.seed, cfg.model, unlabeled=unlabeled)
    log.info("ml backend: fitted on %d labeled rows as of round %d", len(labeled), past.round)
    return RoundModel(past.round, model_version(cfg.name, past.round), classes, model, len(labeled))


def label_fields(config: str) -> tuple[str, list[str]]:
    """The task-data key of the text and the label choices of a labeling config that has
    curation's fields (``<Choices name="label" toName="text">`` on ``<Text name="text">``).

    Raises
    ------
    ValueError
        The config is not XML, or lacks those fields (the message says which).

    Examples
    --------
    >>> from curation.connectors.ls_format import labeling_config
    >>> label_fields(labeling_config(["a", "b"]))
    ('text', ['a', 'b'])
    """
    try:
        root = ET.fromstring(config)
    except ET.ParseError as e:
        raise ValueError(f"the labeling config is not XML: {e}") from e
    text = next((t for t in root.iter("Text") if t.get("name") == TO_NAME), None)
    choices = next(
        (t for t in root.iter("Choices") if t.get("name") == FROM_NAME and t.get("toName") == TO_NAME), None
    )
    if text is None or choices is None:
        raise ValueError(
            f'expected <Choices name="{FROM_NAME}" toName="{TO_NAME}"> and <Text name="{TO_NAME}"> in '
            "the labeling config (the one curation's label_studio connector creates)"
        )
    return (text.get("value") or f"${TO_NAME}").lstrip("$"), [
        str(c.get("value")) for c in choices.iter("Choice")
    ]


class ModelBackend:
    """Answer Label Studio's ``/setup`` and ``/predict`` with the loop's round model.

    Parameters
    ----------
    cfg : LoopConfig
        The loop; its steps run in this process here (``engine: local``).
    store : VersionStore, optional
        Its version store (default: the loop's, :func:`store_for`).

    Examples
    --------
    ``curation serve`` makes one per loop (see ``docs/label_studio.md``)::

        backend = ModelBackend(load_loop("loops/banking77.yaml"))
        backend.refit().version                # 'curation-banking77-round-3'
        backend.predict_texts(["my card is stuck in the ATM"])   # [('card_swallowed', 0.91)]
    """

    def __init__(self, cfg: LoopConfig, store: VersionStore | None = None) -> None:
        self.cfg = cfg.model_copy(update={"engine": "local"})
        self.store = store if store is not None else store_for(cfg)
        self.model_: RoundModel | None = None
        self.error_: str | None = None
        self.tried_round_: int | None = None
        self._fitting = threading.Lock()

    @property
    def version(self) -> str | None:
        """The current model's ``model_version`` (``None`` before the first fit)."""
        m = self.model_
        return m.version if m is not None else None

    def refit(self, cfg: LoopConfig | None = None) -> RoundModel | None:
        """Fit the round model again (one fit at a time); keep the old one if it fails."""
        if cfg is not None:
            self.cfg = cfg.model_copy(update={"engine": "local"})
        with self._fitting:
            try:
                self.tried_round_ = last_round(self.store, self.cfg.name)[0]
                self.model_ = fit_round_model(self.cfg, self.store)
                self.error_ = None
            except CurationError as e:
                log.warning("ml backend: cannot fit the round model: %s", e)
                self.error_ = str(e)
            except Exception as e:  # a failed fit keeps the old model and is shown by /health
                log.exception("ml backend: fitting the round model failed")
                self.error_ = f"{type(e).__name__}: {e}"
        return self.model_

    def refresh(self) -> None:
        """Refit in the background when a round was committed since the last fit (a round
        ``curation run`` made, say); the current model answers meanwhile."""
        try:
            committed = last_round(self.store, self.cfg.name)[0]
        except CurationError as e:
            log.warning("ml backend: cannot read the loop's rounds: %s", e)
            return
        if committed != self.tried_round_ and not self._fitting.locked():
            threading.Thread(target=self.refit, name="curation-ml-refit", daemon=True).start()

    def predict_texts(self, texts: list[str | None]) -> list[tuple[str, float] | None]:
        """The model's label and its probability for each text (``None`` for a missing text)."""
        m = self.model_
        if m is None:
            raise RuntimeError("no round model yet")
        rows = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        out: list[tuple[str, float] | None] = [None] * len(texts)
        if rows:
            X = embed([str(texts[i]) for i in rows], self.cfg.embed, root=self.cfg.root, engine="local")
            probs = m.model.predict_proba(X)
            for i, p in zip(rows, probs, strict=True):
                out[i] = (m.classes[int(p.argmax())], float(p.max()))
        return out

    def respond(self, route: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The answer to one POST of the protocol: ``(status, JSON body)``; errors are 4xx/5xx
        with ``{"error": ...}``, which Label Studio shows in the model's state."""
        if route == "/setup":
            return self.setup(body)
        if route == "/predict":
            return self.predict(body)
        return 404, {"error": "not found"}

    def setup(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Check the project's labeling config; name the current model."""
        try:
            _, choices = label_fields(str(body.get("schema") or ""))
        except ValueError as e:
            return 400, {"error": str(e)}
        self.refresh()
        m = self.model_
        if m is None:
            return 503, {"error": f"no round model yet: {self.error_ or 'fitting'}"}
        missing = sorted(set(m.classes) - set(choices))
        if missing:
            log.warning("ml backend: labels %s are not choices of the labeling config", missing)
        return 200, {"model_version": m.version}

    def predict(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One prediction per task: the model's label in the label field, with its probability."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            return 400, {"error": "expected 'tasks': a list of task objects"}
        try:
            key = label_fields(str(body["label_config"]))[0] if body.get("label_config") else TO_NAME
        except ValueError as e:
            return 400, {"error": str(e)}
        m = self.model_
        if m is None:
            return 503, {"error": f"no round model yet: {self.error_ or 'fitting'}"}
        texts = [(t.get("data") or {}).get(key) for t in tasks]
        try:
            answers = self.predict_texts(texts)
        except CurationError as e:
            return 500, {"error": str(e)}
        results = [
            {"result": choice_result(a[0]), "score": a[1], "model_version": m.version}
            if a is not None
            else {"result": [], "score": 0.0, "model_version": m.version}
            for a in answers
        ]
        return 200, {"results": results, "model_version": m.version}
