# Phoney: `make run` serves the bundled flows; `make test` installs what tests need and runs them.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 5000
HOST    ?= 127.0.0.1

.PHONY: install tools run test lint typecheck validate scenarios pytest load bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .  # the phoney command
	touch $(STAMP)

install: $(STAMP)

# System tools the tests render with (Graphviz, Node packages for Mermaid), and the OpenID
# Connect provider the sign-in tests start (tools/oidc).
tools:
	./scripts/ensure-tools

run: install
	@$(BIN)/python -m engine.webhook_urls --host $(HOST) --port $(PORT)
	$(BIN)/flask run --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

validate: install
	$(BIN)/flask flows validate

# Every flow's scenarios (flows/<flow>.test.yaml) pass and take every edge of its graph.
scenarios: install
	$(BIN)/flask flows test --min-coverage 100

pytest: install tools
	$(BIN)/pytest -q

test: lint typecheck validate scenarios pytest

# 100 concurrent calls on gunicorn + Redis with faults and a killed worker (docs/load.md). The
# short form (10 calls) runs in `pytest` (tests/e2e/test_load_short.py).
load: install
	$(BIN)/python bench/load.py

# Phoney against its limits, each next to a baseline measured in the same run (~10 minutes);
# the table is kept in docs/benchmarks.md. Needs wrk (Debian's package).
bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench.run_all --docs docs/benchmarks.md

clean:
	rm -rf $(VENV) tools/mermaid/node_modules tools/oidc/node_modules .mypy_cache .ruff_cache .pytest_cache
