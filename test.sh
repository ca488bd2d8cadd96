#!/usr/bin/env bash
# Install what is missing (./install.sh --browser: the venv, and Debian's chromium), then run the tests: ./test.sh [pytest flags, e.g. -m "not slow"]
set -euo pipefail
cd "$(dirname "$0")"
./install.sh --browser
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 TOKENIZERS_PARALLELISM=false
exec "${AUDIO_THINKER_VENV:-.venv}/bin/python" -m pytest -q "$@"
