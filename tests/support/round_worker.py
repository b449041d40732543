"""Run one round through a version store, and stop at a named point so a test can kill it.

``python tests/round_worker.py CONFIG_JSON ROUND [POINT]`` runs round ``ROUND`` like the
loop does (``begin``, writes, a manifest, ``commit``); with ``POINT`` it prints ``AT POINT``
when it gets there and waits, for ``test_round_faults.py`` to SIGKILL it. The same
functions run the round again in the test process, as a rerun of ``curation run`` would.

Points (what has happened when the process is killed):

- dvc: ``mid-write`` (one of three files written), ``during-dvc-add`` (``dvc add`` running,
  orphaned by the kill), ``before-git-commit`` (data added and pushed), ``after-git-commit``
  (the round's commit made, not yet tagged), ``after-tag`` (tagged, journal not cleared).
- lakefs: ``mid-write`` (one upload staged), ``after-commit`` (branch committed, not merged),
  ``after-merge`` (merged into main, not tagged), ``after-tag`` (tagged, branch not deleted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from curation.connectors.base import VersionStore
from curation.errors import VersioningError
from curation.support.manifest import build_manifest, write_manifest

LABELS = ["billing", "card", "transfer"]


def labeled(n: int) -> pl.DataFrame:
    """The labeled table as of round ``n``: rows up to s(2+2n); round n relabels row n-1,
    and rows from round 2 on lack s0: round 2 adds, relabels and removes rows."""
    ids = list(range(1 if n >= 2 else 0, 3 + 2 * n))
    labels = [LABELS[(i + (1 if i == n - 1 else 0)) % 3] for i in ids]
    return pl.DataFrame({"id": [f"s{i}" for i in ids], "text": [f"text {i}" for i in ids], "label": labels})


def selection(n: int) -> pl.DataFrame:
    """The samples round ``n`` selected, with a score and a reason each."""
    return pl.DataFrame(
        {
            "id": [f"s{3 + 2 * n - 2}", f"s{3 + 2 * n - 1}"],
            "score": [0.9, 0.7],
            "reason": ["farthest from the labeled set", "second farthest"],
        }
    )


def make_store(config: dict[str, Any]) -> VersionStore:
    """A store from a JSON-able config (``backend`` plus its constructor arguments)."""
    cfg = dict(config)
    backend = cfg.pop("backend")
    if backend == "dvc":
        from curation.connectors.dvc import DvcStore

        return DvcStore(Path(cfg.pop("root")), **cfg)
    from curation.connectors.lakefs import LakeFSStore

    return LakeFSStore(**cfg)


def run_round(store: VersionStore, n: int) -> str:
    """Run round ``n``; if a crashed run already committed it, let ``begin`` finish it.

    Returns the round's ref, or ``"resumed"`` when an earlier run had committed it.
    """
    try:
        store.begin(n)
    except VersioningError:
        if any(r.round == n for r in store.history()):
            return "resumed"
        raise
    store.write("data/labeled.parquet", labeled(n))
    store.write(f"rounds/round-{n}/selection.parquet", selection(n))
    manifest = build_manifest(
        round=n,
        loop="faults",
        inputs={"labeled": labeled(n - 1)},
        params={"budget": 2},
        strategy="kcenter",
        selected=selection(n),
        metrics={"accuracy": n / 10},
        outputs={"labeled": "data/labeled.parquet"},
    )
    write_manifest(store, manifest)
    return store.commit(f"round {n}", manifest.commit_metadata())


def _stop(point: str) -> None:
    print(f"AT {point}", flush=True)
    time.sleep(300)  # the test kills the process here
    raise SystemExit(f"not killed at {point}")


def _wrap(owner: Any, attr: str, point: str, when: str, match: Any = None, nth: int = 1) -> None:
    orig = getattr(owner, attr)
    seen = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = match is None or match(args[1:], kwargs)
        if hit:
            seen["n"] += 1
        if hit and when == "before" and seen["n"] == nth:
            _stop(point)
        out = orig(*args, **kwargs)
        if hit and when == "after" and seen["n"] == nth:
            _stop(point)
        return out

    setattr(owner, attr, wrapper)


def arm(backend: str, point: str) -> None:
    """Patch the store so the process stops at ``point``."""
    if backend == "dvc":
        import curation.connectors.dvc as dvc_mod
        from curation.connectors.dvc import DvcStore

        if point == "during-dvc-add":
            orig_run = dvc_mod._run

            def run(cmd: list[str], cwd: Path, pass_fds: tuple[int, ...] = (), env: Any = None) -> str:
                if "add" in cmd and "dvc" in cmd:  # start `dvc add`, then wait to be killed
                    subprocess.Popen(
                        cmd,
                        cwd=cwd,
                        env=env or dvc_mod.ENV,
                        pass_fds=pass_fds,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    _stop(point)
                return orig_run(cmd, cwd, pass_fds, env)

            dvc_mod._run = run
            return
        git_is = lambda sub: lambda a, k: a and a[0] == sub  # noqa: E731
        spots = {
            "mid-write": (DvcStore, "write", "after", None),
            "before-git-commit": (DvcStore, "_git", "before", git_is("commit")),
            "after-git-commit": (DvcStore, "_git", "after", git_is("commit")),
            "after-tag": (DvcStore, "_git", "after", git_is("tag")),
        }
    else:
        import lakefs

        from curation.connectors.lakefs import LakeFSStore

        spots = {
            "mid-write": (LakeFSStore, "write", "after", None),
            "after-commit": (lakefs.Branch, "commit", "after", None),
            "after-merge": (lakefs.Reference, "merge_into", "after", None),
            "after-tag": (lakefs.Tag, "create", "after", None),
        }
    if point not in spots:
        raise SystemExit(f"unknown point {point!r} for {backend}; expected one of {sorted(spots)}")
    owner, attr, when, match = spots[point]
    _wrap(owner, attr, point, when, match)


def main() -> None:
    config = json.loads(sys.argv[1])
    n = int(sys.argv[2])
    if len(sys.argv) > 3:
        arm(config["backend"], sys.argv[3])
    print(run_round(make_store(config), n), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
