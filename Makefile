# Two entry points for a fresh clone: `make run` (the main job: cpugrpo tune) and `make test`. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-long lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# torch first and pinned: the CPU wheel 2.13.0; nothing below may pull a CUDA build
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cpugrpo tune

# ruff over the whole tree (configured in pyproject.toml): zero findings or the build fails.
lint: $(STAMP)
	$(BIN)/ruff check .

# Lint, then everything, slow tests included (the first run builds the tiny preset, ~5 min): this is what CI runs.
test: lint
	$(BIN)/python -m pytest -q -p no:warnings -m "not long"

# The tests that take over 5 minutes (the quality gate trains the tiny preset three times at its budget, ~15 min).
test-long: $(STAMP)
	$(BIN)/python -m pytest -q -p no:warnings -m long

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:warnings -m "not slow and not long"

clean:
	rm -rf $(VENV) .pytest_cache
