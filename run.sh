#!/usr/bin/env bash
# Set up and run the product on SQLite with demo data: one command on a laptop.
#   ./run.sh            install, upgrade the database, deploy bpmn/, load demo data,
#                       then serve the console on http://127.0.0.1:5000 with a worker
# Environment: see README.md (DATABASE_URL, PORT, SMTP_*, ...).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

web/frontend/build.sh

export PATH="$PWD/.venv/bin:$PATH"
provisioning db upgrade
provisioning deploy --user setup bpmn/
provisioning demo

provisioning worker &
WORKER=$!
trap 'kill "$WORKER" 2>/dev/null || true' EXIT INT TERM

echo "Console: http://127.0.0.1:${PORT:-5000}  (demo users are listed in README.md)"
provisioning serve --host 127.0.0.1 --port "${PORT:-5000}"
