#!/usr/bin/env bash
# The whole test suite: lint, format, types, the tests against real servers (the main tier),
# then the Docker tier (RUNNER=docker on a real Docker Engine).
#
#   WAFLEET_DOCKER_TIER=0 scripts/test.sh    # everything but the Docker tier (says so loudly)
#   WAFLEET_SWARM_TIER=0 scripts/test.sh     # everything but the swarm tier (RUNNER=swarm)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

ruff check .
ruff format --check .
mypy
# The main tier; pyproject.toml's addopts leave the `docker` marker out of it.
pytest -q -p no:cacheprovider "$@"

# --- the Docker tier -------------------------------------------------------------------------
# scripts/docker-engine.sh installs docker.io + debootstrap, starts dockerd and makes the base
# image (exit 3: the engine cannot start on this machine; 2: not root / not Debian). The tier's
# session fixture then rebuilds both images from this tree (scripts/build-images.sh, with no
# network inside the build) and runs the tests against them.
skipped() {
    local bar
    bar=$(printf '!%.0s' {1..78})
    printf '\n%s\nDOCKER TIER SKIPPED: %s\n%s\n\n' "$bar" "$*" "$bar" >&2
}
if [ "${WAFLEET_DOCKER_TIER:-1}" = 0 ]; then
    skipped "WAFLEET_DOCKER_TIER=0"
    exit 0
fi
engine_log=$(mktemp)
trap 'rm -f "$engine_log"' EXIT
rc=0
scripts/docker-engine.sh 2>"$engine_log" || rc=$?
cat "$engine_log" >&2
if [ "$rc" -eq 3 ] || [ "$rc" -eq 2 ]; then
    reason=$(grep -m1 'ERROR:' "$engine_log" | sed 's/.*ERROR: //' || true)
    skipped "${reason:-scripts/docker-engine.sh exited $rc}"
    exit 0
fi
[ "$rc" -eq 0 ] || {
    echo "scripts/docker-engine.sh failed (exit $rc)" >&2
    exit "$rc"
}
# The wheelhouse is made with this venv's Python (3.11, with pip and packaging).
PYTHON="$PWD/.venv/bin/python" pytest -q -p no:cacheprovider -rs -m docker tests/docker

# --- the swarm tier --------------------------------------------------------------------------
# RUNNER=swarm on a real two-node swarm: scripts/swarm-engine.sh makes the engine above a manager
# and starts a second dockerd that joins as a worker (127.0.0.2); the tier's session fixture
# builds the worker image from this tree under its own tag, and takes it all down at the end.
# Exit 2/3 of the script (the second engine or the swarm cannot start here) skips it loudly.
swarm_skipped() {
    local bar
    bar=$(printf '!%.0s' {1..78})
    printf '\n%s\nSWARM TIER SKIPPED: %s\n%s\n\n' "$bar" "$*" "$bar" >&2
}
if [ "${WAFLEET_SWARM_TIER:-1}" = 0 ]; then
    swarm_skipped "WAFLEET_SWARM_TIER=0"
    exit 0
fi
swarm_log=$(mktemp)
trap 'rm -f "$engine_log" "$swarm_log"' EXIT
rc=0
SWARM_IMAGES= scripts/swarm-engine.sh up 2>"$swarm_log" || rc=$?
if [ "$rc" -eq 3 ] || [ "$rc" -eq 2 ]; then
    cat "$swarm_log" >&2
    reason=$(grep -m1 'ERROR:' "$swarm_log" | sed 's/.*ERROR: //' || true)
    scripts/swarm-engine.sh down 2>/dev/null || true
    swarm_skipped "${reason:-scripts/swarm-engine.sh exited $rc}"
    exit 0
fi
[ "$rc" -eq 0 ] || {
    cat "$swarm_log" >&2
    echo "scripts/swarm-engine.sh failed (exit $rc)" >&2
    exit "$rc"
}
rc=0
PYTHON="$PWD/.venv/bin/python" pytest -q -p no:cacheprovider -rs -m swarm tests/swarm || rc=$?
# The tier's fixture takes the swarm down; this also covers a run that never reached it.
scripts/swarm-engine.sh down 2>/dev/null || true
exit "$rc"
