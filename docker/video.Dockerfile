# syntax=docker/dockerfile:1
# Video renderer: the tab play-along renderer plus the diffusion backend (sd-turbo) on
# torch's CUDA build, on NVIDIA's CUDA runtime image.
#
#   docker build -f docker/video.Dockerfile -t ghcr.io/tabagent/video:0.1.0 .
#
# No weights inside: the diffusers folder comes from the model volume
# (DIFFUSION_MODEL_DIR=/models/sd-turbo, HF_HUB_OFFLINE=1).
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
RUN pip install --upgrade "pip>=24,<26" wheel \
    && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tabagent ./tabagent
COPY video_svc ./video_svc
RUN pip install ".[video,diffusion]"

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# Fonts for the tab renderer's text.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 libgomp1 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tabagent \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tabagent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 50053 9103
CMD ["python", "-m", "video_svc"]
