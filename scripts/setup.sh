#!/usr/bin/env bash
# Installs what wafleet needs on a fresh Debian machine: the servers it runs beside
# (redis-server, microsocks) and a virtualenv in .venv with wafleet and its tools, exactly the
# versions of the lock (requirements/dev.txt, made from uv.lock by scripts/lock.sh), every file
# checked against its hash. Quiet and idempotent: with nothing changed it installs nothing and
# prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v microsocks >/dev/null || missing+=(microsocks)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# The chat's /stats picture and digest draw their labels with DejaVu Sans (it has Hebrew).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_ apt-get update -qq
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { echo "setup: wafleet needs Python 3.11 or newer" >&2; exit 1; }
# A lock that does not match pyproject.toml (or its exports uv.lock) is refused before anything
# is installed from it; pip refuses any file whose hash is not the lock's.
python3 scripts/check-lock.py || { echo "setup: refusing an unverified lock" >&2; exit 1; }

# What the venv was made from: the lock and the packaging. Unchanged → nothing to do.
stamp=.venv/.wafleet-setup
want=$(cat requirements/dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    .venv/bin/python -c 'import wafleet' 2>/dev/null; then
    exit 0
fi
echo "setup: installing the locked dependencies into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --require-hashes: every requirement pinned, every download checked; a dependency missing from
# the file is an error, not a silent fetch of whatever is newest.
if ! .venv/bin/python -m pip install --quiet --require-hashes --only-binary=:all: \
    -r requirements/dev.txt >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: installing requirements/dev.txt failed" >&2
    exit 1
fi
# wafleet itself, editable, built with the locked setuptools (no build isolation: nothing else
# is downloaded) and without dependencies (the lock installed them all).
if ! .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation --editable . \
    >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: installing wafleet into .venv failed" >&2
    exit 1
fi
echo "$want" >"$stamp"
