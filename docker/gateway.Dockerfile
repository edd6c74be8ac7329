# syntax=docker/dockerfile:1
# Gateway: gRPC + HTTP API, job store, orchestration. Only the `gateway` extra: this
# image never holds torch or any model.
#
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/tabagent/gateway:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade "pip>=24,<26" wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tabagent ./tabagent
COPY gateway ./gateway
RUN pip install ".[gateway]"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 tabagent \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tabagent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 50050 8080
CMD ["python", "-m", "gateway"]
