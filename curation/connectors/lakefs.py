"""The lakeFS version store: a round is a branch, a commit, a merge into main and a tag.

A round goes ``begin`` -> ``write``... -> ``commit``:

- ``begin(N)`` makes sure the repository exists, finishes or discards what a crashed round
  left (see below), and creates the branch ``round-N`` from main.
- ``write`` uploads a file to the branch (staged, uncommitted).
- ``commit`` commits the branch with the metadata (the instant the round exists); if the
  round's validation gate passed (``metadata["curation.gate"] != "failed"``) merges it into
  main, the merge commit carrying the same metadata; tags the result ``round-N`` (the
  merge commit, or the branch commit when the gate failed); deletes the branch.

Recovery, on the next ``begin``: a ``round-N`` branch whose head is not a commit of round N
(a crash before the commit) is deleted with what it staged; one whose head is (a crash
after) is finished: merged unless main already holds the merge, tagged, deleted.

Tables are read and written through the ``lakefs`` SDK; :meth:`LakeFSStore.uri` and
:meth:`LakeFSStore.filesystem` give the same objects as ``lakefs://`` URIs through
``lakefs-spec``, for Ray Data, polars or pandas.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from curation.connectors.base import (
    GATE_KEY,
    ROUND_KEY,
    STORES,
    RoundInfo,
    RoundNames,
    atomic_write,
    norm_path,
    parquet_table,
)
from curation.errors import ConfigError, VersioningError
from curation.support.faults import checkpoint

if TYPE_CHECKING:
    import lakefs
    from lakefs_spec import LakeFSFileSystem

#: Environment variables read when the constructor leaves a setting unset.
ENV_ENDPOINT = "LAKEFS_ENDPOINT"
ENV_ACCESS_KEY_ID = "LAKEFS_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY = "LAKEFS_SECRET_ACCESS_KEY"
ENV_STORAGE_NAMESPACE = "LAKEFS_STORAGE_NAMESPACE"


def _parse_remote(uri: str | None) -> tuple[str, str]:
    """``lakefs://REPOSITORY[/BRANCH]`` -> (repository, branch)."""
    body = (uri or "").removeprefix("lakefs://").strip("/")
    if not uri or not uri.startswith("lakefs://") or not body:
        raise ConfigError(
            f"expected lakefs://REPOSITORY or lakefs://REPOSITORY/BRANCH, found {uri!r}",
            field="version.remote",
        )
    repo, _, branch = body.partition("/")
    return repo, branch or "main"


@STORES.register
class LakeFSStore:
    """Version rounds in a lakeFS repository.

    Parameters
    ----------
    repository : str, optional
        The lakeFS repository (created on the first ``begin`` if missing); or give ``remote``.
    endpoint : str, optional
        The lakeFS server, for example ``http://localhost:8000`` (``/api/v1`` is added).
        Default: ``$LAKEFS_ENDPOINT``, else lakectl's configuration (``~/.lakectl.yaml``,
        ``LAKECTL_*`` variables).
    access_key_id, secret_access_key : str, optional
        Credentials. Default: ``$LAKEFS_ACCESS_KEY_ID`` and ``$LAKEFS_SECRET_ACCESS_KEY``.
    storage_namespace : str, optional
        Where a new repository keeps its data (``s3://bucket/path``, ``local://name``).
        Default: ``$LAKEFS_STORAGE_NAMESPACE``, else ``local://{repository}``.
    main : str
        The branch that holds the rounds whose gate passed.
    root : Path
        The local folder ``checkout`` restores into when no destination is given.
    remote : str, optional
        ``lakefs://REPOSITORY`` or ``lakefs://REPOSITORY/BRANCH``: the repository and the main
        branch in one (a loop file's ``version: {name: lakefs, remote: lakefs://...}``).

    Examples
    --------
    With a lakeFS server at ``http://localhost:8000`` (keys in ``LAKEFS_*``)::

        store = LakeFSStore("curation", endpoint="http://localhost:8000")
        store.begin(1)
        store.write("data/labeled.parquet", df)
        store.commit("round 1", {"metrics.f1": "0.8"})      # 'round-1'
        pl.read_parquet(store.uri("round-1", "data/labeled.parquet"),
                        storage_options=store.storage_options())
    """

    name: ClassVar[str] = "lakefs"
    context: ClassVar[tuple[str, ...]] = ("root", "loop")

    def __init__(
        self,
        repository: str | None = None,
        endpoint: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        storage_namespace: str | None = None,
        main: str = "main",
        root: Path = Path("."),
        remote: str | None = None,
        loop: str | None = None,
    ) -> None:
        if remote is not None:
            repository, main = _parse_remote(remote)
        if not repository:
            raise ConfigError(
                "give the lakeFS repository: remote: lakefs://REPOSITORY[/BRANCH]", field="version.remote"
            )
        self.repository = repository
        self.loop = loop
        self.names = RoundNames(loop, sep="-")  # lakeFS refs hold no slash
        self.endpoint = endpoint
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.storage_namespace = storage_namespace
        self.main = main
        self.root = Path(root)
        self.round_: int | None = None
        self._client_: lakefs.Client | None = None

    @classmethod
    def from_uri(cls, uri: str | None, root: Path = Path(".")) -> LakeFSStore:
        """The store a ``version.remote`` names: ``lakefs://REPOSITORY[/BRANCH]``.

        The endpoint and keys come from the environment (see the class parameters).
        """
        repo, main = _parse_remote(uri)
        return cls(repo, main=main, root=Path(root))

    @property
    def head(self) -> str:
        """The main branch: it holds the last round whose gate passed."""
        return self.main

    # -- connection ----------------------------------------------------------------------

    def _settings(self) -> tuple[str | None, str | None, str | None]:
        endpoint = self.endpoint or os.environ.get(ENV_ENDPOINT)
        if endpoint:
            endpoint = endpoint.rstrip("/")
            if not endpoint.endswith("/api/v1"):
                endpoint += "/api/v1"
        key = self.access_key_id or os.environ.get(ENV_ACCESS_KEY_ID)
        secret = self.secret_access_key or os.environ.get(ENV_SECRET_ACCESS_KEY)
        return endpoint, key, secret

    def _client(self) -> lakefs.Client:
        if self._client_ is None:
            import lakefs
            from lakefs.exceptions import LakeFSException

            endpoint, key, secret = self._settings()
            try:
                if endpoint:
                    self._client_ = lakefs.Client(host=endpoint, username=key, password=secret)
                else:
                    self._client_ = lakefs.Client()
            except LakeFSException as e:
                raise VersioningError(
                    f"no lakeFS server configured for repository {self.repository!r}: set "
                    f"{ENV_ENDPOINT}, {ENV_ACCESS_KEY_ID} and {ENV_SECRET_ACCESS_KEY} "
                    "(or lakectl's ~/.lakectl.yaml)"
                ) from e
        return self._client_

    @contextlib.contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Translate lakeFS SDK and connection errors into :class:`VersioningError`."""
        from lakefs.exceptions import LakeFSException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except VersioningError:
            raise
        except LakeFSException as e:
            status = getattr(e, "status_code", None)
            reason = getattr(e, "reason", None) or getattr(e, "body", None) or e
            raise VersioningError(
                f"lakeFS {what} failed in repository {self.repository!r}"
                f"{f' (HTTP {status})' if status else ''}: {reason}"
            ) from e
        except (HTTPError, OSError) as e:
            raise VersioningError(
                f"cannot reach lakeFS at {self._settings()[0] or 'the configured endpoint'} "
                f"for {what}: {e}; check {ENV_ENDPOINT} and that the server runs"
            ) from e

    def _repo(self) -> lakefs.Repository:
        import lakefs

        return lakefs.Repository(self.repository, client=self._client())

    def _ensure_repo(self) -> None:
        namespace = (
            self.storage_namespace or os.environ.get(ENV_STORAGE_NAMESPACE) or f"local://{self.repository}"
        )
        with self._api("create repository"):
            self._repo().create(storage_namespace=namespace, default_branch=self.main, exist_ok=True)

    # -- a round -------------------------------------------------------------------------

    def _tags(self) -> dict[int, str]:
        """Round number -> commit id of every ``round-N`` tag (read from the tags API: a
        branch of the same name would win when the name is resolved as a ref)."""
        from lakefs.exceptions import NotFoundException
        from lakefs.reference import generate_listing

        out: dict[int, str] = {}
        with self._api("list tags"):
            api = self._client().sdk_client.tags_api
            try:
                for ref in generate_listing(api.list_tags, self.repository, prefix=self.names.prefix):
                    n = self.names.number(ref.id)
                    if n is not None and ref.id == self.names.ref(n):
                        out[n] = ref.commit_id
            except NotFoundException:
                return {}
        return out

    def begin(self, round: int) -> None:
        """Finish or discard a crashed round, then create the branch ``round-N`` from main.

        Raises
        ------
        VersioningError
            If ``round`` is not after the last committed round, or the server refuses.
        """
        self._ensure_repo()
        self.recover()
        tags = self._tags()
        if tags and round <= max(tags):
            last = max(tags)
            raise VersioningError(
                f"round {round} is not after the last committed round {last} "
                f"({self.names.ref(last)}): begin round {last + 1}"
            )
        with self._api(f"create branch {self.names.ref(round)}"):
            self._repo().branch(self.names.ref(round)).create(self.main)
        self.round_ = round

    def _branch(self) -> lakefs.Branch:
        if self.round_ is None:
            raise VersioningError("no round is being written: call begin(round) first")
        return self._repo().branch(self.names.ref(self.round_))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Upload ``data`` to ``path`` on the round's branch (staged until ``commit``)."""
        rel = norm_path(path)
        branch = self._branch()
        with self._api(f"upload {rel}"):
            branch.object(rel).upload(data, mode="wb", pre_sign=False)
        checkpoint("store-write")

    def include(self, paths: list[str]) -> None:
        """Upload these project files to the round's branch."""
        for path in paths:
            if (self.root / path).is_file():
                self.write_bytes(path, (self.root / path).read_bytes())

    def write(self, path: str, table: pl.DataFrame) -> None:
        """Upload ``table`` as Parquet to ``path`` on the round's branch."""
        buf = io.BytesIO()
        table.write_parquet(buf)
        self.write_bytes(path, buf.getvalue())

    def commit(self, message: str, metadata: dict[str, str]) -> str:
        """Commit the round's branch, merge it into main if its gate passed, tag it.

        Returns
        -------
        str
            The round's tag, ``round-N``.
        """
        branch = self._branch()
        n = self.round_
        assert n is not None
        meta = {str(k): str(v) for k, v in metadata.items()}
        meta[ROUND_KEY] = str(n)
        summary = " ".join(message.split()) or f"curation: round {n}"
        with self._api(f"commit {self.names.ref(n)}"):
            branch.commit(summary, metadata=meta, allow_empty=True)
        self.round_ = None  # the round exists; if what follows fails, the next begin finishes it
        checkpoint("lakefs:after-commit")
        self._finish(n)
        return self.names.ref(n)

    def _finish(self, n: int) -> None:
        """Merge (if the gate passed), tag and delete the branch of committed round ``n``."""
        repo = self._repo()
        ref = self.names.ref(n)
        with self._api(f"finish {ref}"):
            head = repo.branch(ref).get_commit()
            target = head.id
            if head.metadata.get(GATE_KEY, "passed") == "passed":
                target = self._merged(n) or repo.branch(ref).merge_into(
                    self.main,
                    message=head.message,
                    metadata=dict(head.metadata),
                    allow_empty=True,
                )
                checkpoint("lakefs:after-merge")
            if n not in self._tags():
                repo.tag(ref).create(target)
            checkpoint("lakefs:after-tag")
            repo.branch(ref).delete()

    def _merged(self, n: int) -> str | None:
        """The merge commit of round ``n`` on main, if a crashed run made it."""
        for commit in self._repo().branch(self.main).log(max_amount=20):
            if (commit.metadata or {}).get(ROUND_KEY) == str(n) and len(commit.parents) > 1:
                return commit.id
        return None

    def recover(self) -> str | None:
        """Finish a crashed round whose commit was made, or discard one whose commit was not.

        Returns
        -------
        str or None
            ``"finished"``, ``"discarded"`` or ``None`` (nothing to do).
        """
        from lakefs.exceptions import NotFoundException

        outcome = None
        try:
            with self._api("list branches"):
                branches = [b.id for b in self._repo().branches(prefix=self.names.prefix)]
        except VersioningError as e:
            if isinstance(e.__cause__, NotFoundException):
                return None  # no repository yet: nothing to recover
            raise
        for name in branches:
            n = self.names.number(name)
            if n is None:
                continue
            with self._api(f"read branch {name}"):
                head = self._repo().branch(name).get_commit()
            if head.metadata.get(ROUND_KEY) == str(n):
                self._finish(n)
                outcome = "finished"
            else:
                with self._api(f"delete branch {name}"):
                    self._repo().branch(name).delete()
                outcome = outcome or "discarded"
        return outcome

    def abort(self) -> None:
        """Discard the round being written: delete its branch and what it staged."""
        if self.round_ is None:
            return
        name = self.names.ref(self.round_)
        self.round_ = None
        with self._api(f"delete branch {name}"):
            head = self._repo().branch(name).get_commit()
            if (head.metadata or {}).get(ROUND_KEY) != str(self.names.number(name)):
                self._repo().branch(name).delete()

    # -- reading -------------------------------------------------------------------------

    def read_bytes(self, ref: str, path: str) -> bytes:
        """The content of ``path`` as of ``ref`` (a tag, branch or commit id)."""
        from lakefs.exceptions import NotFoundException

        rel, ref = norm_path(path), self.names.resolve(ref)
        with self._api(f"read {rel} at {ref}"):
            try:
                with self._repo().ref(ref).object(rel).reader(mode="rb", pre_sign=False) as r:
                    data = r.read()
                    return data.encode() if isinstance(data, str) else bytes(data)
            except NotFoundException as e:
                raise VersioningError(
                    f"{rel} is not versioned at {ref} in lakeFS repository "
                    f"{self.repository!r}; rounds: "
                    f"{', '.join(self.names.ref(n) for n in sorted(self._tags())) or 'none yet'}"
                ) from e

    def read(self, ref: str, path: str) -> pl.DataFrame:
        """The Parquet table at ``path`` as of ``ref``."""
        return parquet_table(self.read_bytes(ref, path), path, ref)

    def files(self, ref: str) -> dict[str, str]:
        """Every object as of ``ref``: path -> checksum."""
        ref = self.names.resolve(ref)
        with self._api(f"list objects at {ref}"):
            return {o.path: getattr(o, "checksum", "") for o in self._repo().ref(ref).objects()}

    def history(self) -> list[RoundInfo]:
        """The committed rounds (``round-N`` tags), oldest first."""
        refs = {n: (self.names.ref(n), cid) for n, cid in self._tags().items()}
        from lakefs.exceptions import NotFoundException

        with self._api("list branches"):
            try:
                branches = [b.id for b in self._repo().branches(prefix=self.names.prefix)]
            except NotFoundException:  # no repository yet
                branches = []
            for name in branches:  # committed, but a crash stopped it before its tag
                n = self.names.number(name)
                if n is None or n in refs:
                    continue
                head = self._repo().branch(name).get_commit()
                if head.metadata.get(ROUND_KEY) == str(n):
                    refs[n] = (head.id, head.id)
        rounds = []
        for n, (ref, commit_id) in sorted(refs.items()):
            with self._api(f"read commit of {ref}"):
                c = self._repo().commit(commit_id).get_commit()
            when = datetime.fromtimestamp(c.creation_date, UTC).isoformat()
            rounds.append(RoundInfo(n, ref, c.id, when, c.message, dict(c.metadata or {})))
        return rounds

    def changes(self) -> list[str]:
        """Nothing: lakeFS keeps no working tree (a checkout only downloads copies)."""
        return []

    def checkout(self, ref: str, dest: Path | None = None) -> list[str]:
        """Download every object of ``ref`` under ``dest`` (default: ``root``)."""

        dest = Path(dest) if dest is not None else self.root
        paths = list(self.files(ref))
        for rel in paths:
            atomic_write(dest / rel, self.read_bytes(ref, rel))
        return paths

    # -- lakefs:// URIs --------------------------------------------------------------------

    def uri(self, ref: str, path: str = "") -> str:
        """The ``lakefs://`` URI of ``path`` at ``ref``."""
        return f"lakefs://{self.repository}/{self.names.resolve(ref)}/{norm_path(path) if path else ''}"

    def storage_options(self) -> dict[str, Any]:
        """``lakefs-spec`` options for fsspec users (polars, pandas): host and credentials."""
        endpoint, key, secret = self._settings()
        opts: dict[str, Any] = {"pre_sign": False, "create_branch_ok": False}
        if endpoint:
            opts.update(host=endpoint, username=key, password=secret)
        return opts

    def filesystem(self) -> LakeFSFileSystem:
        """A ``lakefs-spec`` file system on this server, for ``lakefs://`` URIs.

        Ray Data takes it as ``filesystem=pyarrow.fs.PyFileSystem(FSSpecHandler(fs))``.
        """
        from lakefs_spec import LakeFSFileSystem

        return LakeFSFileSystem(**self.storage_options())
