"""Retries with exponential backoff and jitter, for calls to outside services."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Transient(Exception):
    """Raised by a call that may succeed if tried again (server down, 5xx, timeout, 429).

    Parameters
    ----------
    message : str
        What failed.
    retry_after : float, optional
        Seconds the server asked us to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """How to retry: up to ``retries`` more tries, waiting ``base_s * 2**n`` (capped at
    ``max_s``) with "equal jitter" (half fixed, half random) between them.

    Examples
    --------
    >>> b = Backoff(retries=3, base_s=1.0, max_s=4.0)
    >>> [0.5 <= b.delay(0) <= 1.0, 2.0 <= b.delay(2) <= 4.0, 2.0 <= b.delay(9) <= 4.0]
    [True, True, True]
    """

    retries: int = 8
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_s) + random.uniform(0, self.base_s)
        d = min(self.max_s, self.base_s * (2.0**attempt))
        return d / 2 + random.uniform(0, d / 2)

    def call(self, fn: Callable[[], T], what: str, sleep: Callable[[float], None] = time.sleep) -> T:
        """Call ``fn`` until it does not raise :class:`Transient`, at most ``retries + 1`` times.

        Raises
        ------
        Transient
            The last failure, when every try failed.
        """
        attempt = 0
        while True:
            try:
                return fn()
            except Transient as e:
                if attempt >= self.retries:
                    raise
                wait = self.delay(attempt, e.retry_after)
                log.warning("%s failed (%s); retry %d/%d in %.1fs", what, e, attempt + 1, self.retries, wait)
                sleep(wait)
                attempt += 1
