"""Outside systems behind Protocols (:mod:`curation.connectors.base`): annotation queues
(label_studio, files, oracle) and version stores (dvc, lakefs, local), one module each.
"""
