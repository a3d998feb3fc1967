#!/bin/sh
# The whole test suite, from any shell: in the virtual environment .venv
# (made with python3 when it is missing), after tests/setup.sh has installed
# what the tests need into it. PYTHON picks another interpreter and VENV
# another environment (CI: PYTHON=python3.13 VENV=.venv-3.13); arguments go
# to pytest.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
fi
PATH="$PWD/$VENV/bin:$PATH" sh tests/setup.sh
exec "$VENV/bin/python" -m pytest "$@"
