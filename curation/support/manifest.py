"""The round manifest: what a round read, decided and produced, for audit and reproduction.

A manifest is written as a JSON file into the round (``rounds/LOOP/round-N/manifest.json``) and
summarised as the round commit's metadata (flat string keys: ``curation.*`` and
``metrics.*``), so ``curation history`` needs no file reads.

Examples
--------
>>> import polars as pl
>>> m = build_manifest(
...     round=1, loop="demo", inputs={"pool": pl.DataFrame({"id": ["a"], "text": ["t"]})},
...     params={"budget": 1}, strategy="kcenter",
...     selected=pl.DataFrame({"id": ["a"], "score": [0.9], "reason": ["farthest"]}),
...     metrics={"accuracy": 0.5},
... )
>>> m.commit_metadata()["curation.selected"]
'1'
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from curation.errors import DataError, VersioningError

#: Commit-metadata key holding the round number; every round commit carries it.
ROUND_KEY = "curation.round"
#: Commit-metadata key holding the validation gate's outcome, ``"passed"`` or ``"failed"``.
#: A round whose gate failed is committed and tagged for audit but does not become the
#: base of the next round (lakeFS: not merged into main; DVC: not on the checked-out branch).
GATE_KEY = "curation.gate"
#: Commit-metadata keys starting with this prefix are the round's metrics (``metrics.f1``).
METRIC_PREFIX = "metrics."


class _Store(Protocol):
    """What reading and writing a manifest needs of a version store."""

    def write_bytes(self, path: str, data: bytes) -> None: ...
    def read_bytes(self, ref: str, path: str) -> bytes: ...
    def history(self) -> Any: ...


#: Version of the manifest format; bump on an incompatible change.
SCHEMA_VERSION = 1


def manifest_path(round: int, loop: str) -> str:
    """Where a round's manifest lives in the versioned tree: ``rounds/LOOP/round-N/manifest.json``."""
    return f"rounds/{loop}/round-{round}/manifest.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputRef(_Model):
    """One input of the round: where it came from and a hash of its content.

    Attributes
    ----------
    name : str
        Its role (``pool``, ``labeled``, ``eval``...).
    uri : str
        The file, folder or ``lakefs://`` URI it was read from (empty for an in-memory table).
    ref : str, optional
        The version-store ref it was read at (a tag, a commit), when versioned.
    sha256 : str
        SHA-256 of the file bytes, or of the table's Arrow IPC stream.
    rows : int, optional
        Its number of rows, for a table.
    """

    name: str
    uri: str = ""
    ref: str | None = None
    sha256: str
    rows: int | None = None


class StrategyRecord(_Model):
    """The selection strategy, its parameters and a summary of its scores."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, float] = Field(default_factory=dict)


class SelectedItem(_Model):
    """One selected sample and why: ``kind`` is ``label`` (new sample) or ``review``."""

    id: str
    kind: str = "label"
    score: float | None = None
    rank: int | None = None
    reason: str = ""


class AnnotationRecord(_Model):
    """One annotation received this round (``ANNOTATION_COLUMNS``)."""

    task_id: str | None = None
    id: str
    kind: str | None = None
    label: str | None = None
    annotator: str | None = None
    status: str | None = None
    updated_at: str | None = None


class LabelIssue(_Model):
    """One suspected issue (``id``, ``issue``, ``score`` plus the detector's label columns)."""

    id: str
    issue: str
    score: float | None = None
    given_label: str | None = None
    suggested_label: str | None = None


class Gate(_Model):
    """The validation gate: whether the round may become the base of the next one."""

    passed: bool = True
    invalid_rows: int | None = None
    total_rows: int | None = None
    max_invalid_fraction: float | None = None
    detail: str = ""


class Manifest(_Model):
    """Everything one round read, decided and produced.

    Build it with :func:`build_manifest`; write it with :func:`write_manifest` (into the
    round) or :meth:`save` (a local file); pass :meth:`commit_metadata` to
    ``VersionStore.commit``.
    """

    schema_version: int = SCHEMA_VERSION
    round: int
    loop: str
    created_at: str
    inputs: list[InputRef] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    strategy: StrategyRecord
    selected: list[SelectedItem] = Field(default_factory=list)
    annotations: list[AnnotationRecord] = Field(default_factory=list)
    label_issues: list[LabelIssue] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    gate: Gate = Field(default_factory=Gate)
    validation: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict)

    @property
    def path(self) -> str:
        """Where :func:`write_manifest` puts it: ``rounds/LOOP/round-N/manifest.json``."""
        return manifest_path(self.round, self.loop)

    def to_json(self) -> str:
        """The manifest as indented, key-sorted JSON (stable for equal content)."""
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"

    @property
    def sha256(self) -> str:
        """SHA-256 of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the manifest as JSON to a local file; return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, source: str | Path | bytes) -> Manifest:
        """Read a manifest from a JSON file or from its bytes."""
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        try:
            return cls.model_validate_json(raw)
        except ValueError as e:
            raise DataError(f"not a curation manifest: {e}".splitlines()[0]) from e

    def commit_metadata(self) -> dict[str, str]:
        """The flat string map a round commit carries (lakeFS commit metadata, git message).

        Keys: ``curation.round``, ``curation.loop``, ``curation.gate`` (``passed`` or
        ``failed``), ``curation.strategy``, ``curation.manifest`` (its path) and
        ``curation.manifest_sha256``, ``curation.params_sha256``, ``curation.inputs``
        (JSON: name -> sha256), the counts ``curation.selected``, ``curation.annotations``,
        ``curation.label_issues``, and one ``metrics.NAME`` per metric.
        """
        params = json.dumps(self.params, sort_keys=True, default=str)
        meta = {
            ROUND_KEY: str(self.round),
            "curation.loop": self.loop,
            GATE_KEY: "passed" if self.gate.passed else "failed",
            "curation.strategy": self.strategy.name,
            "curation.manifest": self.path,
            "curation.manifest_sha256": self.sha256,
            "curation.params_sha256": hashlib.sha256(params.encode()).hexdigest(),
            "curation.inputs": json.dumps({i.name: i.sha256 for i in self.inputs}, sort_keys=True),
            "curation.selected": str(len(self.selected)),
            "curation.annotations": str(len(self.annotations)),
            "curation.label_issues": str(len(self.label_issues)),
        }
        for k, v in sorted(self.metrics.items()):
            meta[f"{METRIC_PREFIX}{k}"] = repr(float(v))
        return meta


def content_hash(source: str | Path | pl.DataFrame) -> str:
    """SHA-256 of a file's bytes, of every data file in a folder (by relative path), or of a
    table's Arrow IPC stream."""
    h = hashlib.sha256()
    if isinstance(source, pl.DataFrame):
        buf = io.BytesIO()
        source.write_ipc_stream(buf, compression="uncompressed")
        h.update(buf.getvalue())
        return h.hexdigest()
    path = Path(source)
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()
    if not path.is_file():
        raise DataError("cannot hash a missing input", path=str(path))
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_ref(
    name: str, source: str | Path | pl.DataFrame, ref: str | None = None, uri: str | None = None
) -> InputRef:
    """An :class:`InputRef` for a file, folder or table (rows counted for tables)."""
    rows = len(source) if isinstance(source, pl.DataFrame) else None
    where = uri if uri is not None else ("" if isinstance(source, pl.DataFrame) else str(source))
    return InputRef(name=name, uri=where, ref=ref, sha256=content_hash(source), rows=rows)


def _rows(table: pl.DataFrame | None, model: type[_Model], what: str) -> list[Any]:
    if table is None or len(table) == 0:
        return []
    if "id" not in table.columns:
        raise DataError(f"the {what} table has no 'id' column (columns: {', '.join(table.columns)})")
    fields = set(model.model_fields)
    cols = [c for c in table.columns if c in fields]
    out = []
    for row in table.select(cols).iter_rows(named=True):
        row = {k: (str(v) if k not in ("score", "rank") and v is not None else v) for k, v in row.items()}
        out.append(model(**row))
    return out


def _score_summary(selected: list[SelectedItem]) -> dict[str, float]:
    scores = [s.score for s in selected if s.score is not None]
    if not scores:
        return {}
    return {
        "count": float(len(scores)),
        "min": min(scores),
        "max": max(scores),
        "mean": sum(scores) / len(scores),
    }


def build_manifest(
    *,
    round: int,
    loop: str,
    inputs: Mapping[str, str | Path | pl.DataFrame | InputRef],
    params: Mapping[str, Any],
    strategy: str,
    selected: pl.DataFrame,
    strategy_params: Mapping[str, Any] | None = None,
    strategy_scores: Mapping[str, float] | None = None,
    annotations: pl.DataFrame | None = None,
    label_issues: pl.DataFrame | None = None,
    metrics: Mapping[str, float] | None = None,
    gate: Gate | bool = True,
    validation: Mapping[str, Any] | None = None,
    outputs: Mapping[str, str] | None = None,
    state: Mapping[str, Any] | None = None,
    input_ref_at: str | None = None,
) -> Manifest:
    """Assemble a round's manifest from the tables the loop already holds.

    Parameters
    ----------
    round : int
        The round number.
    loop : str
        The loop's name.
    inputs : mapping of str to path, table or InputRef
        Each input by role (``pool``, ``labeled``, ``eval``...): a file or folder (hashed
        from its bytes), a table (hashed from its Arrow IPC stream) or a ready
        :class:`InputRef`.
    params : mapping
        The loop's parameters (for example ``LoopConfig.model_dump(mode="json")``).
    strategy : str
        The selection strategy's name.
    selected : polars.DataFrame
        The selection: ``id`` plus any of ``kind``, ``score``, ``rank``, ``reason``.
    strategy_params : mapping, optional
        The strategy's constructor arguments.
    strategy_scores : mapping of str to float, optional
        Strategy-level scores; a summary (count/min/max/mean) of ``selected["score"]`` is
        added under the same keys unless given.
    annotations : polars.DataFrame, optional
        The annotations received this round (``ANNOTATION_COLUMNS``).
    label_issues : polars.DataFrame, optional
        The suspected issues: ``id``, ``issue``, ``score``, optionally ``given_label`` and
        ``suggested_label``.
    metrics : mapping of str to float, optional
        The round's metrics (accuracy, F1, label-error recall...).
    gate : Gate or bool
        The validation gate's outcome; ``False`` keeps the round out of main.
    validation : mapping, optional
        The validation report (rows, valid, quarantined, per-check counts).
    outputs : mapping of str to str, optional
        Role -> path of each table the round wrote into the version store.
    state : mapping, optional
        What the next round needs from this one (an annotation cursor, tasks pushed...).
    input_ref_at : str, optional
        The version-store ref inputs given as paths were read at.

    Returns
    -------
    Manifest
    """
    refs = []
    for name, src in inputs.items():
        refs.append(src if isinstance(src, InputRef) else input_ref(name, src, ref=input_ref_at))
    chosen = _rows(selected, SelectedItem, "selected")
    scores = {**_score_summary(chosen), **dict(strategy_scores or {})}
    return Manifest(
        round=round,
        loop=loop,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        inputs=refs,
        params=json.loads(json.dumps(dict(params), default=str)),
        strategy=StrategyRecord(name=strategy, params=dict(strategy_params or {}), scores=scores),
        selected=chosen,
        annotations=_rows(annotations, AnnotationRecord, "annotations"),
        label_issues=_rows(label_issues, LabelIssue, "label issues"),
        metrics={k: float(v) for k, v in (metrics or {}).items()},
        gate=gate if isinstance(gate, Gate) else Gate(passed=bool(gate)),
        validation=json.loads(json.dumps(dict(validation or {}), default=str)),
        outputs=dict(outputs or {}),
        state=json.loads(json.dumps(dict(state or {}), default=str)),
    )


def write_manifest(store: _Store, manifest: Manifest) -> str:
    """Stage the manifest into the round being written; return its path in the store.

    Write it through the store (not straight into the working tree) so that a crash before
    ``commit`` discards it with the rest of the round.
    """
    store.write_bytes(manifest.path, manifest.to_json().encode())
    return manifest.path


def read_manifest(store: _Store, ref: str) -> Manifest:
    """The manifest of the round at ``ref`` (located through its commit metadata): its tag
    (``LOOP/round-N``), its commit, or ``round-N`` when one loop's store holds that round."""
    rounds = store.history()
    short = [r for r in rounds if r.ref.rsplit("/", 1)[-1] == ref]
    for info in rounds:
        if ref in (info.ref, info.commit) or (len(short) == 1 and info is short[0]):
            if "curation.manifest" not in info.metadata:
                raise VersioningError(
                    f"round {info.ref} has no manifest in its commit metadata: it was not "
                    "committed with Manifest.commit_metadata()"
                )
            return Manifest.load(store.read_bytes(info.ref, info.metadata["curation.manifest"]))
    raise VersioningError(f"no round {ref!r}; rounds: {', '.join(r.ref for r in rounds) or 'none yet'}")
