# `make run` and `make test` set everything up from nothing, then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup clean

setup: $(STAMP)

# The CPU build of torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
# Installing condnet builds the engine's C micro-kernel (setup.py) with the system compiler.
# The extras bring Dask (`distributed`, with the `dask` command the cluster tests start) and the
# PostgreSQL driver; the tests start their own scheduler, workers and database server.
$(STAMP): pyproject.toml setup.py src/condnet/engine/microkernel.c src/condnet/engine/int8_dots.c \
		src/condnet/engine/int8_product.c src/condnet/engine/shared_product.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[train,bench,search,dev]'
	touch $(STAMP)

# The main job (runs/ is rewritten each time): the paper's default model and its dense twin, trained on
# MNIST, their summary and the engine's measured batch-1 speedup; then the answer of the routing work:
# the best gated config found (chosen on validation) against the dense net of about its latency.
run: $(STAMP)
	$(BIN)/condnet train --force --config configs/default.toml --out runs/default
	$(BIN)/condnet train --force --config configs/default.toml --set model.kind=nn --out runs/default_nn
	$(BIN)/condnet summary runs/default runs/default_nn
	$(BIN)/condnet bench runs/default --batch 1 --threads 1
	$(BIN)/condnet train --force --config configs/frontier/mnist_best.toml --out runs/mnist_best
	$(BIN)/condnet train --force --config configs/frontier/mnist_dense_rival.toml --out runs/mnist_dense_rival
	$(BIN)/condnet versus runs/mnist_best runs/mnist_dense_rival

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) runs
