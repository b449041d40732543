"""Issue detectors: the extension point (:mod:`curation.issues.base`: the ABC and the
registry), one module per detector, and the step's entry point :func:`curation.issues.find.find_issues`.
"""
