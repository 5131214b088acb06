# The front door. `make dev` runs everything on one machine; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev test test-fast lint fuzz openapi migrate bench-poll bench-copy bench-webhooks bench-api bench-fairness bench-scale \
	bench-wait \
	compose-check screenshots lock clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# The Python client (sdk/python): `cometjobs jobs ...` runs on it and the suite tests it.
	$(BIN)/python -m pip install --quiet -e sdk/python
	touch $(STAMP)

install: $(STAMP)

# make dev PORT=9000: the API on 9000, the emulator on 9001.
dev: install
	$(BIN)/cometjobs dev $(if $(PORT),--port $(PORT))

# pytest's own exit code is the target's exit code (5, "no tests collected", included).
# -n 3: three xdist workers, each with its own database, Redis prefix and processes. Most
# tests wait on real processes (the CPUs sit ~40% idle with one worker per CPU), so on
# the 2-core reference machine a third worker overlaps that waiting. PYTEST_ARGS="-n 0"
# runs serially.
# --dist loadgroup: tests marked xdist_group (the console's browser tests share one
# scene and one browser) stay on one worker; every other test is spread as usual.
test: install
	$(BIN)/python -m pytest -n 3 --dist loadgroup $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -n 3 --dist loadgroup -m "not chaos" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# schemathesis over openapi/openapi.json against a stack of its own (scratch database,
# `cometjobs api`): fails on any 5xx or any answer the spec does not describe. Budget:
# FUZZ_MAX_TIME seconds (180), FUZZ_MAX_EXAMPLES per operation and phase (25); FUZZ_SEED replays.
fuzz: install
	$(BIN)/python -m tests.fuzz.run

# The README's console screenshots, taken by the browser tests (Debian's chromium).
screenshots: install
	COMETJOBS_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -n 0 -q tests/test_console_browser.py

# requirements.lock: every runtime dependency pinned with its hashes, for the image
# (Dockerfile: pip install --require-hashes). Regenerate after changing pyproject.toml's
# dependencies; tests/test_lockfile.py fails while the lock does not cover them.
lock: install
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

openapi: install
	$(BIN)/cometjobs openapi --out openapi/openapi.json

migrate: install
	$(BIN)/cometjobs migrate

bench-poll: install
	$(BIN)/python -m bench.poll

bench-copy: install
	$(BIN)/python -m bench.copy

bench-webhooks: install
	$(BIN)/python -m bench.webhooks

bench-api: install
	$(BIN)/python -m bench.api $(BENCH_ARGS)

bench-fairness: install
	$(BIN)/python -m bench.fairness $(BENCH_ARGS)

# 1,000,000 finished + 100,000 active jobs; the real worker and scheduler for 5 minutes.
# Smaller: make bench-scale BENCH_ARGS="--history 100000 --minutes 3".
bench-scale: install
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

bench-wait: install
	$(BIN)/python -m bench.wait $(BENCH_ARGS)

compose-check:
	docker-compose -f docker-compose.yml config --quiet

clean:
	rm -rf $(VENV) .cometjobs .pytest_cache
