# syntax=docker/dockerfile:1
# One image for every role of the distributed deployment; the command picks the role:
#   docker run IMAGE api [--role api]    HTTP API             (/health on API_PORT, 8080)
#   docker run IMAGE sink [--port 8081]  ClickHouse sink      (/health on --port, 8081)
#   docker run IMAGE worker              Faust pricing worker (/health on WORKER__WEB_PORT, 6066)
# It writes only under /data (COSTOPS_DATA_DIR, a volume), so it runs with a read-only root
# filesystem (docker-compose.yml: read_only: true, a tmpfs on /tmp).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: the project and its pinned dependencies in a virtualenv ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler for any dependency without a wheel for this platform; it stays in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY llm_cost_ops ./llm_cost_ops
COPY schemas ./schemas
COPY streams ./streams
COPY sinks ./sinks
COPY api ./api
COPY benchmarks ./benchmarks
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv

# ---- runtime: the slim base, the virtualenv, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="llm-cost-ops" \
      org.opencontainers.image.description="LLM-CostOps: API, pricing worker and ClickHouse sink (one role per container)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COSTOPS_DATA_DIR=/data \
    HOME=/data \
    API_HOST=0.0.0.0 \
    WORKER__WEB_HOST=0.0.0.0
RUN groupadd --system --gid 10001 costops \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin costops \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/costops/healthcheck.py
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080 8081 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/costops/healthcheck.py"]
ENTRYPOINT ["cost-ops"]
CMD ["api"]
