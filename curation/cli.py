"""The ``curation`` command. Rich progress in the terminal; errors as one line, no traceback."""

from __future__ import annotations

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


def main() -> None:
    """Entry point of the ``curation`` script."""
    app()


if __name__ == "__main__":
    sys.exit(main())
