"""The ``curation`` command. Rich progress in the terminal; errors as one line, no traceback."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from curation.errors import CurationError

app = typer.Typer(
    name="curation",
    help="Data-centric curation and active learning: validate, embed, find label issues, "
    "select, annotate and version, one round at a time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out = Console()
if not out.is_terminal:
    out = Console(width=160)


class RichReporter:
    """Progress of a round as Rich bars (a bar when the size is known, else a spinner)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.t0 = 0.0

    def start(self, step: str, total: int | None = None) -> None:
        self.task = self.progress.add_task(step, total=total)
        self.t0 = time.perf_counter()

    def advance(self, done: int, total: int | None = None) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def finish(self, summary: str) -> None:
        self.progress.remove_task(self.task)
        self.progress.console.print(f"[green]✓[/] {summary} [dim]({time.perf_counter() - self.t0:.1f}s)[/]")


def progress_bar() -> Progress:
    """The progress display every long step uses."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)


def quiet_libraries() -> None:
    """Keep Ray, transformers and DVC chatter out of the terminal."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("ray", "ray.data", "transformers", "sentence_transformers", "dvc", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a :class:`CurationError` becomes one line on stderr and its exit code."""
    try:
        return fn()
    except CurationError as e:
        console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None


def metrics_table(rows: list[dict[str, Any]], title: str) -> Table:
    """A Rich table with one row per dict (floats to 3 places)."""
    table = Table(title=title)
    for key in rows[0] if rows else []:
        table.add_column(key, justify="right")
    for r in rows:
        table.add_row(*("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
                        for v in r.values()))
    return table


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Folder of the new curation project.")]) -> None:
    """Lay out a new curation project: schemas/, loops/, connectors/ and data/."""
    from curation.project import init_project

    def go() -> None:
        made = init_project(directory)
        for p in made:
            out.print(f"created {p}")
        out.print(f"next: put your data in {directory}/data/, edit loops/example.yaml, "
                  f"then `curation run {directory}/loops/example.yaml`")

    guarded(go)


@app.command()
def run(loop: Annotated[Path, typer.Argument(help="A loop file, e.g. loops/banking77.yaml.")]) -> None:
    """Run one round of a loop: validate, embed, find issues, select, annotate, version."""
    from curation.config import load_loop
    from curation.loop import run_round

    quiet_libraries()

    def go() -> None:
        cfg = load_loop(loop)
        with progress_bar() as p:
            result = run_round(cfg, RichReporter(p))
        out.print(metrics_table([result.metrics], f"{cfg.name}: round {result.round} ({result.ref})"))

    guarded(go)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo project.")] = Path("demo"),
    rounds: Annotated[int, typer.Option(min=1, help="How many rounds to run.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed for the corpus split and the planted errors.")] = 0,
) -> None:
    """Run the demo: 3 rounds on the standard library's docstrings with planted label errors.

    Needs no network and no data. Leaves a git + DVC repository in --out with a tag per
    round, and the per-round table in --out/summary.json.
    """
    import polars as pl

    from curation import demo as d
    from curation.config import load_loop
    from curation.loop import run_round

    quiet_libraries()

    def go() -> None:
        t0 = time.perf_counter()
        loop_file = d.prepare(out_dir, seed=seed)
        planted = pl.read_parquet(out_dir / "truth" / "planted_errors.parquet")
        cfg = load_loop(loop_file)
        rows = []
        for _ in range(rounds):
            with progress_bar() as p:
                result = run_round(cfg, RichReporter(p))
            rows.append(d.summary_row(result, planted))
            d.write_summary(out_dir, rows)
            out.print(metrics_table(rows[-1:], f"round {result.round}"))
        out.print(metrics_table(rows, f"curation demo: {rounds} rounds in {time.perf_counter() - t0:.0f}s"))
        out.print(f"summary: {out_dir / 'summary.json'}; rounds: `git -C {out_dir} tag`")

    guarded(go)


def validation_table(report: dict[str, Any]) -> Table:
    """The validation report as a table: rows per column and check, then the totals."""
    table = Table(title=f"validation ({report['engine']})", caption=str(report['source']))
    for name in ("column", "check", "rows"):
        table.add_column(name, justify="right" if name == "rows" else "left")
    for r in report["by_column_check"]:
        table.add_row(str(r["column"]), str(r["check"]), str(r["rows"]))
    table.add_section()
    table.add_row("", "valid", str(report["valid"]))
    table.add_row("", "quarantined", f"{report['quarantined']} ({report['invalid_fraction']:.2%})")
    table.add_row("", "rows", str(report["rows"]))
    return table


@app.command("validate")
def validate_cmd(
    source: Annotated[str, typer.Argument(help="A loop file (loops/x.yaml), or the data: a file, folder or "
                                          "glob of Parquet/CSV/JSON Lines, local, s3:// or lakefs://.")],
    schema: Annotated[str | None, typer.Option(help="The contract for DATA: schemas/x.yaml or "
                                               "schemas/x.py:Model.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default: "
                                                 "validation/, or validation/NAME for a loop).")] = None,
    engine: Annotated[str | None, typer.Option(help="auto (in process below --local-below rows), "
                                               "ray or local.")] = None,
    max_invalid_fraction: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="The gate "
                                                               "(default 1.0, or the loop's).")] = None,
    min_per_class: Annotated[int | None, typer.Option(min=1, help="Quarantine labels with fewer rows.")] = None,
    local_below: Annotated[int | None, typer.Option(min=0, help="auto: rows below which no Ray starts.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster (e.g. auto).")] = None,
    text: Annotated[str, typer.Option(help="The text column (for DATA).")] = "text",
    label: Annotated[str, typer.Option(help="The label column (for DATA).")] = "label",
) -> None:
    """Validate data against a Pandera contract: write valid rows, a quarantine and a report.

    Writes OUT/valid/*.parquet, OUT/quarantine/*.parquet (each failing row with its column,
    check, value and reason) and OUT/report.json. Exits 3 when the quarantined fraction is
    above the gate.
    """
    from curation.config import load_loop
    from curation.errors import ConfigError, ValidationGateError
    from curation.validate import load_schema, validate_source

    quiet_libraries()

    def go() -> None:
        args: dict[str, Any] = {"text": text, "label": label, "ray_address": ray_address}
        data, contract, out_path = source, schema, out_dir or Path("validation")
        if source.endswith((".yaml", ".yml")) and Path(source).is_file():
            cfg = load_loop(source)
            v = cfg.validate_
            data, contract = str(cfg.path(cfg.dataset)), contract or str(cfg.path(cfg.schema_path))
            out_path = out_dir or cfg.root / "validation" / cfg.name
            args.update(text=cfg.columns.text, label=cfg.columns.label, labels=v.labels,
                        ray_address=ray_address or cfg.ray_address, min_per_class=v.min_per_class,
                        max_invalid_fraction=v.max_invalid_fraction, local_below=v.local_below,
                        engine="local" if cfg.engine == "local" else "auto")
        elif contract is None:
            raise ConfigError("give --schema schemas/x.yaml (or a loop file instead of the data)",
                              field="schema")
        if engine is not None:
            if engine not in ("auto", "ray", "local"):
                raise ConfigError(f"unknown engine {engine!r}", field="engine",
                                  choices=["auto", "ray", "local"])
            args["engine"] = engine
        given = {"max_invalid_fraction": max_invalid_fraction, "min_per_class": min_per_class,
                 "local_below": local_below}
        args.update({k: v for k, v in given.items() if v is not None})
        with progress_bar() as p:
            rep = RichReporter(p)
            rep.start(f"validate {data}", None)
            try:
                report = validate_source(data, load_schema(contract), out_path, **args,
                                         progress=lambda done, total: rep.advance(done, total))
            except ValidationGateError:
                out.print(validation_table(json.loads((out_path / "report.json").read_text())))
                raise
            rep.finish(f"validate: {report['valid']} valid, {report['quarantined']} quarantined")
        out.print(validation_table(report))
        out.print(f"valid: {out_path / 'valid'}  quarantine: {out_path / 'quarantine'}  "
                  f"report: {out_path / 'report.json'}")

    guarded(go)


schema_app = typer.Typer(help="Dataset contracts (Pandera schemas).", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@schema_app.command("infer")
def schema_infer(
    data: Annotated[str, typer.Argument(help="A file, folder or glob (local, s3://, lakefs://).")],
    rows: Annotated[int | None, typer.Option(min=1, help="Read only the first ROWS rows.")] = None,
    max_categories: Annotated[int, typer.Option(min=1, help="Most distinct values for a label set.")] = 200,
) -> None:
    """Print a starting contract for DATA in Pandera's YAML: `curation schema infer D > schemas/x.yaml`."""
    from curation.schema import infer_yaml

    guarded(lambda: sys.stdout.write(infer_yaml(data, rows, max_categories)))


def main() -> None:
    """Entry point of the ``curation`` script."""
    app()


if __name__ == "__main__":
    sys.exit(main())
