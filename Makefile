# Task runner. `make test` and `make demo` set everything up first (scripts/setup.sh is idempotent).
VENV ?= .venv
export VENV
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup generate check-spec lint format types test vectors bench demo ci

setup:
	@bash scripts/setup.sh

generate:
	$(BIN)/infernet spec generate

check-spec:
	$(BIN)/infernet spec check

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

types:
	$(BIN)/mypy

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

vectors: setup
	INFERNET_WRITE_VECTORS=1 $(BIN)/python -m pytest -q -k vectors

# bench_nostr_bindings.py needs a second venv with the `secp256k1` binding (see its docstring).
bench: setup
	@for b in $$(ls benchmarks/bench_*.py | grep -v bench_nostr_bindings); do \
		echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: setup
	$(BIN)/infernet demo

ci: setup lint types check-spec test
