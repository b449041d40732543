"""``curation init``: the layout of a new curation project."""

from __future__ import annotations

import shutil
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
# hybrid (the default strategy, see docs/strategies.md); a tenth of the budget reviews the worst
# suspected label errors (review_share: 0 turns reviews off; review: decision decides each round)
strategy: {name: hybrid, review_share: 0.1}
# Every other setting has one default, the same for `curation run`, `dvc repro` (params.yaml)
# and `curation sweep --loop`: the issue detectors (label, outlier, near_duplicate), the
# embedding model (the offline MiniLM) and its max_seq_length (256), the round model
# (logreg_knn)... Set one here to change it, e.g.:
#   embed: {max_seq_length: 128}
#   issues: {detectors: [{name: label}]}
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
      - ${out}/label_quality.parquet
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
    params:
      - push
    deps:
      - ${loop}
      - connectors/files.yaml
      - ${out}/validation/valid
      - ${out}/tasks.parquet
    metrics:
      - ${out}/push.json
""",
    "params.yaml": "",  # written by params_template(): the config models' defaults
}


def params_template() -> str:
    """``params.yaml`` for a new project: the settings the pipeline passes on, at the config
    models' defaults (so ``dvc repro`` and ``curation run`` start from the same values).

    Examples
    --------
    >>> "max_seq_length: 256" in params_template()
    True
    """
    from curation.config import EmbedConfig, IssuesConfig, LoopConfig, ValidateConfig

    embed, issues, loop = EmbedConfig(), IssuesConfig(), LoopConfig.model_fields
    detectors = ", ".join(d.name for d in issues.detectors)
    return f"""\
# Settings of the pipeline in dvc.yaml; they override the loop file's. Their values here are
# the defaults of `curation run` (see docs/pipelines.md). Try another strategy with
# `dvc exp run -S select.strategy=margin` (it never pushes to annotators: see push below).
engine: local             # local: each stage in its own process; ray: on a Ray cluster
seed: 0
validate:
  max_invalid_fraction: {ValidateConfig().max_invalid_fraction}
embed:
  model: {embed.model}
  backend: {embed.backend}          # torch, onnx or onnx_int8
  max_seq_length: {embed.max_seq_length}
  batch_size: {embed.batch_size}
issues:
  folds: {issues.folds}
  recipe: {issues.recipe}        # ensemble or reference (cleanlab's default recipe)
  detectors: [{detectors}]
select:
  strategy: {loop["strategy"].get_default(call_default_factory=True).name}        # see docs/strategies.md
  model: {loop["model"].default}        # the classifier fitted each round (curation.steps.model.MODELS)
  budget: {loop["budget"].default}
  curve_rounds: 5         # rounds of the learning curve replayed over the labeled rows
push:
  enabled: false          # true: `dvc repro` queues the selection for annotators (never in experiments)
"""


def init_project(
    directory: Path, data: Path | None = None, columns: tuple[str, str, str] = ("id", "text", "label")
) -> list[Path]:
    """Write the project templates into ``directory``; existing files are never overwritten.

    Parameters
    ----------
    directory : Path
        The project's folder (made if missing).
    data : Path, optional
        The user's dataset (Parquet, CSV or JSON Lines): copied to ``data/dataset.<suffix>``,
        the loop and the pipeline point at it and ``schemas/example.yaml`` is the contract
        inferred from it (``curation schema infer``) instead of the generic template.
    columns : tuple of str
        The dataset's id, text and label column names.

    Returns
    -------
    list of Path
        The files created.

    Examples
    --------
    >>> import tempfile
    >>> [p.name for p in init_project(Path(tempfile.mkdtemp()))][:2]
    ['example.yaml', 'example.yaml']
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, expected a folder", field="DIR")
    texts = dict(TEMPLATES)
    if data is not None:
        texts.update(_for_data(Path(data), columns))
    made = []
    for rel, text in texts.items():
        path = directory / rel
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text or params_template(), encoding="utf-8")
        made.append(path)
    if data is not None and not (directory / _dataset(Path(data))).exists():
        shutil.copyfile(data, directory / _dataset(Path(data)))
        made.append(directory / _dataset(Path(data)))
    return made


def _dataset(data: Path) -> str:
    return f"data/dataset{''.join(data.suffixes[-2:]) if data.suffix == '.gz' else data.suffix}"


def _for_data(data: Path, columns: tuple[str, str, str]) -> dict[str, str]:
    """The templates that name the dataset, its columns and its contract, for ``data``."""
    from curation.support.schema import infer_yaml

    if not data.is_file():
        raise ConfigError(f"{data}: no such file", field="--data")
    id_, text, label = columns
    found = set(infer_columns(data))
    for flag, name in zip(("--id", "--text", "--label"), columns, strict=True):
        if name not in found:
            raise ConfigError(
                f"{data}: no column {name!r} (columns: {', '.join(sorted(found))}); name it with {flag}",
                field=flag,
            )
    out = {}
    for rel in ("loops/example.yaml", "dvc.yaml"):
        t = TEMPLATES[rel].replace("data/dataset.parquet", _dataset(data))
        t = t.replace(
            "columns: {id: id, text: text, label: label}",
            f"columns: {{id: {id_}, text: {text}, label: {label}}}",
        )
        out[rel] = t.replace("--id id --text text", f"--id {id_} --text {text}")
    out["schemas/example.yaml"] = infer_yaml(data)
    return out


def infer_columns(data: Path) -> list[str]:
    """The column names of a dataset file (its first block)."""
    from curation.support.schema import sample

    return sample(data, rows=1).columns
