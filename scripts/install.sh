#!/usr/bin/env bash
# Create .venv and install Tab Agent with every extra, repeatably on a fresh machine.
#
# basic-pitch 0.4.0's metadata pins tensorflow<2.15.1 on Python 3.11 although the ONNX
# model it ships needs none of it, so it is installed with --no-deps after the
# dependencies it really uses (the `transcriber` extra). torch is pinned to 2.13.0,
# the CPU build this kind of machine keeps on disk.
#
# The page's browser libraries (alphaTab for the tab player, Swagger UI for /docs) come
# from the npm registry at the versions web/package-lock.json pins, into web/node_modules
# (not committed; the gateway serves them from there, so the page needs no CDN).
#
#   scripts/install.sh [--force] [--bench] [--notation]
#   --force     reinstall even when .venv is up to date
#   --bench     also the Debian packages only the accuracy benchmarks use (FluidSynth and two
#               General MIDI soundfonts, for bench/mixes.py's and bench/families.py's mixes
#               and the technique renders)
#   --notation  also the notation programs the slow test tests/test_notation_apps.py opens
#               every export in (MuseScore 3, TuxGuitar, and a JDK to run its reader)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${VENV:-.venv}
STAMP="$VENV/.tabagent-installed"
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
force=0
bench=0
notation=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --bench) bench=1 ;;
    --notation) notation=1 ;;
    *) echo "usage: scripts/install.sh [--force] [--bench] [--notation]" >&2; exit 2 ;;
  esac
done

# apt_install CMD PACKAGE [CMD PACKAGE ...]: install each PACKAGE whose CMD (a command,
# or a file path) is missing, when this is a Debian machine and we are root.
apt_install() {
  command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]] || return 0
  local need=()
  while (($#)); do
    if [[ "$1" == /* ]]; then [[ -e "$1" ]] || need+=("$2"); else command -v "$1" >/dev/null 2>&1 || need+=("$2"); fi
    shift 2
  done
  ((${#need[@]})) || return 0
  echo "installing Debian packages: ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
    || echo "warning: could not install ${need[*]}; what needs them will skip" >&2
}

if ((bench)); then
  apt_install fluidsynth fluidsynth /usr/share/sounds/sf2/FluidR3_GM.sf2 fluid-soundfont-gm \
    /usr/share/sounds/sf3/MuseScore_General_Lite.sf3 musescore-general-soundfont-small
fi
if ((notation)); then
  apt_install mscore3 musescore3 /usr/share/tuxguitar/lib/tuxguitar-lib.jar tuxguitar javac default-jdk-headless
fi

# web_install: the npm packages of web/package-lock.json into web/node_modules, again only
# when the lock file changed. --ignore-scripts: nothing from the registry runs here (one of
# swagger-ui-dist's dependencies has a telemetry postinstall).
web_install() {
  local stamp=web/node_modules/.tabagent-web-installed
  local lock
  lock=$(sha256sum web/package-lock.json | cut -c1-16)
  [[ -f "$stamp" && "$(cat "$stamp")" == "$lock" ]] && ((!force)) && return 0
  apt_install npm npm
  if ! command -v npm >/dev/null 2>&1; then
    echo "warning: npm not found; the page's tab player and /docs need web/node_modules" >&2
    return 0
  fi
  (cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || { echo "warning: npm ci failed; the page's tab player and /docs will be missing" >&2; return 0; }
  echo "$lock" > "$stamp"
}
web_install
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && ((!force)); then
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=24,<26" wheel
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install -e ".[all,dev]"
"${PIP[@]}" install --no-deps "basic-pitch==0.4.0"

# Debian tools the tests and examples use: ffmpeg/ffprobe to inspect outputs,
# chromium + chromedriver for the web page's browser test; MuseScore 3 engraves tab.pdf
# (without it the PDF step is skipped and says why) and poppler-utils reads it back in tests;
# the PostgreSQL server (initdb, pg_ctl under /usr/lib/postgresql/<version>/bin) whose
# throw-away clusters the shared-queue tests start (tests/pg_fixtures.py; they skip without it).
pg_initdb=$(compgen -G "/usr/lib/postgresql/*/bin/initdb" | head -n 1 || true)
apt_install ffprobe ffmpeg chromium chromium chromedriver chromium-driver \
  "${pg_initdb:-/usr/lib/postgresql/none/bin/initdb}" postgresql
apt_install mscore3 musescore3 pdftotext poppler-utils

echo "$want" > "$STAMP"
echo "installed into $VENV"
