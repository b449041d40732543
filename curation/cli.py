"""The ``curation`` command. Rich progress in the terminal; errors as one line, no traceback."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
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
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def native_log() -> Path:
    """Where what native code (Ray's C++ core, its workers) writes to stderr goes."""
    return Path(tempfile.gettempdir()) / "curation" / f"native-{os.getpid()}.log"


def hush_native_stderr() -> None:
    """Ray's C++ core and its worker processes write warnings straight to file descriptor 2;
    send those bytes to :func:`native_log` and keep Python's stderr (progress, errors) on
    the terminal. Once per process, and only when Python's stderr is the process's own (not
    one a test runner or a notebook swapped in)."""
    if getattr(hush_native_stderr, "done", False) or sys.stderr is not sys.__stderr__:
        return
    hush_native_stderr.done = True  # type: ignore[attr-defined]
    saved = os.dup(2)
    native_log().parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(native_log(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = os.fdopen(saved, "w", buffering=1, encoding="utf-8", errors="replace")


def quiet_libraries() -> None:
    """Keep Ray, transformers and DVC chatter out of the terminal."""
    hush_native_stderr()
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
        table.add_row(
            *("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values())
        )
    return table


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder of the new curation project.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Your dataset (Parquet, CSV, JSON Lines): copied in, its contract inferred."
        ),
    ] = None,
    id_column: Annotated[str, typer.Option("--id", help="The dataset's id column.")] = "id",
    text_column: Annotated[str, typer.Option("--text", help="The dataset's text column.")] = "text",
    label_column: Annotated[
        str, typer.Option("--label", help="The dataset's label column (blank: unlabeled).")
    ] = "label",
) -> None:
    """Lay out a new curation project: schemas/, loops/, connectors/ and data/.

    With --data, the project starts from your file: it is copied to data/, the loop and the
    pipeline point at it, and schemas/example.yaml is the contract inferred from it.
    """
    from curation.support.project import init_project

    def go() -> None:
        made = init_project(directory, data, (id_column, text_column, label_column))
        for p in made:
            out.print(f"created {p}", soft_wrap=True)
        first = "review schemas/example.yaml" if data else f"put your data in {directory}/data/"
        out.print(
            f"next: {first}, edit loops/example.yaml, then `curation run {directory}/loops/example.yaml`",
            soft_wrap=True,
        )

    guarded(go)


@app.command()
def run(
    loop: Annotated[Path, typer.Argument(help="A loop file, e.g. loops/banking77.yaml.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be selected; push, pull and commit nothing.")
    ] = False,
    no_push: Annotated[
        bool,
        typer.Option(
            "--no-push", help="Pull answers and version the round, but queue no task for annotators."
        ),
    ] = False,
) -> None:
    """Run one round of a loop: validate, embed, find issues, select, annotate, version."""
    from curation.load import load_loop
    from curation.orchestration.round import run_round

    quiet_libraries()

    def go() -> None:
        cfg = load_loop(loop)
        with progress_bar() as p:
            result = run_round(cfg, RichReporter(p), push=not no_push, dry_run=dry_run)
        if dry_run:
            out.print(
                selection_table(result.tables["tasks"], f"{cfg.name}: round {result.round} would select")
            )
            out.print("dry run: nothing was pushed, pulled, written or committed")
            return
        out.print(figures_table(result.metrics, f"{cfg.name}: round {result.round} ({result.ref})"))
        if result.report:
            out.print(f"report: {cfg.path(Path(result.report)).resolve()}", soft_wrap=True)

    guarded(go)


def figures_table(figures: dict[str, Any], title: str) -> Table:
    """One figure a line (readable in any width): name, value."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in figures.items():
        table.add_row(k, "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
    return table


def selection_table(tasks: Any, title: str, limit: int = 20) -> Table:
    """The first ``limit`` tasks a round would queue: rank, kind, id, score, why, text."""
    table = Table(title=title, caption=f"{len(tasks)} in all" if len(tasks) > limit else None)
    for name in ("rank", "kind", "id", "score", "reason", "text"):
        table.add_column(name, overflow="fold" if name in ("reason", "text") else "ellipsis")
    for r in tasks.head(limit).iter_rows(named=True):
        table.add_row(
            str(r["rank"]), r["kind"], str(r["id"]), f"{r['score']:.3f}", r["reason"], (r["text"] or "")[:80]
        )
    return table


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

    from curation.load import load_loop
    from curation.orchestration import demo as d
    from curation.orchestration.round import run_round

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
    table = Table(title=f"validation ({report['engine']})", caption=str(report["source"]))
    for name in ("column", "check", "rows"):
        table.add_column(name, justify="right" if name == "rows" else "left")
    for r in report["by_column_check"]:
        table.add_row(str(r["column"]), str(r["check"]), str(r["rows"]))
    table.add_section()
    table.add_row("", "valid", str(report["valid"]))
    table.add_row("", "quarantined", f"{report['quarantined']} ({report['invalid_fraction']:.2%})")
    table.add_row("", "rows", str(report["rows"]))
    return table


DataArg = Annotated[
    str,
    typer.Argument(
        help="A loop file (loops/x.yaml), or the data: a file, folder or "
        "glob of Parquet/CSV/JSON Lines, local, s3:// or lakefs://."
    ),
]
SchemaOpt = Annotated[
    str | None, typer.Option(help="The contract for DATA: schemas/x.yaml or schemas/x.py:Model.")
]
ValidateOut = Annotated[
    Path | None,
    typer.Option("--out", help="Output folder (default: validation/, or validation/NAME for a loop)."),
]
EngineOpt = Annotated[
    str | None, typer.Option(help="auto (in process below --local-below rows), ray or local.")
]
GateOpt = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="The gate (default 1.0, or the loop's).")
]
MinPerClass = Annotated[int | None, typer.Option(min=1, help="Quarantine labels with fewer rows.")]
LocalBelow = Annotated[int | None, typer.Option(min=0, help="auto: rows below which no Ray starts.")]
RayAddress = Annotated[str | None, typer.Option(help="Join this Ray cluster (e.g. auto).")]
TextOpt = Annotated[str | None, typer.Option(help="The text column (for DATA; default text).")]
LabelOpt = Annotated[str | None, typer.Option(help="The label column (for DATA; default label).")]


@app.command("validate")
def validate_cmd(
    source: DataArg,
    schema: SchemaOpt = None,
    out_dir: ValidateOut = None,
    engine: EngineOpt = None,
    max_invalid_fraction: GateOpt = None,
    min_per_class: MinPerClass = None,
    local_below: LocalBelow = None,
    ray_address: RayAddress = None,
    text: TextOpt = None,
    label: LabelOpt = None,
) -> None:
    """Validate data against a Pandera contract: write valid rows, a quarantine and a report.

    Writes OUT/valid/*.parquet, OUT/quarantine/*.parquet (each failing row with its column,
    check, value and reason) and OUT/report.json. Exits 3 when the quarantined fraction is
    above the gate.
    """
    from curation.errors import ValidationGateError
    from curation.orchestration.commands import run_validation, validation_plan

    quiet_libraries()

    def go() -> None:
        options = {
            "text": text,
            "label": label,
            "max_invalid_fraction": max_invalid_fraction,
            "min_per_class": min_per_class,
            "local_below": local_below,
        }
        plan = validation_plan(source, schema, out_dir, engine, ray_address, **options)
        with progress_bar() as p:
            rep = RichReporter(p)
            rep.start(f"validate {plan.data}", None)
            try:
                report = run_validation(plan, rep.advance)
            except ValidationGateError:
                out.print(validation_table(json.loads((plan.out / "report.json").read_text())))
                raise
            rep.finish(f"validate: {report['valid']} valid, {report['quarantined']} quarantined")
        out.print(validation_table(report))
        out.print(
            f"valid: {plan.out / 'valid'}  quarantine: {plan.out / 'quarantine'}  "
            f"report: {plan.out / 'report.json'}"
        )

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
    from curation.support.schema import infer_yaml

    guarded(lambda: sys.stdout.write(infer_yaml(data, rows, max_categories)))


@app.command()
def serve(
    loop: Annotated[Path, typer.Argument(help="A loop file whose connector is label_studio.")],
    threshold: Annotated[int, typer.Option(min=1, help="New finished annotations that start a round.")] = 50,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    secret_env: Annotated[
        str, typer.Option(help="Environment variable holding the shared secret.")
    ] = "CURATION_WEBHOOK_SECRET",
    public_url: Annotated[
        str | None,
        typer.Option(help="URL Label Studio reaches this receiver at (default http://HOST:PORT/webhook)."),
    ] = None,
    register: Annotated[bool, typer.Option(help="Register the webhook in the Label Studio project.")] = True,
    model: Annotated[
        bool, typer.Option(help="Also serve the round model as Label Studio's ML backend (Connect model).")
    ] = True,
) -> None:
    """Receive Label Studio webhooks; start the next round when enough annotations arrived.

    With --model (the default) it is also the project's ML backend: connect it in Label Studio
    (Settings > Model > Connect model) at http://HOST:PORT, basic auth with the secret as password.
    """
    from curation.orchestration.serve import serve_loop

    quiet_libraries()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("curation").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def go() -> None:
        receiver = serve_loop(
            loop,
            threshold=threshold,
            host=host,
            port=port,
            secret_env=secret_env,
            public_url=public_url,
            register=register,
            model=model,
        )
        out.print(f"listening on {receiver.url} (a round every {threshold} new annotations; Ctrl-C stops)")
        if receiver.backend is not None:
            out.print(f"model {receiver.backend.version or '(none yet)'}: connect it at {receiver.base_url}")
        receiver.serve_forever()

    guarded(go)


VersionLoop = Annotated[
    Path | None, typer.Option("--loop", "-l", help="A loop file: its version store, root and columns.")
]
VersionRoot = Annotated[
    Path, typer.Option("--root", help="The project (a git + DVC repository) when no --loop is given.")
]
VersionRemote = Annotated[
    str | None,
    typer.Option(
        "--remote",
        help="lakefs://REPOSITORY or lakefs://REPOSITORY/BRANCH: a lakeFS "
        "store (endpoint and keys from LAKEFS_*).",
    ),
]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (every field) instead of a table.")]


@app.command("history")
def history_cmd(
    loop: VersionLoop = None,
    root: VersionRoot = Path("."),
    remote: VersionRemote = None,
    as_json: JsonOpt = False,
) -> None:
    """List the committed rounds with their gate, counts and metrics."""
    from curation.orchestration.history import history_rows, history_summary, resolve_store

    def go() -> None:
        store, _, _ = resolve_store(loop, root, remote)
        rounds = store.history()
        if as_json:
            out.print_json(json.dumps(history_rows(rounds), default=str))
            return
        if not rounds:
            out.print("no rounds yet")
            return
        out.print(metrics_table(history_summary(rounds), f"{len(rounds)} rounds ({store.name})"))

    guarded(go)


@app.command("checkout")
def checkout_cmd(
    ref: Annotated[str, typer.Argument(help="The round to restore, e.g. round-2 (HEAD/main: the latest).")],
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Copy the round's files here instead of restoring the working tree."),
    ] = None,
    loop: VersionLoop = None,
    root: VersionRoot = Path("."),
    remote: VersionRemote = None,
    force: Annotated[
        bool, typer.Option("--force", help="Discard uncommitted changes of the working tree.")
    ] = False,
) -> None:
    """Restore a round's data: into the working tree (refused over uncommitted work unless
    --force), or into --to DIR."""
    from curation.orchestration.history import checkout, resolve_store

    def go() -> None:
        store, _, _ = resolve_store(loop, root, remote)
        files = checkout(store, ref, to, force)
        out.print(f"{ref}: {len(files)} files restored into {to or getattr(store, 'root', '.')}")

    guarded(go)


@app.command("diff")
def diff_cmd(
    a: Annotated[str, typer.Argument(help="The older round, e.g. round-1.")],
    b: Annotated[str, typer.Argument(help="The newer round, e.g. round-2.")],
    ids: Annotated[int, typer.Option(min=0, help="How many ids to list per kind of change.")] = 5,
    loop: VersionLoop = None,
    root: VersionRoot = Path("."),
    remote: VersionRemote = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two rounds: per table, rows added, relabeled and removed."""
    from curation.orchestration.history import diff, resolve_store

    def go() -> None:
        store, key, label = resolve_store(loop, root, remote)
        d = diff(store, a, b, key=key, label=label)
        if as_json:
            out.print_json(json.dumps([f.to_dict() for f in d.files]))
            return
        if not d.files:
            out.print(f"{a} and {b} hold the same files")
            return
        out.print(f"{a} -> {b}: {len(d.files)} files changed")
        for f in d.files:
            out.print(f.headline(), highlight=False)
            for kind in ("added", "removed", "relabeled", "changed"):
                got = getattr(f, kind) or []
                if got and ids:
                    more = f" (+{len(got) - ids} more)" if len(got) > ids else ""
                    out.print(f"    {kind}: {', '.join(got[:ids])}{more}", highlight=False)

    guarded(go)


@app.command("export")
def export_cmd(
    loop: Annotated[Path, typer.Argument(help="A loop file, e.g. loops/banking77.yaml.")],
    to: Annotated[
        Path, typer.Option("--to", help="Where to write: FILE.parquet, .csv, .jsonl, or a folder (hf).")
    ],
    round: Annotated[
        int | None, typer.Option("--round", min=1, help="The round (default: the last).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="parquet, csv, jsonl or hf (default: from the suffix).")
    ] = None,
) -> None:
    """Write the curated dataset as of a round: given and final labels, their source, the flags."""
    from curation.load import load_loop
    from curation.orchestration.export import export_loop

    def go() -> None:
        cur = export_loop(load_loop(loop), to, round, format)
        for note in cur.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        counts = ", ".join(f"{v} {k}" for k, v in cur.counts().items())
        out.print(f"round {cur.round} ({cur.ref}) -> {to}: {counts}", highlight=False)

    guarded(go)


@app.command("explain")
def explain_cmd(
    round: Annotated[str, typer.Argument(metavar="ROUND", help="The round: 2, round-2 or LOOP/round-2.")],
    row_id: Annotated[str, typer.Argument(metavar="ID", help="The id of the row.")],
    loop: VersionLoop = None,
    root: VersionRoot = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Explain one row of a committed round: its flags, nearest neighbours, top classes, and
    why it was or was not selected.

    Reads only what the round stored: its issue and selection tables and its evidence table
    (for each valid row, its nearest neighbours in the kNN graph of the round with their
    labels, and the top three classes of the model: out of sample for labeled rows, those of
    the round model for the pool). A selected row shows the rank, score and reason of the
    strategy; another row why not (the rank and score of the last pick, a flag not sent to
    review, quarantined, queued). Example:
    curation explain round-2 4127 --loop loops/banking77.yaml. Exits 2 for an unknown round or id.
    """
    from curation.errors import ConfigError
    from curation.load import load_loop
    from curation.orchestration.explain import explain_row
    from curation.orchestration.history import project_loop

    def go() -> None:
        path = loop or project_loop(root)
        if path is None:
            raise ConfigError(
                f"{Path(root).resolve()} has no loops/*.yaml: pass --loop LOOP_FILE", field="--loop"
            )
        e = explain_row(load_loop(path), round, row_id)
        if as_json:
            out.print_json(json.dumps(e.to_dict(), default=str))
            return
        show_explanation(e)

    guarded(go)


def show_explanation(e: Any) -> None:
    """An :class:`~curation.orchestration.explain.Explanation` as a few lines and tables."""
    out.print(f"round {e.round} ({e.ref}), id {e.id}: {e.role}, label {e.label or '-'}", highlight=False)
    if e.text is not None:
        out.print(f"text: {e.text}", highlight=False, soft_wrap=True)
    out.print(e.why, highlight=False, soft_wrap=True)
    if e.flags:
        out.print(metrics_table(e.flags, "flags"))
    else:
        out.print("flags: none")
    if e.probabilities:
        out.print(metrics_table(e.probabilities, "top classes"))
    if e.neighbours:
        out.print(metrics_table(e.neighbours, "nearest neighbours"))
    for note in e.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


EmbedData = Annotated[
    Path, typer.Argument(help="A Parquet, CSV or JSON Lines file (or folder) with the texts.")
]
EmbedOut = Annotated[Path | None, typer.Option("--out", help="Write id, vector rows here (Parquet).")]
TextCol = Annotated[str, typer.Option("--text", help="The text column.")]
IdColumn = Annotated[str, typer.Option("--id", help="The id column (named in errors).")]
Backend = Annotated[str | None, typer.Option(help="torch (default), onnx or onnx_int8.")]
ModelOpt = Annotated[str | None, typer.Option(help="A local sentence-transformers model folder.")]
SeqLength = Annotated[
    int | None, typer.Option(min=1, help="Tokens per text; longer texts are cut (default 256).")
]
BatchSize = Annotated[int | None, typer.Option(min=1, help="Texts per forward pass (default 64).")]
EmbedEngine = Annotated[str, typer.Option(help="ray (an actor pool) or local (this process).")]
RootOpt = Annotated[Path, typer.Option(help="Project root: the cache and exported models live under it.")]


@app.command("embed")
def embed_cmd(
    data: EmbedData,
    out_file: EmbedOut = None,
    text_column: TextCol = "text",
    id_column: IdColumn = "id",
    backend: Backend = None,
    model: ModelOpt = None,
    max_seq_length: SeqLength = None,
    batch_size: BatchSize = None,
    engine: EmbedEngine = "ray",
    root: RootOpt = Path("."),
) -> None:
    """Embed a text column (cached by content: only texts not seen before reach the model)."""
    from curation.orchestration.commands import embed_file, embed_settings

    quiet_libraries()

    def go() -> None:
        cfg = embed_settings(
            backend=backend, max_seq_length=max_seq_length, batch_size=batch_size, model=model
        )
        with progress_bar() as p:
            rep = RichReporter(p)
            res = embed_file(data, cfg, text_column, id_column, engine, root, out_file, rep)
        if out_file is not None:
            out.print(f"wrote {out_file}")
        out.print(metrics_table([res.report], f"embed {data}"))

    guarded(go)


# ---------------------------------------------------------------- pipeline stages and sweeps

LoopOption = Annotated[Path, typer.Option("--loop", help="The loop file, e.g. loops/banking77.yaml.")]
ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="A DVC params.yaml whose settings override the loop file's.")
]
StageOutOption = Annotated[
    Path | None, typer.Option("--out", help="The stage folder (default: .curation/stages/LOOP).")
]


def run_stage_command(stage: str, loop: Path, params: Path | None, out_dir: Path | None) -> None:
    """One pipeline stage from the CLI: read its inputs from files, write its outputs to files."""
    from curation.orchestration.stages import run_stage, stage_config

    quiet_libraries()

    def go() -> None:
        cfg, p = stage_config(loop, params)
        with progress_bar() as bar:
            metrics = run_stage(stage, cfg, out_dir, RichReporter(bar), p if params is not None else None)
        flat = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
        out.print(metrics_table([flat], f"{cfg.name}: {stage}"))

    guarded(go)


@app.command("issues")
def issues_cmd(loop: LoopOption, params: ParamsOption = None, out_dir: StageOutOption = None) -> None:
    """Pipeline stage: find label issues in the validated, embedded rows (issues.parquet)."""
    run_stage_command("issues", loop, params, out_dir)


@app.command("select")
def select_cmd(loop: LoopOption, params: ParamsOption = None, out_dir: StageOutOption = None) -> None:
    """Pipeline stage: choose the next batch to label (selection, tasks, a learning curve)."""
    run_stage_command("select", loop, params, out_dir)


@app.command("push")
def push_cmd(loop: LoopOption, params: ParamsOption = None, out_dir: StageOutOption = None) -> None:
    """Pipeline stage: push the selected tasks to the loop's annotation queue."""
    run_stage_command("push", loop, params, out_dir)


def show_sweep(result: Any) -> None:
    """One line for a finished sweep, and where its report is."""
    from curation.orchestration.sweep import one_line

    out.print(one_line(result.summary), highlight=False, soft_wrap=True)
    out.print(f"report: {result.folder / 'report.html'}  summary: {result.folder / 'summary.json'}")


def scheduled_error(e: Exception, failed: list[Any]) -> None:
    """A failed scheduled run: print it (a breached gate is remembered for the exit code)."""
    from curation.errors import GateError

    if not isinstance(e, CurationError):
        raise e
    if isinstance(e, GateError):
        failed.append(e)
    console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)


def _gate(help_text: str) -> Any:
    return typer.Option(help=f"Gate: {help_text}", rich_help_panel="Gates (defaults: docs/sweeps.md)")


SweepData = Annotated[
    str | None,
    typer.Argument(
        help="The data: a Parquet/CSV/JSON Lines file, folder or glob (default: the --loop's dataset)."
    ),
]
SweepSchema = Annotated[
    Path | None,
    typer.Option(help="Its contract: schemas/x.yaml or schemas/x.py:Model (default: the --loop's)."),
]
SweepLoop = Annotated[
    Path | None,
    typer.Option(
        "--loop",
        help="A loop file: sweep its dataset with its contract, columns, embedding and issue settings.",
    ),
]
HistoryOpt = Annotated[
    Path | None,
    typer.Option(help="The sweep history folder (default: sweeps/NAME, NAME the dataset's file stem)."),
]
IdOpt = Annotated[str | None, typer.Option("--id", help="The id column (default id).")]
Column = Annotated[str | None, typer.Option(help="The column (default: its name).")]
DetectorOpt = Annotated[
    list[str] | None, typer.Option(help="An issue detector to run (repeat for more; default: the loop's).")
]
SweepSeq = Annotated[int | None, typer.Option(min=1, help="Embedding truncation in tokens (default 256).")]
FoldsOpt = Annotated[int | None, typer.Option(min=2, help="Cross-validation folds (default 5).")]
RecipeOpt = Annotated[str | None, typer.Option(help="Label-issue recipe: ensemble (default) or reference.")]
SweepEngine = Annotated[str | None, typer.Option(help="local (in process, default) or ray.")]
Gate = Annotated[float | None, _gate("see docs/sweeps.md.")]
EmbeddingTestOpt = Annotated[
    str | None,
    _gate("the embedding drift test: knn (default), mmd, classifier or ks; see docs/sweeps.md."),
]
DriftGate = Annotated[
    bool | None,
    typer.Option("--drift-gate/--no-drift-gate", help="Fail the sweep on drift (default) or only report it."),
]
WebhookOpt = Annotated[
    str | None, typer.Option(help="POST the summary (JSON, with a one-line `text`) to this URL.")
]
EveryOpt = Annotated[str | None, typer.Option(help="Run on a schedule in this process: 30m, 6h, 1d...")]
RunsOpt = Annotated[int | None, typer.Option(min=1, help="With --every: stop after this many runs.")]
EvalOpt = Annotated[
    str | None,
    typer.Option(
        "--eval",
        help="A held-out set (same columns): report its rows that nearly repeat a dataset row "
        "(leaky splits; default: the --loop's eval_dataset).",
    ),
]


#: The sweep options that are fields of ``Gates`` (``--drift-gate`` is ``drift``).
GATE_OPTIONS = (
    "max_invalid_fraction",
    "max_issue_fraction",
    "max_duplicate_fraction",
    "alpha",
    "label_min_distance",
    "embedding_test",
    "embedding_min_distance",
    "text_min_distance",
    "max_label_issue_increase",
)


@app.command("sweep")
def sweep_cmd(
    dataset: SweepData = None,
    schema: SweepSchema = None,
    loop: SweepLoop = None,
    history: HistoryOpt = None,
    id_col: IdOpt = None,
    text: Column = None,
    label: Column = None,
    eval_dataset: EvalOpt = None,
    detector: DetectorOpt = None,
    max_seq_length: SweepSeq = None,
    folds: FoldsOpt = None,
    recipe: RecipeOpt = None,
    engine: SweepEngine = None,
    max_invalid_fraction: Gate = None,
    max_issue_fraction: Gate = None,
    max_duplicate_fraction: Gate = None,
    alpha: Gate = None,
    label_min_distance: Gate = None,
    embedding_test: EmbeddingTestOpt = None,
    embedding_min_distance: Gate = None,
    text_min_distance: Gate = None,
    max_label_issue_increase: Gate = None,
    drift_gate: DriftGate = None,
    webhook: WebhookOpt = None,
    every: EveryOpt = None,
    runs: RunsOpt = None,
) -> None:
    """Data-quality sweep: validation, duplicates, label issues, outliers, drift; an HTML report.

    Writes HISTORY/sweep-NNNN/ (report.html, summary.json, the flagged rows) and a line in
    HISTORY/history.jsonl. Exits 4 when a gate is breached (broken rows, drift, ...), 5 when
    another sweep of the same history is running.
    """
    from curation.errors import GateError
    from curation.orchestration.schedule import every as on_schedule
    from curation.orchestration.schedule import parse_every
    from curation.orchestration.sweep import sweep_once, sweep_settings

    quiet_libraries()
    given = dict(locals())
    gates = {k: given[k] for k in GATE_OPTIONS} | {"drift": drift_gate}
    options = {
        k: given[k] for k in ("text", "label", "engine", "max_seq_length", "folds", "recipe", "eval_dataset")
    }
    settings = guarded(
        lambda: sweep_settings(
            dataset, schema, history, loop=loop, detectors=detector, gates=gates, id=id_col, **options
        )
    )

    def once() -> None:
        with progress_bar() as bar:
            sweep_once(settings, RichReporter(bar), webhook=webhook, show=show_sweep)

    failed: list[GateError] = []

    def go() -> None:
        if every is None:
            once()
            return
        seconds = parse_every(every)
        out.print(f"sweeping {settings.dataset} every {every} ({seconds:.0f} s); Ctrl-C stops")
        on_schedule(seconds, once, runs=runs, on_error=lambda e: scheduled_error(e, failed))
        if failed:
            raise GateError(f"{len(failed)} of the sweeps breached a gate")

    guarded(go)


@app.command("simulate")
def simulate_cmd(
    loop: Annotated[
        Path, typer.Argument(help="A loop file; its dataset is the pool, eval_dataset the test set.")
    ],
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of `budget` labels each.")] = 10,
    seeds: Annotated[int, typer.Option(min=1, help="Simulations per strategy (seeds 0..S-1).")] = 3,
    compare: Annotated[
        list[str] | None,
        typer.Option(help="Another strategy to simulate beside the loop's (repeatable); default: random."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for curves.json and curves.png.")
    ] = None,
) -> None:
    """Simulate the loop from a cold start with the oracle: learning curves over seeds.

    The dataset's labels are hidden and revealed by the oracle connector as the strategy asks;
    after each round a model is fitted and scored on eval_dataset. Writes curves.json (accuracy
    against labels, mean and spread over seeds, AULC) and curves.png.
    """
    from curation.load import load_loop
    from curation.orchestration.simulate import compared_strategies, simulate_loop

    quiet_libraries()

    def go() -> None:
        cfg = load_loop(loop)
        specs = compared_strategies(cfg, compare)
        dest = out_dir or cfg.root / "simulations" / cfg.name
        with progress_bar() as p:
            task = p.add_task(f"simulate {', '.join(s.name for s in specs)}", total=None)
            curves = simulate_loop(
                cfg,
                specs,
                rounds,
                seeds,
                dest,
                progress=lambda done, total: p.update(task, completed=done, total=total),
            )
        rows = [
            {"strategy": name, "AULC": cv.aulc, **{str(n): float(a) for n, a in zip(cv.labels, cv.mean)}}
            for name, cv in curves.items()
        ]
        out.print(metrics_table(rows, f"{cfg.name}: accuracy against labels, mean of {seeds} seeds"))
        out.print(f"curves: {dest / 'curves.json'}, plot: {dest / 'curves.png'}")

    guarded(go)


def main() -> None:
    """Entry point of the ``curation`` script."""
    app()


if __name__ == "__main__":
    main()
