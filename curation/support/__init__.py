"""Support: reading and writing tables, Ray, the manifest, progress, the registry, the HTML
report, project scaffolding and schema inference.
"""
