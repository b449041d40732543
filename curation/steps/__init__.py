"""The steps of a round, one module each: plain functions over tables and arrays (validate,
embed, the round model, reconciliation of answers, drift). The issue and selection steps live
with their extension points (:mod:`curation.issues`, :mod:`curation.strategies`).
"""
