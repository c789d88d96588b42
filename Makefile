# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest pytest-compiled compiled install redis-server promtool deploy-tools wrk lock eval \
        bench-matcher bench-http bench-redis bench-smoke clean help

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

promtool:  ## make sure promtool is installed (Debian package prometheus) for the alert-rule test
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "promtool missing: installing Debian package prometheus"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) \
	  || { echo "could not install promtool" >&2; exit 1; }; }

wrk:  ## make sure wrk (the HTTP load generator of bench-http) is installed
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "wrk missing: installing Debian package wrk"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) \
	  || { echo "could not install wrk" >&2; exit 1; }; }

deploy-tools:  ## make sure kubectl (kustomize) is installed for the deployment tests
	@command -v kubectl >/dev/null 2>&1 || { \
	  echo "kubectl missing: installing Debian package kubernetes-client"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client) \
	  || { echo "could not install kubectl" >&2; exit 1; }; }

lock: $(STAMP)  ## regenerate the hashed lock files the Dockerfile installs from
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --generate-hashes --all-build-deps --only-build-deps --allow-unsafe \
	  --strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements-build.lock pyproject.toml

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app matching bench tests scripts setup.py

typecheck: $(STAMP)  ## mypy (strict)
	$(BIN)/mypy

pytest: $(STAMP) redis-server promtool deploy-tools wrk  ## the test suite
	$(BIN)/python -m pytest

test: lint typecheck pytest pytest-compiled bench-smoke  ## lint, type-check, the tests (also against the compiled build), the 20 s locust smoke run

# The compiled build (mypyc, app/compiled.py): the wheel the image ships, unpacked into its own
# directory. The dev tree never holds compiled modules (no .so next to a source you edit); the
# build is remade whenever a source or the build hook changes.
COMPILED_DIR := build/compiled
$(COMPILED_DIR)/.built: $(STAMP) setup.py pyproject.toml $(wildcard app/*.py app/*/*.py matching/*.py matching/*/*.py)
	rm -rf $(COMPILED_DIR) build/lib.* build/temp.* build/bdist.*  # (setuptools' own: stale extensions)
	VOP_MYPYC=1 $(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(COMPILED_DIR)/wheel .
	$(BIN)/pip install --quiet --no-deps --no-compile --target $(COMPILED_DIR)/site $(COMPILED_DIR)/wheel/*.whl
	touch $@

compiled: $(COMPILED_DIR)/.built  ## build the mypyc-compiled hot path into build/compiled/site (as the image ships it)

# The compiled modules' tests and the API's (schemathesis fuzzing included), run against the
# compiled build: PYTHONPATH puts it first and --import-mode=append keeps pytest from putting the
# source tree ahead of it; test_compiled.py fails the run if a listed module was imported from
# source instead, or anything else came compiled, and (in every run) if a module of app/compiled.py
# is imported by none of these files.
COMPILED_TESTS := tests/test_compiled.py tests/test_normalize.py tests/test_name_variants.py \
	tests/test_legal_forms.py tests/test_policy.py tests/test_matching_properties.py tests/test_verify.py \
	tests/test_enumeration.py tests/test_eval.py \
	tests/test_api.py tests/test_bulk_and_limits.py tests/test_security_gate.py tests/test_api_security.py \
	tests/test_schemathesis.py
pytest-compiled: $(COMPILED_DIR)/.built redis-server  ## the compiled modules' tests, against the compiled build
	VOP_EXPECT_COMPILED=1 PYTHONPATH=$(CURDIR)/$(COMPILED_DIR)/site $(BIN)/pytest --import-mode=append \
	  -p no:cacheprovider $(COMPILED_TESTS)

eval: $(STAMP)  ## score the matcher on the shared dev cases
	$(BIN)/vop eval ../shared/eval/dev_cases.csv

bench-matcher: $(STAMP)  ## matcher micro-benchmark
	$(BIN)/python -m bench.bench_matcher

bench-http: $(STAMP) wrk  ## HTTP throughput: vop serve next to a do-nothing granian app
	$(BIN)/python -m bench.http

bench-redis: $(STAMP) redis-server  ## Redis load time, change-to-visible latency, memory
	$(BIN)/python -m bench.bench_redis

bench-smoke: $(STAMP)  ## locust suite for 20 s against a local server, SLO gate must pass
	$(BIN)/python -m bench.smoke

clean:  ## remove generated files (not the virtualenv)
	rm -rf var bench/out build .pytest_cache .mypy_cache .ruff_cache
