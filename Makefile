# clipedu: `make lab` opens the course, `make test` runs every check: lint, unit tests, notebooks.
# Both first build .venv from pyproject.toml (only Python 3.11 needed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Jupyter refuses to run as root (containers, cloud notebooks) unless told to.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test lint unit notebooks check-notebooks bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/

test: setup lint unit check-notebooks notebooks

# import sorting and unused imports (pyproject.toml [tool.ruff]); `ruff check --fix` repairs both
lint: setup
	$(BIN)/ruff check clipedu tests benchmarks

unit: setup
	$(BIN)/python -m pytest -q tests

check-notebooks: setup
	$(BIN)/python -m clipedu.course --check

notebooks: setup
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks solutions; \
	else echo "no notebooks yet"; fi

bench: setup
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .cache
