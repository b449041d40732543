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

from curation.connectors.files import Files  # noqa: E402
from curation.connectors.label_studio import LabelStudio  # noqa: E402
from curation.connectors.oracle import Oracle  # noqa: E402

for _cls in (Files, LabelStudio, Oracle):
    ANNOTATORS.register(_cls)  # type: ignore[arg-type]

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
