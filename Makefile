# `make run` and `make test` set everything up from nothing, then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup clean

setup: $(STAMP)

# The CPU build of torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[train,bench,search,dev]'
	touch $(STAMP)

# The main job: the default model and its dense twin, trained on MNIST (runs/ is rewritten each time),
# their summary, and the measured batch-1 speedup of the engine on the trained default model.
run: $(STAMP)
	$(BIN)/condnet train --force --config configs/default.toml --out runs/default
	$(BIN)/condnet train --force --config configs/default.toml --set model.kind=nn --out runs/default_nn
	$(BIN)/condnet summary runs/default runs/default_nn
	$(BIN)/condnet bench runs/default --batch 1 --threads 1

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) runs
