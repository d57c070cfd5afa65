#!/usr/bin/env bash
# Set up everything the tests need and run them on SQLite and PostgreSQL.
#   ./test.sh [pytest arguments]
# Needs: Python 3.11+, Node.js 18+ with npm, a PostgreSQL server on
# 127.0.0.1:5432 with trust auth and a database "test" (TEST_POSTGRES_URL to
# change it), and Debian's chromium for the browser tests (installed here
# with apt-get when running as root).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

# PostgreSQL: start the local cluster if it is installed but not running.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    fi
fi

web/frontend/build.sh

.venv/bin/ruff check engine web tests bench scripts
.venv/bin/ruff format --check --quiet engine web tests bench scripts
.venv/bin/python -m pytest -p no:cacheprovider "$@"
