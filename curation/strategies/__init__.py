"""Selection strategies: the extension point (:mod:`curation.strategies.base`: the ABC, the
shared ``select`` and the registry), one module per strategy, and the step's entry point
:func:`curation.strategies.select.select`.
"""
