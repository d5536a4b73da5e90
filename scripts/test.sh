#!/usr/bin/env bash
# The whole test suite: lint, format, types, then the tests against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

ruff check .
ruff format --check .
mypy
pytest -q -p no:cacheprovider "$@"
