#!/usr/bin/env bash
# Install what is missing (./install.sh), then run the tests: ./test.sh [pytest flags, e.g. -m "not slow"]
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
exec "${AUDIO_THINKER_VENV:-.venv}/bin/python" -m pytest -q "$@"
