# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest install redis-server eval bench-matcher bench-http clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create the virtualenv and install the project with dev tools

run: $(STAMP)  ## serve the API on the embedded demo index (no Redis needed)
	$(BIN)/vop serve

redis-server:  ## make sure redis-server is installed (tests start their own on a free port)
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server missing: installing Debian package redis-server"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
	  || { echo "could not install redis-server" >&2; exit 1; }; }

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app matching tests

typecheck: $(STAMP)  ## mypy (strict)
	$(BIN)/mypy

pytest: $(STAMP) redis-server  ## the test suite
	$(BIN)/python -m pytest

test: lint typecheck pytest  ## lint, type-check and run the tests

eval: $(STAMP)  ## score the matcher on the shared dev cases
	$(BIN)/vop eval ../shared/eval/dev_cases.csv

bench-matcher: $(STAMP)  ## matcher micro-benchmark
	$(BIN)/python -m bench.bench_matcher

bench-http: $(STAMP)  ## HTTP throughput: vop serve next to a do-nothing granian app
	$(BIN)/python -m bench.http

clean:  ## remove generated files (not the virtualenv)
	rm -rf var bench/out .pytest_cache .mypy_cache .ruff_cache
