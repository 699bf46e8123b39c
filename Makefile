# `make run` and `make test` work on a fresh machine: both create .venv when it is missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-ledger stress mutate clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e '.[ops]'
	@touch $@

run: $(STAMP)
	$(BIN)/stripe-events run --stage local --host 127.0.0.1 --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The tests run in a random order (pytest-randomly); `make test SEED=N` replays one.
ifndef SEED
SEED := $(shell $(PYTHON) -c 'import random; print(random.randrange(10**9))')
endif

test: lint
	@echo "pytest in random order, seed $(SEED): \`make test SEED=$(SEED)\` replays it"
	$(BIN)/pytest -p randomly --randomly-seed=$(SEED)

# The package benchmark measures what `stripe-events build` made, as Deploy ships it.
# BENCH_ARGS go to the package benchmark, e.g. `make bench BENCH_ARGS="--repeat 3 --check"`.
bench: $(STAMP)
	$(BIN)/python bench/webhook_bench.py
	$(BIN)/stripe-events build --stage prod
	$(BIN)/python bench/package_bench.py $(BENCH_ARGS)

# What `ledger` and `failures` read from a ledger of 100,000 items (on a moto server it starts).
bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger_queries_bench.py

# Mutation testing of the runtime's core modules: a score per module (see mutation/run.py).
mutate: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-mutate.txt
	$(BIN)/python mutation/run.py $(MUTATE_ARGS)

# The concurrency tests of `make test`, with ten times the rounds and examples.
ROUNDS ?= 100
stress: $(STAMP)
	STRIPE_EVENTS_RACE_ROUNDS=$(ROUNDS) STRIPE_EVENTS_RACE_EXAMPLES=$(ROUNDS) \
		$(BIN)/pytest -p no:cacheprovider tests/test_concurrency.py

# After upgrading stripe: the event types the routers check their names against.
.PHONY: catalog
catalog: $(STAMP)
	$(BIN)/python -c "from stripe_events import catalog; catalog.write_data()"

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache .hypothesis .mutation
