"""Label Studio: push 10,000 tasks with predictions, pull 10,000 annotations; ours vs one SDK call per task.

Against a real Label Studio server (started from ``.venv-ls`` on a free port with a
temporary data folder, or ``--url``/``--token-env`` for one that runs):

- push, ours: :meth:`curation.connectors.label_studio.LabelStudio.push` (lists the task ids
  already there, then imports the missing ones in chunks of 1,000, each with its prediction);
- push, per task: ``client.projects.import_tasks(id, request=[task])`` once per task (the
  task with its prediction), into a project of its own;
- pull, ours: :meth:`LabelStudio.pull` from no cursor on a project of 10,000 annotated
  tasks (lists the changed tasks, then reads their annotations through the JSON export, 500
  tasks a request);
- pull, per task: ``client.annotations.list(id=task)`` once per task, the task ids given
  (their listing is not timed, which favours the baseline).

The per-task contenders take long (a quarter of a second a call here): they are timed on
``--per-task`` tasks (1,000 by default) and the time is scaled to ``--n`` (linear: every
call is alike, and the project grows the same way); the JSON records that count.

Run: ``.venv/bin/python benchmarks/label_studio.py`` (10-15 minutes on the 2-core
development machine, most of it the per-task baselines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "label_studio.json"
LABELS = [f"intent_{i:02d}" for i in range(20)]

from curation.connectors.base import TASK_COLUMNS, Project  # noqa: E402
from curation.connectors.label_studio import LabelStudio  # noqa: E402
from curation.connectors.ls_format import labeling_config, to_ls_task  # noqa: E402


def tasks(n: int, prefix: str = "") -> pl.DataFrame:
    """``n`` label tasks with a prediction each, in priority order."""
    ids = [f"{prefix}{i}" for i in range(n)]
    return pl.DataFrame(
        {
            "task_id": [f"label:{i}" for i in ids],
            "id": ids,
            "text": [
                f"customer message number {i}: my card payment was declined twice today" for i in range(n)
            ],
            "kind": ["label"] * n,
            "round": [1] * n,
            "strategy": ["kcenter"] * n,
            "reason": ["far from the labeled data"] * n,
            "score": [1.0 - i / n for i in range(n)],
            "rank": list(range(n)),
            "prediction": [LABELS[i % len(LABELS)] for i in range(n)],
            "prediction_score": [0.4 + (i % 50) / 100 for i in range(n)],
            "given_label": [None] * n,
        },
        schema=TASK_COLUMNS,
    )


def annotated(row: dict[str, Any], i: int) -> dict[str, Any]:
    t = to_ls_task(row)
    t["annotations"] = [
        {
            "result": [
                {
                    "from_name": "label",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": [LABELS[(i * 7) % len(LABELS)]]},
                }
            ]
        }
    ]
    return t


def new_project(ls: LabelStudio, title: str) -> int:
    c = ls.client()
    return int(c.projects.create(title=title, label_config=labeling_config(LABELS)).id)


def bench(url: str, token_env: str, n: int, per_task_n: int, tmp: Path) -> dict[str, Any]:
    stamp = time.strftime("%H%M%S")
    ls = LabelStudio(url=url, token_env=token_env, chunk_size=1000, page_size=1000, timeout_s=300)
    c = ls.client()
    table = tasks(n)
    rows = table.to_dicts()

    # push, ours
    p = Project(f"bench-push-ours-{stamp}", LABELS, tmp / "push")
    t0 = time.perf_counter()
    pushed = ls.push(p, table)
    push_ours = time.perf_counter() - t0
    assert pushed == n, pushed
    print(f"push ours: {n} tasks in {push_ours:.1f}s", flush=True)

    # push, one SDK call per task
    pid = new_project(ls, f"bench-push-per-task-{stamp}")
    t0 = time.perf_counter()
    for r in rows[:per_task_n]:
        c.projects.import_tasks(id=pid, request=[to_ls_task(r)])
    push_per = (time.perf_counter() - t0) * n / per_task_n
    print(
        f"push per task: {per_task_n} tasks in {(time.perf_counter() - t0):.1f}s -> {push_per:.1f}s for {n}",
        flush=True,
    )

    # pull: a project of n annotated tasks
    pull_p = Project(f"bench-pull-{stamp}", LABELS, tmp / "pull")
    pull_pid = ls.project_id_for(pull_p)
    for i in range(0, n, 1000):
        c.projects.import_tasks(
            id=pull_pid, request=[annotated(r, i + j) for j, r in enumerate(rows[i : i + 1000])]
        )
    fresh = LabelStudio(url=url, token_env=token_env, chunk_size=1000, page_size=1000, timeout_s=300)
    t0 = time.perf_counter()
    pulled = fresh.pull(pull_p)
    pull_ours = time.perf_counter() - t0
    assert len(pulled.annotations) == n, len(pulled.annotations)
    print(f"pull ours: {len(pulled.annotations)} annotations in {pull_ours:.1f}s", flush=True)

    ids = sorted(i for v in fresh.existing(pull_p).values() for i in v)[:per_task_n]
    t0 = time.perf_counter()
    got = 0
    for tid in ids:
        got += len(c.annotations.list(id=tid))
    pull_per = (time.perf_counter() - t0) * n / per_task_n
    assert got == per_task_n, got
    print(
        f"pull per task: {per_task_n} tasks in {(time.perf_counter() - t0):.1f}s -> {pull_per:.1f}s for {n}",
        flush=True,
    )
    return {
        "push_s": {"ours": round(push_ours, 2), "per_task": round(push_per, 2)},
        "pull_s": {"ours": round(pull_ours, 2), "per_task": round(pull_per, 2)},
        "tasks": n,
        "per_task_measured_on": per_task_n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="tasks pushed and annotations pulled")
    ap.add_argument(
        "--per-task",
        type=int,
        default=1000,
        help="tasks the per-task baselines run on, scaled to --n (default 1000)",
    )
    ap.add_argument("--url", help="an already running Label Studio (default: start one from .venv-ls)")
    ap.add_argument("--token-env", default="LABEL_STUDIO_API_KEY", help="with --url: the token's variable")
    args = ap.parse_args()
    per_task = min(args.per_task, args.n)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-ls-") as tmp:
        server = None
        if args.url:
            url, token_env = args.url, args.token_env
        else:
            from tests.support.label_studio_server import TOKEN, LabelStudioServer

            server = LabelStudioServer(Path(tmp) / "server")
            print(f"starting Label Studio on {server.url} ...", flush=True)
            server.start()
            url, token_env = server.url, "CURATION_BENCH_LS_TOKEN"
            os.environ[token_env] = TOKEN
        try:
            res = bench(url, token_env, args.n, per_task, Path(tmp))
        finally:
            if server is not None:
                server.stop()
    print()
    print(f"Label Studio, {args.n:,} tasks (per-task baselines measured on {per_task:,}, scaled)")
    print(f"{'':10} {'ours (s)':>10} {'per task (s)':>14} {'speed-up':>9}")
    for key, name in (("push_s", "push"), ("pull_s", "pull")):
        o, p = res[key]["ours"], res[key]["per_task"]
        print(f"{name:10} {o:>10.1f} {p:>14.1f} {p / o:>8.1f}x")
    res["load_avg"] = round(max(load_before, os.getloadavg()[0]), 2)  # the server shares the 2 cores
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
