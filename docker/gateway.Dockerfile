# syntax=docker/dockerfile:1
# Gateway: gRPC + HTTP API, job store, orchestration. Only the `gateway` extra: this
# image never holds torch or any model. It also serves the page's browser libraries
# (alphaTab, Swagger UI: npm, pinned by web/package-lock.json) and engraves tab.pdf with
# Debian's MuseScore 3 (WITH_PDF=0 leaves it out; the PDF step then skips and says why).
#
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/tabagent/gateway:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim
ARG WITH_PDF=1

FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

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
ARG WITH_PDF
RUN if [ "$WITH_PDF" = "1" ]; then apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musescore3 \
      && rm -rf /var/lib/apt/lists/*; fi
RUN groupadd --gid 10001 tabagent \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tabagent
COPY --from=build /opt/venv /opt/venv
COPY --from=web /web/node_modules /opt/web
ENV PATH=/opt/venv/bin:$PATH \
    TABAGENT_WEB_DIR=/opt/web \
    QT_QPA_PLATFORM=offscreen \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 50050 8080
CMD ["python", "-m", "gateway"]
