#!/bin/sh
# What the test suite needs beyond Python's standard library: this package
# with its test and duck extras, Node.js with the npm packages of the interoperability
# suite (ws, playwright-core), Debian's Chromium, redis-server for the
# broadcast tests, redis-sentinel for the Sentinel ones and PostgreSQL for the
# Django ones (started by the tests themselves). Missing Debian packages
# are installed with apt-get, which needs root.
set -eu
cd "$(dirname "$0")/.."

python3 -m pip install -q -e '.[test,duck]'

missing=""
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v redis-sentinel >/dev/null 2>&1 || missing="$missing redis-sentinel"
# PostgreSQL for the Django tests (Debian keeps its programs off the PATH).
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: please install these Debian packages, then run it again:$missing" >&2
    exit 1
  fi
  apt-get update -q
  # The emoji font only makes the chat page's screenshot look as it does on a desktop.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing fonts-noto-color-emoji
fi

cd tests/interop/js && npm ci --no-audit --no-fund --loglevel=error
