# syntax=docker/dockerfile:1
# Separator: Demucs on torch's CUDA build, on NVIDIA's CUDA runtime image.
#
#   docker build -f docker/separator.Dockerfile -t ghcr.io/tabagent/separator:0.1.0 .
#
# No weights inside by default: they come from the model volume (DEMUCS_MODEL_DIR=
# /models/demucs), from k8s/components/pull-models' init container, or are downloaded on
# first use where the network allows; without them the service runs its DSP fallback and
# says so. To bake weights in (fetched with the image's own `tabagent models pull`,
# checksummed, into the image's torch cache, /opt/torch):
#
#   docker build -f docker/separator.Dockerfile --build-arg DEMUCS_MODELS="htdemucs_6s htdemucs" ...
#
# The same image runs on CPU nodes (SEPARATOR_DEVICE=cpu).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

FROM ${CUDA_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the CUDA index: the extra's torch==2.13.0 is then already satisfied.
RUN pip install --upgrade "pip>=24,<26" wheel \
    && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tabagent ./tabagent
COPY separator_svc ./separator_svc
RUN pip install ".[separator]"
ARG DEMUCS_MODELS=""
RUN mkdir -p /opt/torch \
    && if [ -n "${DEMUCS_MODELS}" ]; then \
         TORCH_HOME=/opt/torch TABAGENT_OFFLINE=0 tabagent models pull --quiet ${DEMUCS_MODELS}; \
       fi

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tabagent \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tabagent
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/torch /opt/torch
ENV PATH=/opt/venv/bin:$PATH \
    TORCH_HOME=/opt/torch \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 50051 9101
CMD ["python", "-m", "separator_svc"]
