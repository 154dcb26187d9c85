# The two commands a newcomer runs (see README.md):
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the test suite
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint format

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(VENV)/.installed

# The main job: the offline teacher on the trained mini models, one held-out (test-split)
# mini-world task, on CPU; leaves runs/mini-recolor-2000000/ with video.mp4/.gif,
# trace.jsonl and summary.html. (`vlm-teacher demo` is the reasoner step benchmark.)
demo: $(VENV)/.installed
	$(VENV)/bin/vlm-teacher run --config configs/agent/mini.yaml --task mini/recolor/2000000 --fresh

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
