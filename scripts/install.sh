#!/usr/bin/env bash
# Create .venv and install Tab Agent with every extra, repeatably on a fresh machine.
#
# basic-pitch 0.4.0's metadata pins tensorflow<2.15.1 on Python 3.11 although the ONNX
# model it ships needs none of it, so it is installed with --no-deps after the
# dependencies it really uses (the `transcriber` extra). torch is pinned to 2.13.0,
# the CPU build this kind of machine keeps on disk.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${VENV:-.venv}
STAMP="$VENV/.tabagent-installed"
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && "${1:-}" != "--force" ]]; then
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=24,<26" wheel
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install -e ".[all,dev]"
"${PIP[@]}" install --no-deps "basic-pitch==0.4.0"

# Debian tools the tests and examples use: ffmpeg/ffprobe to inspect outputs,
# chromium + chromedriver for the web page's browser test.
if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  need=()
  command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  if ((${#need[@]})); then
    echo "installing Debian packages: ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
      || echo "warning: could not install ${need[*]}; tests that need them will skip" >&2
  fi
fi

echo "$want" > "$STAMP"
echo "installed into $VENV"
