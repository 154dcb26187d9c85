# The two commands a newcomer runs (see README.md):
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the test suite
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint format

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/vlm-teacher demo

test: $(VENV)/.installed-test
	bash scripts/ensure-chromium.sh
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# Tests also need the `ray` extra (Ray backend test) and Chromium (report test).
$(VENV)/.installed-test: $(VENV)/.installed
	EXTRAS="dev,ray" bash scripts/setup.sh
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.installed
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .
