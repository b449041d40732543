"""Every error curation raises: one root, one module.

Messages say what was expected, what was found and what to do. Errors that
concern rows carry the failure cases (``failure_cases``), not just a message.
"""

from __future__ import annotations

from typing import Any


class CurationError(Exception):
    """Root of every error raised by curation.

    Parameters
    ----------
    message : str
        One line: what was expected, what was found, what to do.
    """

    exit_code: int = 1


class ConfigError(CurationError):
    """A loop, schema or connector file is wrong (unknown name, bad path, bad field).

    Parameters
    ----------
    message : str
        What is wrong.
    field : str, optional
        The dotted field path the error is about, for example ``strategy.name``.
    source : str, optional
        The file the field comes from.
    choices : list of str, optional
        The valid choices, when the field takes one of a known set.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        source: str | None = None,
        choices: list[str] | None = None,
    ) -> None:
        self.field = field
        self.source = source
        self.choices = choices
        where = ": ".join(p for p in (source, field) if p)
        text = f"{where}: {message}" if where else message
        if choices:
            text += f" (valid choices: {', '.join(choices)})"
        super().__init__(text)


class RegistryError(ConfigError):
    """An unknown or duplicate plugin name (strategy, detector, connector)."""


class DataError(CurationError):
    """An input file cannot be read or lacks what the step needs (exit code 2, like a bad
    config: the input has to change, rerunning will not help).

    Parameters
    ----------
    message : str
        What is wrong and what to do.
    path : str, optional
        The file concerned.
    column : str, optional
        The column concerned.
    row : Any, optional
        The id (or index) of the row concerned.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        column: str | None = None,
        row: Any = None,
    ) -> None:
        self.path = path
        self.column = column
        self.row = row
        parts = [p for p in (path, f"column {column!r}" if column else None) if p]
        if row is not None:
            parts.append(f"row {row!r}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ValidationGateError(CurationError):
    """Too many rows failed validation: the step's gate is breached.

    Parameters
    ----------
    message : str
        The fraction found and the gate.
    failure_cases : Any, optional
        The quarantine table (original rows plus reasons).
    """

    exit_code = 3

    def __init__(self, message: str, failure_cases: Any = None) -> None:
        self.failure_cases = failure_cases
        super().__init__(message)


class ConnectorError(CurationError):
    """An outside system (annotation tool, version store) failed or refused."""


class VersioningError(ConnectorError):
    """A version store (DVC, lakeFS) could not begin, write, commit or read a round."""


class GateError(CurationError):
    """A data-quality sweep breached a gate (too many broken rows, drift, ...).

    Parameters
    ----------
    message : str
        Which gates, their values and thresholds.
    breached : list of dict, optional
        One ``{"gate", "value", "threshold", "breached"}`` per breached gate.
    """

    exit_code = 4

    def __init__(self, message: str, breached: list[Any] | None = None) -> None:
        self.breached = breached or []
        super().__init__(message)


class BusyError(CurationError):
    """Another run holds the lock this one needs (an overlapping scheduled sweep)."""

    exit_code = 5


class NotFoundError(CurationError):
    """What a command names (a round, a row id) does not exist (exit code 2: the command
    line has to change).

    Parameters
    ----------
    message : str
        What was asked for, and what there is.
    """

    exit_code = 2
