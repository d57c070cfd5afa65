#!/usr/bin/env bash
# Install the front-end packages from the npm registry and build
# web/static/vendor. Skips both steps when the last build is newer than the
# lockfile and every source file, so starting the console stays quick.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stamp="$here/../static/vendor/.build-stamp"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build.sh: '$tool' was not found on PATH. The web console's scripts are" \
      "built with Node.js 18 or newer and npm; install them (Debian: apt-get" \
      "install nodejs npm) and run web/frontend/build.sh again." >&2
    exit 1
  fi
done

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "build.sh: Node.js $(node --version) is too old; the build needs Node.js 18" \
    "or newer. Install a newer Node.js and run web/frontend/build.sh again." >&2
  exit 1
fi

cd "$here"

sources=(package.json build.mjs build.sh src)
if [ -f package-lock.json ]; then
  sources+=(package-lock.json)
fi

if [ -f "$stamp" ] && [ -z "$(find "${sources[@]}" -newer "$stamp" -print -quit)" ]; then
  echo "build.sh: web/static/vendor is up to date; nothing to do."
  exit 0
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
npm run build
