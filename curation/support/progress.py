"""Progress of long work, for a terminal or a log. Library code never prints.

The CLI passes a Rich implementation; library callers get :class:`LogReporter` (the
``curation`` log) unless they pass their own.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("curation")


class Reporter(Protocol):
    """Where a step reports that it starts, how far it is and what it did."""

    def start(self, step: str, total: int | None = None) -> None:
        """A step begins (``total`` units of work, if known)."""

    def advance(self, done: int, total: int | None = None) -> None:
        """``done`` units of the current step are finished."""

    def finish(self, summary: str) -> None:
        """The current step ended; ``summary`` says what it did."""


class LogReporter:
    """A :class:`Reporter` that writes to the ``curation`` log.

    Examples
    --------
    >>> rep = LogReporter()
    >>> rep.start("embed", 10); rep.advance(5, 10); rep.finish("embed: 10 texts")
    """

    def start(self, step: str, total: int | None = None) -> None:
        """Log that ``step`` begins."""
        log.info("%s ...", step)

    def advance(self, done: int, total: int | None = None) -> None:
        """Log progress at debug level."""
        log.debug("%s/%s", done, total)

    def finish(self, summary: str) -> None:
        """Log the step's summary."""
        log.info("%s", summary)
