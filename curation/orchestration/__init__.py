"""Orchestration: one round (:mod:`.round`) wired from the step adapters (:mod:`.adapters`) and
the state carried between rounds (:mod:`.state`); the same steps as DVC stages, a sweep, a
simulation, a webhook-driven queue, on a schedule; the demo; history, checkout and diff.
"""
