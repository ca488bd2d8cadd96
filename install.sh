#!/usr/bin/env bash
# Install what is missing, and only that: a virtual environment (.venv, or $AUDIO_THINKER_VENV), torch 2.13.0,
# the pinned requirements and this package (editable). A stamp in the environment holds the sha256 of
# requirements.txt and pyproject.toml: while they are unchanged, a second run installs nothing.
# Used by ./run.sh and ./test.sh; on a GPU machine install the CUDA build of torch 2.13.0 into the
# environment first (pip then keeps it). ./install.sh --browser (what ./test.sh runs) also installs Debian's
# chromium when it is missing, for the browser tests (as root or through sudo; else those tests skip).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${AUDIO_THINKER_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "install.sh: creating $VENV" >&2
  "${PYTHON:-python3}" -m venv "$VENV"
fi
STAMP="$VENV/.audio-thinker-installed"
WANT="torch==2.13.0 $(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "install.sh: installing torch 2.13.0, requirements.txt and audio_thinker into $VENV" >&2
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  "$VENV/bin/python" -m pip install -q torch==2.13.0
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q -e .
  echo "$WANT" > "$STAMP"
fi

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "install.sh: installing Debian's chromium for the browser tests" >&2
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; } \
      || echo "install.sh: chromium could not be installed: the browser tests will be skipped" >&2
  fi
fi
