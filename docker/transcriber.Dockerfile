# syntax=docker/dockerfile:1
# Transcriber: Basic Pitch's ONNX model on onnxruntime. The default image runs it on the
# CPU (a small CNN, far faster than real time on a few cores: docs/operations.md); the GPU
# image swaps in onnxruntime-gpu, whose [cuda,cudnn] extras bring CUDA 12 and cuDNN 9 as
# pip packages, so it needs no CUDA base image: the node's NVIDIA driver is all it takes.
#
#   docker build -f docker/transcriber.Dockerfile -t ghcr.io/tabagent/transcriber:0.1.0 .
#   docker build -f docker/transcriber.Dockerfile --build-arg ONNXRUNTIME="onnxruntime-gpu[cuda,cudnn]>=1.21" \
#       -t ghcr.io/tabagent/transcriber:0.1.0-gpu .        # what k8s/overlays/gpu runs
#
# basic-pitch goes in with --no-deps, as scripts/install.sh does: its metadata pins
# tensorflow, which the ONNX model does not need; the `transcriber` extra lists what it
# really uses. Its weights ship inside the package.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG BASIC_PITCH_VERSION=0.4.0
# onnxruntime (CPU) or "onnxruntime-gpu[cuda,cudnn]>=1.21": both install the same module, so
# the GPU build replaces the CPU one the extra pulled in.
ARG ONNXRUNTIME=onnxruntime
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade "pip>=24,<26" wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tabagent ./tabagent
COPY transcriber_svc ./transcriber_svc
RUN pip install ".[transcriber]" \
    && pip install --no-deps "basic-pitch==${BASIC_PITCH_VERSION}" \
    && if [ "${ONNXRUNTIME}" != "onnxruntime" ]; then \
         pip uninstall -y onnxruntime && pip install "${ONNXRUNTIME}"; \
       fi

FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tabagent \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tabagent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 50052 9102
CMD ["python", "-m", "transcriber_svc"]
