"""The Label Studio annotator: a real annotator queue, through ``label-studio-sdk``.

Push imports tasks in chunks, in the loop's priority order, each with the model's
suggestion as a prediction (pre-annotation). Every task carries our stable ``task_id``
in its data; a push first lists the ``task_id`` values already in the project and imports
only the missing ones, so pushing twice, or again after a failure half-way, creates each
task once. After a failed call the push re-lists what landed before it resumes, and when
any call failed it ends by deleting duplicates a lost response may have left.

Pull reads only the tasks whose ``updated_at`` moved past the cursor (annotations created,
updated or deleted bump it), then their annotations through the JSON export.

Transient faults (connection refused or reset, timeouts, 5xx, 408, 429) are retried with
exponential backoff and jitter; a bad token, a missing permission or a deleted project
raise :class:`~curation.errors.ConnectorError` with what to do.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import polars as pl

from curation.connectors.base import ANNOTATORS, Project, Pulled, empty_annotations
from curation.connectors.ls_format import from_ls_export, labeling_config, to_ls_task
from curation.connectors.retry import Backoff, Transient
from curation.errors import ConnectorError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Webhook events the ``serve`` receiver listens to.
ANNOTATION_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]

_EXPORT_BATCH = 500  # task ids per export request (Django accepts at most 1,000 query fields)


class _NotFound(Exception):
    """A 404 from Label Studio (turned into a clear ConnectorError by the caller)."""


def _ls_time(value: Any) -> str:
    """Label Studio's own timestamp format, with microseconds: ``2026-01-02T03:04:05.123456Z``."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def _retry_after(headers: Any) -> float | None:
    try:
        v = (headers or {}).get("retry-after") or (headers or {}).get("Retry-After")
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _chunks(seq: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@ANNOTATORS.register
class LabelStudio:
    """Push tasks to, and pull annotations from, a Label Studio project.

    Parameters
    ----------
    url : str
        The Label Studio server, for example ``http://localhost:8080``.
    token_env : str
        The environment variable holding the access token (a personal access token or a
        legacy token, from Account & Settings). The token itself is never in a file.
    project_title : str, optional
        The project's title; the loop's name by default. A project with this exact title
        is reused, else one is created.
    project_id : int, optional
        Use this existing project instead of looking one up by title.
    overlap : int
        How many annotators label each task (Label Studio's ``maximum_annotations``).
        With 2 or more, pulls carry several annotations per task for reconciliation.
    chunk_size : int
        Tasks per import request.
    page_size : int
        Tasks per listing request.
    timeout_s : float
        Seconds to wait for one request.
    retries : int
        Tries after the first for a call that failed for a transient reason.
    backoff_s, max_backoff_s : float
        The first and the longest wait between tries (exponential, with jitter).
    model_version : str
        The name predictions are stored under.
    instruction : str, optional
        Instructions shown to annotators (Label Studio's ``expert_instruction``).

    Examples
    --------
    >>> ls = LabelStudio(url="http://localhost:8080", token_env="LABEL_STUDIO_API_KEY")
    >>> ls.name, ls.chunk_size
    ('label_studio', 1000)
    """

    name: ClassVar[str] = "label_studio"

    def __init__(
        self,
        url: str = "http://localhost:8080",
        token_env: str = "LABEL_STUDIO_API_KEY",
        project_title: str | None = None,
        project_id: int | None = None,
        overlap: int = 1,
        chunk_size: int = 1000,
        page_size: int = 1000,
        timeout_s: float = 60.0,
        retries: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        model_version: str = "curation",
        instruction: str | None = None,
    ) -> None:
        self.url = url
        self.token_env = token_env
        self.project_title = project_title
        self.project_id = project_id
        self.overlap = overlap
        self.chunk_size = chunk_size
        self.page_size = page_size
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.model_version = model_version
        self.instruction = instruction

    # ------------------------------------------------------------------ plumbing

    @property
    def backoff(self) -> Backoff:
        """The retry policy built from ``retries``, ``backoff_s`` and ``max_backoff_s``."""
        return Backoff(self.retries, self.backoff_s, self.max_backoff_s)

    def check(self) -> None:
        """Fail now, before any compute, if the token is missing (no request is made)."""
        if not os.environ.get(self.token_env, "").strip():
            raise ConnectorError(
                f"label_studio: no token in ${self.token_env}; set it to a Label Studio access "
                f"token (Account & Settings > Personal Access Token), or name another variable "
                f"with token_env in the connector profile"
            )

    def client(self) -> Any:
        """The ``label_studio_sdk.LabelStudio`` client (made once; the SDK's own retries off)."""
        c = getattr(self, "_client_", None)
        if c is None:
            from label_studio_sdk import LabelStudio as SDK

            self.check()
            token = os.environ[self.token_env].strip()
            try:
                c = SDK(base_url=self.url.rstrip("/"), api_key=token, timeout=self.timeout_s, max_retries=0)
            except Exception as e:  # the SDK rejects an expired JWT here
                raise ConnectorError(
                    f"label_studio: the token in ${self.token_env} is not usable: {e}"
                ) from e
            self._client_ = c
        return c

    def _once(self, fn: Callable[[], T], what: str) -> T:
        """Call ``fn`` once, translating the SDK's and httpx's errors."""
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            return fn()
        except httpx.TimeoutException as e:
            raise Transient(f"{what}: timed out after {self.timeout_s}s") from e
        except httpx.TransportError as e:
            raise Transient(f"{what}: {type(e).__name__}: {e}") from e
        except json.JSONDecodeError as e:
            raise Transient(f"{what}: truncated or non-JSON answer ({e})") from e
        except ApiError as e:
            code = e.status_code
            if code is None or code >= 500 or code in (408, 409, 429) or 200 <= code < 300:
                # (a 2xx the SDK could not parse is a truncated answer)
                raise Transient(f"{what}: HTTP {code}", _retry_after(e.headers)) from e
            if code == 401:
                raise ConnectorError(
                    f"label_studio: {self.url} refused the token in ${self.token_env} (HTTP 401); "
                    f"check it is a valid access token for this server"
                ) from e
            if code == 403:
                raise ConnectorError(
                    f"label_studio: the token in ${self.token_env} may not {what} on {self.url} "
                    f"(HTTP 403); use a token of a user with access to the project"
                ) from e
            if code == 404:
                raise _NotFound(what) from e
            body = str(e.body)[:500]
            raise ConnectorError(f"label_studio: {what} failed with HTTP {code}: {body}") from e

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Call ``fn`` with retries (backoff and jitter) on transient faults."""
        try:
            return self.backoff.call(lambda: self._once(fn, what), what)
        except Transient as e:
            raise ConnectorError(
                f"label_studio: {what} at {self.url} still failing after {self.retries} retries "
                f"({e}); is the server up? Run again when it is: a push resumes where it stopped"
            ) from e

    # ------------------------------------------------------------------ project

    def _title(self, project: Project) -> str:
        return self.project_title or project.name

    def _state_path(self, project: Project) -> Path:
        return project.state_dir / "label_studio.json"

    def _gone(self, project: Project, pid: int) -> ConnectorError:
        return ConnectorError(
            f"label_studio: project {pid} ({self._title(project)!r}) is not on {self.url}: it was "
            f"deleted, or the token's user cannot see it. Its tasks and annotations cannot be "
            f"reached. To start a new project, delete {self._state_path(project)} (and unset "
            f"project_id in the connector profile); to use another, set project_id"
        )

    def project_id_for(self, project: Project) -> int:
        """The Label Studio project of the loop: found, or created with the loop's labeling config.

        The id is remembered in ``state_dir/label_studio.json``; a remembered project that is
        gone raises an error instead of silently starting an empty one. With no labels in
        ``project`` (a webhook receiver, say) the project must exist and is left as it is.
        """
        known: dict[Path, int] = self.__dict__.setdefault("projects_", {})
        if self._state_path(project) in known:
            return known[self._state_path(project)]
        c = self.client()
        state = self._state_path(project)
        config = labeling_config(project.labels)
        pid = self.project_id
        if pid is None and state.is_file():
            saved = json.loads(state.read_text(encoding="utf-8"))
            if saved.get("url") == self.url:
                pid = int(saved["project_id"])
        if pid is not None:
            try:
                p = self._call(lambda: c.projects.get(id=pid), "read the project")
            except _NotFound:
                raise self._gone(project, pid) from None
        else:
            title = self._title(project)
            found = self._call(lambda: list(c.projects.list(title=title, page_size=100)), "list projects")
            same = sorted((p for p in found if p.title == title), key=lambda p: p.id)
            if same:
                p = same[0]
                log.info("label_studio: reusing project %s (%r)", p.id, title)
            elif not project.labels:
                raise ConnectorError(
                    f"label_studio: no project {title!r} on {self.url}, and no label "
                    f"choices to create it with; run a round of the loop first"
                )
            else:
                p = self._call(
                    lambda: c.projects.create(
                        title=title,
                        label_config=config,
                        maximum_annotations=self.overlap,
                        sampling="Sequential sampling",
                        show_skip_button=True,
                        expert_instruction=self.instruction or "",
                        show_instruction=bool(self.instruction),
                    ),
                    "create the project",
                )
                log.info("label_studio: created project %s (%r)", p.id, title)
            pid = int(p.id)
        stale = (p.label_config or "").strip() != config.strip() or (
            p.maximum_annotations or 1
        ) != self.overlap
        if project.labels and stale:
            try:
                self._call(
                    lambda: c.projects.update(id=pid, label_config=config, maximum_annotations=self.overlap),
                    "update the labeling config",
                )
            except _NotFound:
                raise self._gone(project, pid) from None
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"url": self.url, "project_id": pid, "title": p.title}), encoding="utf-8")
        known[state] = pid
        return pid

    # ------------------------------------------------------------------ listing

    def _scan(self, project: Project, pid: int, filters: list[dict[str, Any]], include: str) -> Iterator[Any]:
        """Every task matching ``filters``, by ascending Label Studio id (keyset pages, so
        tasks changing meanwhile never shift a page)."""
        c = self.client()
        last = 0
        while True:
            items = filters + [
                {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": last}
            ]
            query = json.dumps({"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]})
            try:
                page = self._call(
                    lambda query=query: (  # type: ignore[misc]
                        c.tasks.list(
                            project=pid,
                            fields="task_only",
                            include=include,
                            query=query,
                            page=1,
                            page_size=self.page_size,
                        ).items
                    ),
                    "list tasks",
                )
            except _NotFound:
                raise self._gone(project, pid) from None
            if not page:
                return
            yield from page
            last = int(page[-1].id)
            if len(page) < self.page_size:
                return

    def existing(self, project: Project) -> dict[str, list[int]]:
        """The project's curation tasks: ``task_id`` -> Label Studio task ids (one, unless duplicated)."""
        pid = self.project_id_for(project)
        out: dict[str, list[int]] = {}
        for t in self._scan(project, pid, [], "id,data"):
            tid = (t.data or {}).get("task_id")
            if tid is not None:
                out.setdefault(str(tid), []).append(int(t.id))
        return out

    # ------------------------------------------------------------------ push

    def push(self, project: Project, tasks: pl.DataFrame) -> int:
        """Import the tasks the project does not hold yet, in row order; return how many.

        Raises
        ------
        ConnectorError
            A bad token, a deleted project, or a server still failing after the retries
            (run again: the push resumes where it stopped).
        """
        missing = {"task_id", "text"} - set(tasks.columns)
        if missing:
            raise ConnectorError(f"label_studio: task table lacks columns {sorted(missing)}")
        pid = self.project_id_for(project)
        rows = tasks.unique(subset=["task_id"], keep="first", maintain_order=True).to_dicts()
        have = self.existing(project)
        if any(len(ids) > 1 for ids in have.values()):  # left by an earlier push's lost answers
            self._delete_duplicates(project, pid)
        todo = [r for r in rows if r["task_id"] not in have]
        if not todo:
            return 0
        c = self.client()
        backoff = self.backoff
        pending, attempt, failed = todo, 0, False
        while pending:
            chunk = pending[: self.chunk_size]
            payload = [to_ls_task(r, self.model_version) for r in chunk]
            try:
                self._once(
                    lambda payload=payload: c.projects.import_tasks(  # type: ignore[misc]
                        id=pid, request=payload, commit_to_project=True
                    ),
                    "import tasks",
                )
            except _NotFound:
                raise self._gone(project, pid) from None
            except Transient as e:
                failed = True
                if attempt >= self.retries:
                    raise ConnectorError(
                        f"label_studio: import at {self.url} still failing after {self.retries} retries "
                        f"({e}); {len(todo) - len(pending)} of {len(todo)} tasks are in. Run again when "
                        f"the server is up: the push resumes where it stopped"
                    ) from e
                wait = backoff.delay(attempt, e.retry_after)
                log.warning(
                    "label_studio: import failed (%s); retry %d/%d in %.1fs",
                    e,
                    attempt + 1,
                    self.retries,
                    wait,
                )
                time.sleep(wait)
                attempt += 1
                have = self.existing(project)  # what landed before the failure is not sent again
                pending = [r for r in pending if r["task_id"] not in have]
                continue
            pending = pending[len(chunk) :]
            attempt = 0
        if failed:
            self._delete_duplicates(project, pid)
        return len(todo)

    def _delete_duplicates(self, project: Project, pid: int) -> int:
        """Delete the extra copies of any ``task_id`` held twice (an import whose answer was
        lost but which the server still committed), keeping the copy with the most answers;
        return how many were deleted. Every push ends with one task per ``task_id``."""
        from label_studio_sdk.actions.types.prepare_params_request_request_selected_items_included import (
            PrepareParamsRequestRequestSelectedItemsIncluded as Included,
        )

        copies: dict[str, list[tuple[int, int]]] = {}
        for t in self._scan(project, pid, [], "id,data,total_annotations,cancelled_annotations"):
            tid = (t.data or {}).get("task_id")
            if tid is not None:
                done = (t.total_annotations or 0) + (t.cancelled_annotations or 0)
                copies.setdefault(str(tid), []).append((-done, int(t.id)))
        # keep the copy annotators worked on (the most answers; else the first): drop the rest
        extra = sorted(i for found in copies.values() for _, i in sorted(found)[1:])
        if not extra:
            return 0
        log.warning("label_studio: deleting %d duplicate tasks left by lost answers", len(extra))
        c = self.client()
        for batch in _chunks(extra, self.chunk_size):
            self._call(
                lambda batch=batch: c.actions.create(  # type: ignore[misc]
                    id="delete_tasks", project=pid, selected_items=Included(all_=False, included=batch)
                ),
                "delete duplicate tasks",
            )
        return len(extra)

    # ------------------------------------------------------------------ pull

    def _users(self) -> dict[int, str]:
        c = self.client()
        users = self._call(lambda: c.users.list(), "list users")
        return {int(u.id): (u.email or u.username or str(u.id)) for u in users}

    def _export(self, project: Project, pid: int, ids: list[int]) -> list[dict[str, Any]]:
        c = self.client()

        def fetch() -> list[dict[str, Any]]:
            chunks = c.projects.exports.download_sync(
                pid,
                export_type="JSON",
                download_all_tasks=True,
                request_options={"additional_query_parameters": {"ids[]": ids}},
            )
            return json.loads(b"".join(chunks))

        try:
            return self._call(fetch, "export annotations")
        except _NotFound:
            raise self._gone(project, pid) from None

    def changed(self, project: Project, since: str | None = None) -> tuple[list[int], str | None]:
        """Label Studio ids of the annotated tasks changed after ``since``, and the new cursor.

        The cursor is the newest ``updated_at`` when the listing starts; tasks that change
        while it runs are left to the next pull.
        """
        pid = self.project_id_for(project)
        c = self.client()
        after = (
            [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}]
            if since
            else []
        )
        query = json.dumps(
            {"filters": {"conjunction": "and", "items": after}, "ordering": ["-tasks:updated_at"]}
        )
        try:
            top = self._call(
                lambda: (
                    c.tasks.list(
                        project=pid,
                        fields="task_only",
                        include="id,updated_at",
                        query=query,
                        page=1,
                        page_size=1,
                    ).items
                ),
                "list changed tasks",
            )
        except _NotFound:
            raise self._gone(project, pid) from None
        if not top:
            return [], since
        upper = _ls_time(top[0].updated_at)
        window = after + [
            {
                "filter": "filter:tasks:updated_at",
                "operator": "less_or_equal",
                "type": "Datetime",
                "value": upper,
            }
        ]
        ids = [
            int(t.id)
            for t in self._scan(project, pid, window, "id,total_annotations,cancelled_annotations")
            if (t.total_annotations or 0) + (t.cancelled_annotations or 0) > 0
        ]
        return ids, upper

    def pull(self, project: Project, since: str | None = None) -> Pulled:
        """The annotations of every task changed after the cursor ``since`` (all when ``None``).

        A changed task comes with all its current annotations (done, skipped, cancelled);
        the annotator is the user's email.
        """
        pid = self.project_id_for(project)
        ids, cursor = self.changed(project, since)
        if not ids:
            return Pulled(empty_annotations(), cursor)
        users = self._users()
        tasks: list[dict[str, Any]] = []
        for batch in _chunks(ids, _EXPORT_BATCH):
            for t in self._export(project, pid, batch):
                for a in t.get("annotations") or []:
                    who = a.get("completed_by")
                    if isinstance(who, int):
                        a["completed_by"] = {"id": who, "email": users.get(who, str(who))}
                tasks.append(t)
        return Pulled(from_ls_export(tasks), cursor)

    # ------------------------------------------------------------------ webhooks

    def ensure_webhook(
        self, project: Project, url: str, headers: dict[str, str], actions: list[str] | None = None
    ) -> int:
        """Register (or update) the project's webhook to ``url``; return its id.

        Parameters
        ----------
        url : str
            Where Label Studio sends events (the ``curation serve`` receiver).
        headers : dict of str to str
            Sent with every event; carries the shared secret.
        actions : list of str, optional
            The events; annotation created, updated and deleted by default.
        """
        pid = self.project_id_for(project)
        c = self.client()
        actions = actions or ANNOTATION_ACTIONS
        hooks = self._call(lambda: c.webhooks.list(project=str(pid)), "list webhooks")
        for h in hooks:
            if h.url == url and h.project == pid:
                self._call(
                    lambda h=h: c.webhooks.update(  # type: ignore[misc]
                        id=h.id,
                        url=url,
                        headers=headers,
                        actions=actions,
                        is_active=True,
                        send_payload=True,
                        send_for_all_actions=False,
                    ),
                    "update the webhook",
                )
                return int(h.id)
        h = self._call(
            lambda: c.webhooks.create(
                url=url,
                project=pid,
                headers=headers,
                actions=actions,
                is_active=True,
                send_payload=True,
                send_for_all_actions=False,
            ),
            "create the webhook",
        )
        return int(h.id)
