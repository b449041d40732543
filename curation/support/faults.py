"""Named points in a round at which a test can stop the real process, to kill it there.

``CURATION_STOP_AT=NAME`` (or ``NAME#K``, the K-th time NAME is reached) makes the process
print ``CURATION_STOPPED_AT NAME`` on stderr when it gets there and wait to be killed. Unset,
a checkpoint costs one dictionary lookup. The fault suite (``tests/orchestration/
test_faults.py``) kills ``curation run`` at each point and checks what a rerun recovers.

Points: ``after-validate``, ``after-embed``, ``after-issues``, ``after-select``, ``after-push``,
``after-annotate``, ``before-version`` (the round); ``store-write`` (every table or file a
store stages); ``local:after-commit``; ``dvc:before-add``, ``dvc:before-git-commit``,
``dvc:after-git-commit``, ``dvc:after-tag``; ``lakefs:after-commit``, ``lakefs:after-merge``,
``lakefs:after-tag``.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "CURATION_STOP_AT"
_seen: dict[str, int] = {}


def checkpoint(name: str) -> None:
    """Stop here (forever, until killed) if ``CURATION_STOP_AT`` names this point.

    Examples
    --------
    >>> checkpoint("after-validate")  # CURATION_STOP_AT unset: returns at once
    """
    target = os.environ.get(ENV)
    if not target:
        return
    _seen[name] = _seen.get(name, 0) + 1
    want, _, nth = target.partition("#")
    if want == name and _seen[name] == int(nth or 1):
        sys.stderr.write(f"CURATION_STOPPED_AT {target}\n")
        sys.stderr.flush()
        while True:
            time.sleep(3600)
