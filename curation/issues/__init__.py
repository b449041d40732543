"""Issue detectors: one ABC, a registry, one module per detector."""

from __future__ import annotations

from curation.issues.base import ISSUE_COLUMNS, Detector, IssueInputs
from curation.registry import Registry

DETECTORS: Registry[Detector] = Registry("detector")

from curation.issues.label import LabelIssues  # noqa: E402

DETECTORS.register(LabelIssues)

__all__ = ["DETECTORS", "ISSUE_COLUMNS", "Detector", "IssueInputs", "LabelIssues"]
