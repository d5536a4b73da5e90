#!/usr/bin/env bash
# Refreshes the lock: uv.lock (every dependency, transitive ones included, with the hashes of
# every file) from pyproject.toml's ranges, then the three hash-checked requirement files made
# from it, which are what every install path reads (pip needs nothing else):
#   requirements/dev.txt           the dev venv (scripts/setup.sh): every extra, tools included
#   requirements/orchestrator.txt  the orchestrator image (extra `docker`)
#   requirements/worker.txt        the worker image (extra `neonize`)
#
#   scripts/lock.sh                             # after editing pyproject.toml; keeps every pin
#   scripts/lock.sh --upgrade-package aiogram   # one dependency to its newest allowed release
#   scripts/lock.sh --upgrade                   # everything to its newest allowed release
#
# Arguments go to `uv lock`. Commit pyproject.toml, uv.lock and requirements/ together.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.venv/bin/uv
[ -x "$uv" ] || { echo "lock: run scripts/setup.sh first (it installs uv into .venv)" >&2; exit 1; }
"$uv" lock --python 3.11 "$@"
export_() {
    local out=$1
    shift
    "$uv" export --frozen --quiet --no-emit-project --format requirements-txt \
        "$@" -o "requirements/$out"
}
mkdir -p requirements
export_ dev.txt --all-extras
export_ orchestrator.txt --extra docker
export_ worker.txt --extra neonize
.venv/bin/python scripts/check-lock.py
