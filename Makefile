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
# where `make serve` listens: `make serve MAFORECAST_PORT=3100` (or the variable in the environment)
MAFORECAST_HOST ?= 127.0.0.1
MAFORECAST_PORT ?= 3000

.PHONY: install sysdeps test serve bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	# torch first: this exact spec resolves to the local CPU wheel (any other spec pulls CUDA).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[collect,dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# System packages the slow end-to-end tests use: PostgreSQL (a throwaway cluster as an MLflow
# backend) and Chromium (the MLflow UI in a headless browser). Quiet and idempotent: nothing
# happens when both are present; installs them with apt when root; otherwise says what is missing
# (those tests then skip with the reason).
sysdeps:
	@if command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "sysdeps: installing postgresql chromium (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium >/dev/null; \
	else echo "sysdeps: postgresql/chromium missing and no root apt: the PostgreSQL and browser tests will skip"; fi

test: install sysdeps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

serve: install
	$(BIN)/maforecast bootstrap
	$(BIN)/maforecast serve --host $(MAFORECAST_HOST) --port $(MAFORECAST_PORT)

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .maforecast .pytest_cache
