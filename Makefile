# `make run` and `make test` work on a fresh machine: both create .venv when it is missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# What `make run` needs (the runtime, its lock, the command), and what the tests add.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run reset test quick lint bench bench-ledger bench-crash stress mutate clean lock docs

# The runtime's lock first, hashes checked: development runs what the zip ships.
$(RUN_STAMP): requirements.in requirements.txt pyproject.toml ops/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -e . -e ./ops
	@touch $@

$(STAMP): $(RUN_STAMP) requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e . -e ./ops
	@touch $@

# Checkov has a venv of its own: it pins boto3, networkx and packaging to other versions.
CHECKOV := $(VENV)/checkov/bin/checkov
$(CHECKOV): requirements-checkov.txt
	@test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-checkov.txt
	@touch $@

# After changing requirements.in or requirements-checkov.in: their locks, with hashes.
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux2014 requirements.in -o requirements.txt
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux2014 requirements-checkov.in -o requirements-checkov.txt

run: $(RUN_STAMP)
	$(BIN)/stripe-events run --stage local --host 127.0.0.1 --port $(PORT)

# Stage local's state: the ledger, the state and the outbox (SQLite), oversized bodies.
STATE_DIR ?= $(or $(STRIPE_EVENTS_STATE_DIR),.state)
reset:
	rm -rf $(STATE_DIR)
	@echo "stage local's state in $(STATE_DIR) is gone; the next make run starts empty"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The tests run in a random order (pytest-randomly); `make test SEED=N` replays one.
ifndef SEED
SEED := $(shell $(PYTHON) -c 'import random; print(random.randrange(10**9))')
endif

test: lint $(CHECKOV)
	@echo "pytest in random order, seed $(SEED): \`make test SEED=$(SEED)\` replays it"
	$(BIN)/pytest -p randomly --randomly-seed=$(SEED)

# The inner loop: the unit tests (no moto, no processes), stopping at the first failure.
# tests/contract checks each interface's implementations against each other and against
# the libraries' answers; tests/integration runs the app, its packages and its commands.
quick: $(STAMP)
	$(BIN)/pytest -x -p no:randomly tests/unit

# The package benchmark measures what `stripe-events build` made, as Deploy ships it.
# BENCH_ARGS go to the package benchmark, e.g. `make bench BENCH_ARGS="--repeat 3 --check"`.
bench: $(STAMP)
	$(BIN)/python bench/webhook_bench.py
	$(BIN)/stripe-events build --stage prod
	$(BIN)/python bench/package_bench.py $(BENCH_ARGS)

# What `ledger` and `failures` read from a ledger of 100,000 items (on a moto server it starts).
bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger_queries_bench.py

# kill -9 of make run mid-burst, then Stripe's redeliveries: nothing acknowledged is lost,
# and `failures` lists what the dead server left undone (about 70 s a round).
bench-crash: $(STAMP)
	$(BIN)/python bench/crash_bench.py $(BENCH_ARGS)

# Mutation testing of the runtime's core modules: a score per module (see mutation/run.py).
mutate: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-mutate.txt
	$(BIN)/python mutation/run.py $(MUTATE_ARGS)

# The concurrency tests of `make test`, with ten times the rounds and examples.
ROUNDS ?= 100
stress: $(STAMP)
	STRIPE_EVENTS_RACE_ROUNDS=$(ROUNDS) STRIPE_EVENTS_RACE_EXAMPLES=$(ROUNDS) \
		$(BIN)/pytest -p no:cacheprovider tests/integration/test_concurrency.py

# The docs site (MkDocs Material) on 127.0.0.1, rebuilt as its pages change.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8001

# After upgrading stripe: the event types the routers check their names against.
.PHONY: catalog
catalog: $(STAMP)
	$(BIN)/python -c "import stripe_events._catalog as catalog; catalog.write_data()"

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache .hypothesis .mutation
