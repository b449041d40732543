"""Outside systems behind Protocols: annotation queues and version stores."""

from __future__ import annotations

from curation.connectors.base import (
    ANNOTATION_COLUMNS,
    TASK_COLUMNS,
    Annotator,
    Project,
    Pulled,
    VersionStore,
    task_id,
)
from curation.registry import Registry

ANNOTATORS: Registry[Annotator] = Registry("connector")

from curation.connectors import files, oracle  # noqa: E402,F401  (registers them)

__all__ = [
    "ANNOTATORS",
    "ANNOTATION_COLUMNS",
    "TASK_COLUMNS",
    "Annotator",
    "Project",
    "Pulled",
    "VersionStore",
    "task_id",
]
