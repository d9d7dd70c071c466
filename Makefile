# clipedu: `make lab` opens the course, `make test` runs every check: lint, unit tests, notebooks.
# Both first build .venv from pyproject.toml (only Python 3.11 needed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Jupyter refuses to run as root (containers, cloud notebooks) unless told to.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)
# JupyterLab with the project's configuration, .jupyter/ (read beside the user's own, never written to):
# no "Jupyter news?" pop-up, the file browser opens at notebooks/. LAB_ARGS adds options, e.g. a port;
# the tests start JupyterLab through this target: make -o $(STAMP) lab LAB_ARGS="--no-browser --port 8899"
LAB_CMD = JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH))" \
	$(BIN)/jupyter lab $(LAB_FLAGS) $(LAB_ARGS)

.PHONY: setup lab test lint unit notebooks check-notebooks bench clean site site-check browser weights

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(LAB_CMD)

test: setup lint unit site-check check-notebooks notebooks browser

# import sorting and unused imports (pyproject.toml [tool.ruff]); `ruff check --fix` repairs both
lint: setup
	$(BIN)/ruff check clipedu tests benchmarks site browser_tests

unit: setup
	$(BIN)/python -m pytest -q tests

# the course website, built from solutions/ with their stored outputs (nothing re-executed): site/_build/html
site: setup
	$(BIN)/python site/build.py

# every page's internal links, anchors and images resolve, and no notebook output is an execution error
site-check: site
	$(BIN)/python site/check.py --course .

# Notebook 16 in JupyterLab in Chromium (Run All, then its widgets respond), and the built site in the same
# browser (browser_tests/; screenshots in browser_out/). Playwright drives Debian's chromium package
# (CHROMIUM=/path/to/chromium to use another); without it the stage is skipped in one line, unless
# REQUIRE_BROWSER=1 (CI) makes that an error. Run after `make notebooks` (the course model is cached) and
# `make site`.
CHROMIUM ?= /usr/bin/chromium
browser: setup site
	@if [ -x "$(CHROMIUM)" ]; then \
	  CHROMIUM="$(CHROMIUM)" $(BIN)/python -m pytest -q -s -p no:cacheprovider browser_tests; \
	elif [ -n "$(REQUIRE_BROWSER)" ]; then \
	  echo "browser checks: no Chromium at $(CHROMIUM) and REQUIRE_BROWSER is set: apt-get install chromium"; exit 1; \
	else echo "browser checks skipped: no Chromium at $(CHROMIUM) (Debian: apt-get install chromium)"; fi

check-notebooks: setup
	$(BIN)/python -m clipedu.course --check

notebooks: setup
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks solutions; \
	else echo "no notebooks yet"; fi

# OpenAI's released weights, checked against their SHA-256, into ~/.cache/clip (where clip.load looks):
# make weights MODEL=RN50; MODEL=hf-hub:ORG/REPO fetches an OpenCLIP checkpoint (needs pip install "clipedu[hub]")
MODEL ?= ViT-B/32
weights: setup
	$(BIN)/python -m clipedu.download "$(MODEL)"

bench: setup
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .cache site/_build site/_src browser_out
