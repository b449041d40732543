"""Running a job on a fixed interval, in process, never two at once.

:func:`run_lock` is an exclusive ``flock`` on a file: a second run (another tick, a cron
job, a second terminal) finds it held and does not start. The kernel drops the lock
when its process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from curation.errors import BusyError, ConfigError

log = logging.getLogger(__name__)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """Seconds in an interval such as ``"90s"``, ``"15m"``, ``"6h"``, ``"1d"`` or ``"1h30m"``.

    Examples
    --------
    >>> parse_every("6h"), parse_every("1h30m"), parse_every("45s")
    (21600.0, 5400.0, 45.0)
    """
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhd])", "", text.strip().lower()).strip():
        raise ConfigError(f"expected an interval such as 30s, 15m, 6h or 1d, found {text!r}", field="--every")
    seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"expected a positive interval, found {text!r}", field="--every")
    return seconds


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the ``with`` block; raise if another run holds it.

    Raises
    ------
    BusyError
        Another process holds the lock (its pid is in the message when known).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise BusyError(
                f"another run holds {path} (pid {holder}); this run did not start. "
                f"Wait for it, or lengthen the interval"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def every(
    seconds: float,
    job: Callable[[], Any],
    *,
    runs: int | None = None,
    on_error: Callable[[Exception], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call ``job`` now and then every ``seconds`` (from start to start); return the runs made.

    A run that takes longer than the interval delays the next one (runs never overlap
    in this process; :func:`run_lock` keeps other processes out). An exception from a
    run goes to ``on_error`` and the schedule goes on; without ``on_error`` it is raised.

    Parameters
    ----------
    seconds : float
        The interval.
    job : callable
        The run.
    runs : int, optional
        Stop after this many runs (default: never).
    on_error : callable, optional
        Called with the exception of a failed run.

    Examples
    --------
    >>> every(0.01, lambda: None, runs=3)
    3
    """
    done = 0
    next_start = time.monotonic()
    while runs is None or done < runs:
        wait = next_start - time.monotonic()
        if wait > 0:
            sleep(wait)
        next_start = max(next_start + seconds, time.monotonic())
        try:
            job()
        except Exception as e:
            if on_error is None:
                raise
            on_error(e)
        done += 1
        if runs is None or done < runs:
            log.info("next run in %.0f s", max(next_start - time.monotonic(), 0))
    return done
