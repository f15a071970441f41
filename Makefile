# The two commands a newcomer runs: `make bench` and `make test`.
# Both create .venv with the python3 found on PATH and install only when pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: bench test chaos lint clean

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(TEST_ARGS)

# The fault-injection suite at full length (minutes): faults on a schedule, then the history
# checker's verdict per fault. `make test` runs a short version of each.
chaos: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks chaos $(CHAOS_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
