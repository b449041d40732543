"""Issue detectors: one ABC, a registry, one module per detector, one entry point.

:func:`find_issues` is what the loop calls: it computes the evidence and the kNN graph once
and runs every configured detector on them.
"""

from __future__ import annotations

from curation.issues.base import ISSUE_COLUMNS, Detector, Evidence, IssueInputs
from curation.registry import Registry

DETECTORS: Registry[Detector] = Registry("detector")

from curation.issues.duplicate import NearDuplicateIssues  # noqa: E402
from curation.issues.feedback import flag_precision  # noqa: E402
from curation.issues.imbalance import ClassImbalanceIssues  # noqa: E402
from curation.issues.label import LabelIssues  # noqa: E402
from curation.issues.outlier import OutlierIssues  # noqa: E402
from curation.issues.run import find_issues  # noqa: E402

for _cls in (LabelIssues, OutlierIssues, NearDuplicateIssues, ClassImbalanceIssues):
    DETECTORS.register(_cls)

__all__ = [
    "DETECTORS", "ISSUE_COLUMNS", "ClassImbalanceIssues", "Detector", "Evidence", "IssueInputs",
    "LabelIssues", "NearDuplicateIssues", "OutlierIssues", "find_issues", "flag_precision",
]
