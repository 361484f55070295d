# Two commands do all the set-up: `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test lint format bench clean

# The app's dependencies; reinstalled whenever requirements.txt changes.
$(VENV)/.app-installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# Tests and tools on top.
$(VENV)/.dev-installed: $(VENV)/.app-installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Migrate the embedded SQLite database, then serve the Procfile's web process.
run: $(VENV)/.app-installed
	$(BIN)/flask --app api db upgrade
	@echo
	@echo "Serving on http://127.0.0.1:$(PORT)"
	@echo "Create a token in another shell with: $(BIN)/flask --app api token create NAME"
	@echo
	PATH="$(CURDIR)/$(BIN):$$PATH" sh -c "exec $$(sed -n 's/^web: *//p' Procfile)"

test: $(VENV)/.dev-installed lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The service under wrk against a bare Flask floor, with an exact count check; see
# BENCHMARKS.md. BENCH_DATABASE_URL=postgresql://... runs it on PostgreSQL.
bench: $(VENV)/.app-installed
	$(BIN)/python -m bench.run

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) instance .pytest_cache test-artifacts
