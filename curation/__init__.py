"""curation: data-centric curation and active learning.

validate (Pandera) -> embed (sentence-transformers) -> find issues (cleanlab) ->
select (active learning) -> annotate (Label Studio) -> version (DVC or lakeFS).
"""

__version__ = "0.1.0"
