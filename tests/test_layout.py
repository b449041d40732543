"""The shape of the package: no import cycles, every module importable alone, small functions,
a round wired in one short module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "curation"
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if p.name != "__main__.py"
)


def imports_of(path: Path, module: str) -> set[str]:
    """The ``curation`` modules ``path`` imports, at any depth (functions included)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES and m != module}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for m in MODULES:
        parts = m.split(".")
        path = PACKAGE.joinpath(*parts[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[m] = imports_of(path, m)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in graph:
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert sum(len(v) for v in graph.values()) > 50  # the graph was read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def folder(module: str) -> str:
    """``curation.steps.embed`` -> ``curation.steps``; top-level modules stand alone."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def test_the_folders_are_layers_without_a_cycle() -> None:
    """support < connectors, strategies < config < steps < issues < load < orchestration < cli."""
    graph: dict[str, set[str]] = {folder(m): set() for m in MODULES}
    for m, deps in import_graph().items():
        graph[folder(m)].update(folder(d) for d in deps if folder(d) != folder(m))
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    assert "curation.orchestration" not in graph["curation.steps"] | graph["curation.support"]


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["curation.errors"] = {"curation.support.data"}  # data imports errors: a cycle
    assert find_cycle(graph) is not None


#: Each module is imported first in a child forked from one interpreter that holds only the
#: third-party libraries (importing them once, not once per module, is most of the time).
FORK_IMPORTS = """
import importlib, os, sys, traceback
for lib in ("numpy", "polars", "pyarrow", "pandas", "scipy.sparse", "sklearn.feature_extraction.text",
            "sklearn.linear_model", "pydantic",
            "pandera", "yaml", "rich.console", "typer"):
    importlib.import_module(lib)
assert not [m for m in sys.modules if m.split(".")[0] == "curation"]
failed = []
for module in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(module)
        except BaseException:
            os.write(w, traceback.format_exc()[-1500:].encode())
            os._exit(1)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(module + ": " + err)
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    r = subprocess.run(
        [sys.executable, "-c", FORK_IMPORTS, *MODULES], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def test_the_import_check_finds_a_module_that_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "broken_alone.py").write_text("import curation.no_such_module\n")
    r = subprocess.run(
        [sys.executable, "-c", FORK_IMPORTS, "broken_alone", "curation.errors"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )
    assert r.returncode == 1 and "broken_alone: " in r.stdout and "curation.errors" not in r.stdout


def code_lines(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function that are neither blank, comments nor its docstring."""
    doc = range(0)
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        doc = range(first.lineno, (first.end_lineno or first.lineno) + 1)
    end = node.end_lineno or node.lineno
    return sum(
        1
        for i in range(node.lineno, end + 1)
        if i not in doc and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")
    )


def long_functions(limit: int) -> list[str]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and code_lines(lines, node) > limit:
                found.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({code_lines(lines, node)})"
                )
    return found


def test_no_function_is_over_60_lines_of_code() -> None:
    assert long_functions(60) == []
    assert long_functions(20)  # the counter counts


def test_a_round_is_wired_in_one_short_module() -> None:
    assert len((PACKAGE / "orchestration" / "round.py").read_text(encoding="utf-8").splitlines()) <= 150


def test_every_benchmark_imports_and_shows_its_options() -> None:
    """A benchmark whose imports broke (a moved helper) fails here, not on the day it is run."""
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) >= 9
    code = (
        "import runpy, sys\n"
        "for path in sys.argv[1:]:\n"
        "    sys.argv = [path, '--help']\n"
        "    try:\n"
        "        runpy.run_path(path, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (path, e.code)\n"
        "    print('ok', path)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, scripts)],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("ok ") == len(scripts), r.stdout
