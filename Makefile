# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LS_VENV := .venv-ls
EXTRAS := test,onnx,scale

.PHONY: demo test lint install install-ls install-chromium clean docs

# torch first, from the CPU build pinned in pyproject.toml, so that nothing pulls a CUDA build.
$(BIN)/curation: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/curation

# Label Studio (the server) in its own environment: its pins clash with ours.
$(LS_VENV)/bin/label-studio:
	$(PY) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet --upgrade pip
	$(LS_VENV)/bin/pip install --quiet label-studio==1.23.2

install-ls: $(LS_VENV)/bin/label-studio

# Debian's Chromium renders the sweep report in tests/test_report.py (headless).
install-chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

demo: install
	$(BIN)/curation demo

# Style, types and the docstring examples first (seconds), then the test suite.
lint: install
	$(BIN)/ruff check curation tests benchmarks
	$(BIN)/ruff format --check curation tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider --doctest-modules curation

# Two workers (pytest-xdist): most tests wait on a subprocess, a server or git as much as they
# compute; the tests sharing a Label Studio server or the fault suite's reference share a worker.
# The three installs run side by side (each mostly waits on downloads and disk).
test:
	$(MAKE) -j3 install install-ls install-chromium
	$(MAKE) lint
	$(BIN)/pytest -n 2 --dist loadgroup --durations=30

# The command reference, from the CLI's own --help.
docs: install
	$(BIN)/typer curation.cli utils docs --name curation --output docs/cli.md

clean:
	rm -rf $(VENV) $(LS_VENV) demo .curation .pytest_cache
