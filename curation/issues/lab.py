"""cleanlab's Datalab at the boundary: one issue type over the shared kNN graph.

Datalab prints its progress and, when an issue check fails, prints the error and goes on;
here its output goes to the log and a failed check raises.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.errors import CurationError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def datalab_issues(
    issue_type: str, params: dict[str, Any], *, knn: Any = None, labels: np.ndarray | None = None
) -> pd.DataFrame:
    """Run one Datalab issue type; its per-row table (``is_<type>_issue``, ``<type>_score``).

    :func:`datalab_check` also gives Datalab's ``info`` on the check (a p-value, ...).
    """
    return datalab_check(issue_type, params, knn=knn, labels=labels)[0]


def datalab_check(
    issue_type: str, params: dict[str, Any], *, knn: Any = None, labels: np.ndarray | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run one Datalab issue type; its per-row table and Datalab's ``info`` on the check.

    Parameters
    ----------
    issue_type : str
        A Datalab issue type, for example ``"outlier"`` or ``"near_duplicate"``.
    params : dict
        Its settings (Datalab's ``issue_types[issue_type]``).
    knn : scipy.sparse.csr_matrix, optional
        The shared kNN graph.
    labels : numpy.ndarray, optional
        Label codes, for the issue types that read labels.

    Raises
    ------
    CurationError
        When Datalab could not run the check (its own error is in the message).
    """
    from cleanlab import Datalab

    n = knn.shape[0] if knn is not None else len(labels) if labels is not None else 0
    data = {"label": labels} if labels is not None else {"row": np.arange(n)}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        lab = Datalab(data=data, label_name="label" if labels is not None else None, verbosity=0)
        lab.find_issues(knn_graph=knn, issue_types={issue_type: params})
    printed = out.getvalue().strip()
    if printed:
        log.debug("Datalab: %s", printed)
    try:
        return lab.get_issues(issue_type), lab.get_info(issue_type)
    except ValueError as e:
        raise CurationError(
            f"cleanlab's Datalab could not check {issue_type!r} issues: {printed or e}; "
            f"check the detector's settings ({params})"
        ) from e
