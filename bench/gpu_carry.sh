#!/usr/bin/env bash
# Pack what bench/bench_gpu_chain.py (and bench_gpu_separator.py) need on a lent GPU machine
# that has a CUDA torch and numpy but no network: pure-Python packages copied from .venv,
# and the few binary ones as wheels for the machine's Python. Writes .devcarry/gpu-chain
# (git-ignored, about 12 MB) and prints the command to run there.
#
#   bench/gpu_carry.sh [PYTHON_VERSION]      # default 3.12 (what the lent machines had)
#
# Basic Pitch's decoding imports librosa, numba, scipy and mir_eval (about 90 MB of wheels,
# more than a device run carries), so it is not packed: without them the benchmark
# separates only and says so in its JSON. Where they are installed (the pip line at the
# top of bench_gpu_chain.py), the chain includes Basic Pitch, on the GPU with onnxruntime-gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
SP=$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')
C=.devcarry/gpu-chain
rm -rf "$C"
mkdir -p "$C/site/opentelemetry" "$C/whl"
for pkg in demucs julius einops importlib_metadata zipp grpc_health grpc_reflection tqdm prometheus_client; do
  cp -r "$SP/$pkg" "$C/site/"
done
for dist in demucs julius einops importlib_metadata zipp grpcio_health_checking grpcio_reflection tqdm \
            prometheus_client opentelemetry_api; do
  cp -r "$SP"/${dist}-*.dist-info "$C/site/"
done
cp -r "$SP"/opentelemetry/{_logs,attributes,baggage,context,environment_variables,metrics,propagate,propagators,trace,util,version} \
  "$C/site/opentelemetry/"
find "$C/site" -name __pycache__ -prune -exec rm -rf {} +
ver() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d "$C/whl" \
  "soxr==$(ver soxr)" "protobuf==$(ver protobuf)" "grpcio==$(ver grpcio)" "psutil==$(ver psutil)" \
  "PyYAML==$(ver PyYAML)"
du -sh "$C"
cat <<EOF
Run there (device run with carry [".devcarry/gpu-chain"], timeout 600):
  python3 -m pip install -q --no-index --no-deps --target /tmp/site $C/whl/*.whl && \\
  PYTHONPATH=/tmp/site:\$PWD/$C/site:\$PWD python3 bench/bench_gpu_chain.py --out \$OUT/gpu_chain.json
EOF
