# syntax=docker/dockerfile:1
# Coin Manor server image: `docker build -t coin-manor .`
#
# Two stages: the builder turns the project and its dependencies into wheels and installs
# them into a venv at /opt/venv; the runtime copies only that venv. Both stages use the
# same base image, so the venv's interpreter path (/usr/local/bin/python3.11) matches.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the build needs (see .dockerignore): metadata first, then the packages.
COPY pyproject.toml README.md ./
COPY server ./server
COPY game_rules ./game_rules
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip wheel --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-index --find-links /wheels coin-manor \
 && /opt/venv/bin/manor --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MANOR_HOST=0.0.0.0 \
    MANOR_DATA_DIR=/data
# libjemalloc2: the embedded store's Valkey is built with libc's malloc; MANOR_STORE_MALLOC's
# default (`auto`) preloads the system's jemalloc into it when there is one
# (docs/operations.md, "Embedded"): a third of the store's CPU on a credit was glibc's malloc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 manor \
 && useradd --system --uid 10001 --gid manor --home-dir /app --shell /usr/sbin/nologin manor \
 && mkdir -p /app /data \
 && chown manor:manor /app /data
COPY --from=builder /opt/venv /opt/venv
# The JS client's modules, served at /js/ by the pages (server/web/routes.py looks in
# ./clients/js/src beside the working directory when the package is not a repo checkout).
COPY clients/js/src ./clients/js/src
WORKDIR /app
USER manor
# Player data when no MANOR_REDIS_URL is set (embedded store in /data/store) and the
# generated JWT secret when MANOR_JWT_SECRET is unset (/data/jwt_secret).
VOLUME ["/data"]
EXPOSE 8000
# No curl in the slim image: ask /healthz with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MANOR_PORT', '8000'), timeout=4)"]
CMD ["manor", "serve"]
