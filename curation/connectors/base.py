"""The two outside-system extension points: an annotation queue and a version store.

Each is a Protocol with a registry (:data:`ANNOTATORS`, :data:`STORES`); implementations
register with the registry's decorator. Annotation tables have fixed columns (see
``TASK_COLUMNS`` and ``ANNOTATION_COLUMNS``); a connector may carry more task columns
through as task data.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol, runtime_checkable

import polars as pl

from curation.errors import VersioningError
from curation.support.manifest import GATE_KEY as GATE_KEY
from curation.support.manifest import METRIC_PREFIX as METRIC_PREFIX
from curation.support.manifest import ROUND_KEY as ROUND_KEY
from curation.support.registry import Registry

#: Columns every task table has. ``task_id`` is stable (``"{kind}:{id}"``): pushing the
#: same task twice must create one task. ``kind`` is ``"label"`` (label a new sample) or
#: ``"review"`` (check a suspected label error: ``given_label`` vs ``prediction``).
TASK_COLUMNS: dict[str, Any] = {
    "task_id": pl.String,
    "id": pl.String,
    "text": pl.String,
    "kind": pl.String,
    "round": pl.Int64,
    "strategy": pl.String,
    "reason": pl.String,
    "score": pl.Float64,
    "rank": pl.Int64,
    "prediction": pl.String,
    "prediction_score": pl.Float64,
    "given_label": pl.String,
}

#: Columns every annotation table has. ``status`` is ``"done"``, ``"skipped"`` or
#: ``"cancelled"`` (``label`` is null unless done). ``updated_at`` is ISO 8601, UTC.
ANNOTATION_COLUMNS: dict[str, Any] = {
    "task_id": pl.String,
    "id": pl.String,
    "kind": pl.String,
    "label": pl.String,
    "annotator": pl.String,
    "status": pl.String,
    "updated_at": pl.String,
}


def task_id(kind: str, row_id: object) -> str:
    """The stable task id of one sample for one kind of task."""
    return f"{kind}:{row_id}"


def parquet_table(data: bytes, path: str, ref: str) -> pl.DataFrame:
    """The Parquet table in ``data``, read from a version store at ``ref``."""
    try:
        return pl.read_parquet(io.BytesIO(data))
    except pl.exceptions.PolarsError as e:
        raise VersioningError(f"{path} at {ref} is not a Parquet table: {e}") from e


def norm_path(path: str) -> str:
    """``path`` as a clean relative POSIX path; refuse absolute paths and ``..``."""
    p = PurePosixPath(str(path).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or str(p) == ".":
        raise VersioningError(
            f"expected a path relative to the project root, found {path!r}: "
            "write inside the project, for example 'rounds/round-1/selection.parquet'"
        )
    return str(p)


def atomic_write(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` through a temporary file and a rename (never half a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.curation.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def empty_annotations() -> pl.DataFrame:
    """An annotation table with no rows."""
    return pl.DataFrame(schema=ANNOTATION_COLUMNS)


@dataclass(frozen=True)
class Project:
    """What a connector needs to know about the loop it serves.

    Attributes
    ----------
    name : str
        The loop's name (a Label Studio project title, a folder name, ...).
    labels : list of str
        The label choices.
    state_dir : Path
        A folder the connector may keep local state in (cursors, outboxes).
    """

    name: str
    labels: list[str]
    state_dir: Path


@dataclass
class Pulled:
    """The result of a pull: new or changed annotations, the cursor to pull from next, and the
    answers that could not be used, each with the reason (nothing is dropped unsaid)."""

    annotations: pl.DataFrame
    cursor: str | None
    skipped: list[str] = field(default_factory=list)


@runtime_checkable
class Annotator(Protocol):
    """An annotation queue. Idempotent: pushing the same ``task_id`` twice creates one task."""

    name: ClassVar[str]

    def push(self, project: Project, tasks: pl.DataFrame) -> int:
        """Queue ``tasks`` (``TASK_COLUMNS`` at least), in row order; return how many were new."""
        ...

    def pull(self, project: Project, since: str | None = None) -> Pulled:
        """Annotations created or changed after the cursor ``since`` (all when ``None``)."""
        ...

    def check(self) -> None:
        """Raise :class:`ConnectorError` if the connector cannot work (a missing token, a
        missing folder), without any request: a round calls it before its first step."""
        ...


def round_ref(round: int) -> str:
    """The ref (tag) of a committed round of a store with no loop name: ``round-3``."""
    return f"round-{round}"


class RoundNames:
    """How a store names one loop's rounds: ``LOOP/round-N`` (``LOOP-round-N`` where a ref
    may not hold a slash, as in lakeFS), or ``round-N`` for a store with no loop name. Two
    loops in one project keep apart histories; ``round-N`` still names this loop's round N.

    Examples
    --------
    >>> names = RoundNames("intents")
    >>> names.ref(3), names.number("intents/round-3"), names.number("other/round-3")
    ('intents/round-3', 3, None)
    >>> names.resolve("round-3"), names.resolve("HEAD")
    ('intents/round-3', 'HEAD')
    """

    def __init__(self, loop: str | None = None, sep: str = "/") -> None:
        self.loop = loop
        self.prefix = f"{loop}{sep}round-" if loop else "round-"

    def ref(self, n: int) -> str:
        """The tag of round ``n``."""
        return f"{self.prefix}{n}"

    def number(self, name: str) -> int | None:
        """The round a tag or branch name is of this loop's (``None`` if it is not)."""
        rest = name.removeprefix(self.prefix) if name.startswith(self.prefix) else ""
        return int(rest) if rest.isdigit() else None

    def resolve(self, ref: str) -> str:
        """A ref as given (``round-3``, ``intents/round-3``, ``HEAD``...) as the store's tag."""
        short = ref.removeprefix("round-")
        return self.ref(int(short)) if self.loop and ref.startswith("round-") and short.isdigit() else ref


@dataclass(frozen=True)
class RoundInfo:
    """One committed round, as listed by :meth:`VersionStore.history`.

    Attributes
    ----------
    round : int
        The round number.
    ref : str
        Its tag, ``round-N``; readable with :meth:`VersionStore.read`.
    commit : str
        The commit the tag points at (a git SHA or a lakeFS commit id).
    time : str
        When it was committed, ISO 8601, UTC.
    message : str
        The commit message's first line.
    metadata : dict of str to str
        The commit metadata (see :meth:`curation.support.manifest.Manifest.commit_metadata`).
    """

    round: int
    ref: str
    commit: str
    time: str
    message: str
    metadata: dict[str, str]

    @property
    def gate_passed(self) -> bool:
        """Whether the round's validation gate passed (rounds without the key passed)."""
        return self.metadata.get(GATE_KEY, "passed") == "passed"

    @property
    def metrics(self) -> dict[str, float | str]:
        """The ``metrics.*`` metadata, as numbers where they parse."""
        out: dict[str, float | str] = {}
        for k, v in self.metadata.items():
            if k.startswith(METRIC_PREFIX):
                try:
                    out[k[len(METRIC_PREFIX) :]] = float(v)
                except ValueError:
                    out[k[len(METRIC_PREFIX) :]] = v
        return out


#: The annotation connectors, by name (``name`` in ``connectors/*.yaml``).
ANNOTATORS: Registry[Annotator] = Registry(
    "connector",
    builtins=("curation.connectors.files", "curation.connectors.label_studio", "curation.connectors.oracle"),
)


@runtime_checkable
class VersionStore(Protocol):
    """Where rounds are versioned. A round is all or nothing: ``begin``, ``write``..., ``commit``.

    A crash anywhere between ``begin`` and the end of ``commit`` leaves either the previous
    round or the new one: the next ``begin`` finishes a round whose commit was made (tag,
    merge, push) and discards one whose commit was not. Every round commit carries
    ``metadata[ROUND_KEY]``; ``commit`` returns (and ``history`` lists) its tag ``round-N``.
    """

    name: ClassVar[str]
    #: Constructor arguments the factory supplies (``root``: the project; ``tracked``: the
    #: paths a round writes); the rest come from the loop's ``version`` section.
    context: ClassVar[tuple[str, ...]]

    @property
    def head(self) -> str:
        """The ref holding the last round whose gate passed: the base of the next round."""
        ...

    def begin(self, round: int) -> None:
        """Start round ``round``: check the store is ready, discard a half-written round."""
        ...

    def recover(self) -> str | None:
        """Finish a round a crash left committed, or discard one it left half-written
        (``"finished"``, ``"discarded"`` or ``None``); ``begin`` does it too."""
        ...

    def write(self, path: str, table: pl.DataFrame) -> None:
        """Stage ``table`` at ``path`` (relative to the project root) for the round being written."""
        ...

    def commit(self, message: str, metadata: dict[str, str]) -> str:
        """Make the round permanent, in one step; return its ref (for example ``round-3``)."""
        ...

    def read(self, ref: str, path: str) -> pl.DataFrame:
        """The table at ``path`` as of ``ref``."""
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Stage a file (a manifest, a report) at ``path`` for the round being written."""
        ...

    def include(self, paths: list[str]) -> None:
        """Version these project files as they are now (the loop, its contract, the pipeline
        and its params) with the round being written; missing ones are skipped."""
        ...

    def read_bytes(self, ref: str, path: str) -> bytes:
        """The content of the file at ``path`` as of ``ref``."""
        ...

    def abort(self) -> None:
        """Discard the round being written (what the next ``begin`` would do after a crash)."""
        ...

    def history(self) -> list[RoundInfo]:
        """The committed rounds, oldest first.

        A round whose commit a crash interrupted before its tag is listed under its commit
        id; the next ``begin`` tags it.
        """
        ...

    def files(self, ref: str) -> dict[str, str]:
        """Every versioned file as of ``ref``: path -> content hash (equal hash, equal content)."""
        ...

    def changes(self) -> list[str]:
        """Working-tree files that differ from the head: work a checkout would lose."""
        ...

    def checkout(self, ref: str, dest: Path | None = None) -> list[str]:
        """Restore the files of ``ref`` under ``dest`` (default: the store's working copy).

        Returns the paths written, relative to ``dest``.
        """
        ...


#: The version stores, by name (``version.name`` in a loop file).
STORES: Registry[VersionStore] = Registry(
    "version store",
    builtins=("curation.connectors.dvc", "curation.connectors.lakefs", "curation.connectors.local"),
)


def open_store(
    name: str,
    params: dict[str, Any] | None,
    root: Path,
    tracked: list[str] | None = None,
    *,
    loop: str | None = None,
    source: str | None = None,
) -> VersionStore:
    """The one factory of version stores: ``name`` with its config ``params``.

    Parameters
    ----------
    name : str
        ``dvc``, ``lakefs`` or ``local`` (see :data:`STORES`).
    params : dict, optional
        The rest of the loop's ``version`` section (``remote``, ...), checked against the
        store's constructor.
    root : Path
        The project root.
    tracked : list of str, optional
        The paths a round writes (the DVC store tracks them).
    loop : str, optional
        The loop whose rounds the store keeps (their tags are ``LOOP/round-N``: loops of one
        project keep apart histories); ``None``: plain ``round-N``.
    source : str, optional
        The loop file, for error messages.

    Examples
    --------
    >>> import tempfile
    >>> open_store("local", {}, Path(tempfile.mkdtemp())).name
    'local'
    """
    cls = STORES.get(name, field="version.name", source=source)
    given = {"root": Path(root), "tracked": list(tracked or []), "loop": loop}
    context = {k: v for k, v in given.items() if k in getattr(cls, "context", ("root",))}
    return STORES.create(name, params, field="version", source=source, **context)
