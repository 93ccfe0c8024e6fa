# Two commands a fresh clone needs: `make run` and `make test`. Both build .venv first.
# `make test-web` runs the browser and Node tests (tests_web/): it needs chromium and node.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WEB_STAMP := $(VENV)/.installed-web
JS_STAMP  := clients/js/node_modules/.installed

.PHONY: run test test-web test-bench lint bench load-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# A local demo: /play signs in by name (MANOR_DEV_LOGIN=1) and /console takes the admin key
# kept in data/admin_key (made on the first run, mode 0600). Either can be set instead.
run: $(STAMP)
	@mkdir -p data && test -s data/admin_key || (umask 077 && $(BIN)/python -c \
		'import secrets; print(secrets.token_urlsafe(32))' > data/admin_key)
	@echo "make run: open http://127.0.0.1:$${MANOR_PORT:-8000}/play and /console (admin key: data/admin_key)"
	MANOR_DEV_LOGIN=$${MANOR_DEV_LOGIN:-1} MANOR_ADMIN_KEY=$${MANOR_ADMIN_KEY:-$$(cat data/admin_key)} \
		$(BIN)/manor serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest -q

# The web extra (Playwright's Python package; it drives Debian's chromium, never a
# downloaded browser) and the JS client's pinned dev dependencies (npm ci, from the lock).
$(WEB_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,web]'
	touch $(WEB_STAMP)

$(JS_STAMP): clients/js/package.json clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

test-web: $(WEB_STAMP) $(JS_STAMP)
	$(BIN)/pytest -q tests_web

# The instruction counters the performance notes rest on (bench/instructions.py,
# bench/commit_cost.py), run small under valgrind's callgrind: needs valgrind (Debian's).
test-bench: $(STAMP)
	$(BIN)/pytest -q tests_bench

bench: $(STAMP)
	$(BIN)/python -m bench.ws_signin

load-smoke: $(STAMP)
	$(BIN)/python -m load.smoke

load-midnight: $(STAMP)
	$(BIN)/python -m load.midnight

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests_web/artifacts clients/js/node_modules
