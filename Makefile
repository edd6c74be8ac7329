# The five developer commands (install, lint, check, test, proto) plus `run`.
# Each installs into .venv first when needed, so a fresh clone needs nothing else.
VENV ?= .venv
PY := $(VENV)/bin/python
PROTOS := $(wildcard protos/tabagent/v1/*.proto)

.PHONY: install lint check test test-all proto proto-check run up bench accuracy soak clean

install:
	@scripts/install.sh

lint: install
	$(PY) -m ruff check .

check: lint
	$(PY) -m mypy tabagent separator_svc transcriber_svc video_svc gateway launcher evalkit

test: install
	$(PY) -m pytest -m "not slow and not gpu" -q

# The slow tests too; --notation installs MuseScore 3, TuxGuitar and a JDK for
# tests/test_notation_apps.py (it skips, saying why, where they cannot be installed).
test-all: install
	@scripts/install.sh --notation
	$(PY) -m pytest -q

proto: install
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

# The main job on the embedded default: makes an example clip, runs the whole chain on
# loopback gRPC, writes out/ (result.json, tab.txt, tab.gp5, tab.musicxml, notes.mid, video.mp4).
run: install
	$(PY) -m evalkit.examples make examples/example.wav
	$(VENV)/bin/tabagent run examples/example.wav --out out

up: install
	$(VENV)/bin/tabagent up

bench: install
	$(PY) bench/run_all.py

# The chain's and the transcriber's onset F1 on mixes and isolated stems (docs/ACCURACY.md);
# --bench adds FluidSynth and two GM soundfonts for the soundfont-rendered mixes. About
# 25 min on 2 cores from scratch (renders are cached in ~/.cache/tabagent/families).
accuracy: install
	@scripts/install.sh --bench
	$(PY) bench/family_accuracy.py --write
	$(PY) bench/chain_accuracy.py --write
	$(PY) bench/stem_accuracy.py --write

# Bad inputs, killed replicas and a burst of songs against `tabagent up` (bounded: at most
# 15 minutes); prints the figures docs/RELIABILITY.md records.
soak: install
	$(PY) scripts/soak.py --seconds 900 --songs 8

clean:
	rm -rf out build *.egg-info .pytest_cache .mypy_cache .ruff_cache
