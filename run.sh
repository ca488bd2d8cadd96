#!/usr/bin/env bash
# Install what is missing (./install.sh), then start the studio: ./run.sh [app.py flags, e.g. --port 7861]
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
exec "${AUDIO_THINKER_VENV:-.venv}/bin/python" app.py "$@"
