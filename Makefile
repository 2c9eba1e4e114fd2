# The two commands a newcomer needs:  `make serve` (set up + run the API)  and  `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
PYTEST_ARGS ?=

.PHONY: install test serve bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	# torch first: this exact spec resolves to the local CPU wheel (any other spec pulls CUDA).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[collect,dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

serve: install
	$(BIN)/maforecast bootstrap
	$(BIN)/maforecast serve

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .maforecast .pytest_cache
