#!/usr/bin/env bash
# Build the wafleet images without any image registry or network inside the build:
#   1. a wheelhouse on the host (build/wheelhouse/): the wafleet wheel and exactly the files of
#      the lock (requirements/orchestrator.txt, requirements/worker.txt), hashes checked;
#   2. `docker build` of Dockerfile (wafleet-orchestrator:latest) and worker/Dockerfile
#      (wafleet-worker:latest), which install ONLY from that wheelhouse.
#
#   scripts/build-images.sh            # after scripts/docker-engine.sh
#
# Environment (all optional):
#   PYTHON      a Python 3.11 with pip, setuptools and packaging, used for the wheelhouse
#               (default .venv/bin/python, made by scripts/setup.sh)
#   BASE_IMAGE  image both Dockerfiles start FROM (default wafleet-base:bookworm, made by
#               scripts/docker-engine.sh; operators with registry access may use python:3.11-slim)
#   ORCH_TAG    default wafleet-orchestrator:latest
#   WORKER_TAG  default wafleet-worker:latest
#   BUILD_NETWORK  network of the RUN steps of `docker build` (default host). The Dockerfiles
#               install with `pip --no-index` from the wheelhouse, so `none` works too when the
#               base image already has libmagic1 (wafleet-base:bookworm does); the Docker test
#               tier builds with `none` to prove no package index is needed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELHOUSE=$ROOT/build/wheelhouse
BASE_IMAGE=${BASE_IMAGE:-wafleet-base:bookworm}
ORCH_TAG=${ORCH_TAG:-wafleet-orchestrator:latest}
WORKER_TAG=${WORKER_TAG:-wafleet-worker:latest}
BUILD_NETWORK=${BUILD_NETWORK:-host}

log() { printf '[build-images] %s\n' "$*" >&2; }
die() {
    printf '\n[build-images] ERROR: %s\n\n' "$*" >&2
    exit 1
}

if [ -z "${PYTHON:-}" ]; then
    for c in "$ROOT/.venv/bin/python" python3.11 python3; do
        if command -v "$c" >/dev/null; then
            PYTHON=$(command -v "$c")
            break
        fi
    done
fi
[ -n "${PYTHON:-}" ] || die "no Python found; set PYTHON to a Python 3.11 with pip"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "3.11" ] ||
    die "$PYTHON is Python $pyver; the images run Debian bookworm's 3.11, so wheels must be cp311"

docker info >/dev/null 2>&1 || die "no Docker Engine answers; run scripts/docker-engine.sh first"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 ||
    log "warning: base image $BASE_IMAGE is not present locally; docker build will try to pull it"

# --- 1. wheelhouse -----------------------------------------------------------------------
# Exactly the lock's files: requirements/orchestrator.txt and requirements/worker.txt (made from
# uv.lock by scripts/lock.sh), reduced to what the image's Python takes, each file checked
# against its hash here and again by pip inside the build; and the wafleet wheel itself.
python3 "$ROOT/scripts/check-lock.py" "$ROOT" || die "the lock does not match pyproject.toml"
src=$(mktemp -d /tmp/wafleet-src.XXXXXX)
trap 'rm -rf "$src"' EXIT
cp "$ROOT/pyproject.toml" "$src/"
for pkg in core api bot worker simwa wafleet locales; do
    cp -r "$ROOT/$pkg" "$src/"
done
rm -f "$src/worker/Dockerfile"
for f in README.md README.rst LICENSE LICENSE.txt MANIFEST.in setup.cfg; do
    [ -e "$ROOT/$f" ] && cp "$ROOT/$f" "$src/"
done
find "$src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

rm -rf "$WHEELHOUSE"
mkdir -p "$WHEELHOUSE"
# The wheel is built with this venv's locked setuptools: no build isolation, nothing downloaded.
log "wheelhouse: the wafleet wheel, with $PYTHON (Python $pyver)"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELHOUSE" "$src" ||
    die "pip wheel of wafleet failed"
markers=$(docker run --rm --network host "$BASE_IMAGE" python3 -c '
import json, os, platform, sys
v = sys.implementation.version
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": f"{v.major}.{v.minor}.{v.micro}",
    "os_name": os.name, "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(), "platform_system": platform.system(),
    "platform_version": platform.version(), "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}))') || die "cannot run python3 in $BASE_IMAGE to read its environment markers"
for image in orchestrator worker; do
    "$PYTHON" "$ROOT/scripts/image-requirements.py" "$ROOT/requirements/$image.txt" "$markers" \
        >"$WHEELHOUSE/$image.txt" || die "cannot reduce requirements/$image.txt for $BASE_IMAGE"
    log "wheelhouse: the locked files of requirements/$image.txt, hashes checked"
    "$PYTHON" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
        --dest "$WHEELHOUSE" -r "$WHEELHOUSE/$image.txt" ||
        die "pip download of requirements/$image.txt failed"
done
# The image's Python must accept every wheel: pure (py3-none-any), a py3X tag up to 3.11
# (neonize ships py310-none-manylinux), cp311 or abi3.
bad=$(find "$WHEELHOUSE" -name '*.whl' -printf '%f\n' |
    grep -Ev -- '-(py2\.py3|py3|py3[0-9]|py31[01]|cp311|abi3)-' || true)
[ -z "$bad" ] || die "wheels the image's Python 3.11 cannot use: $bad"
log "wheelhouse: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"

# --- 2. images -----------------------------------------------------------------------------
build() {
    local tag=$1 dockerfile=$2
    local t0=$SECONDS old
    old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    local cmd=(docker build --network "$BUILD_NETWORK" --pull=false --force-rm
        --build-arg BASE_IMAGE="$BASE_IMAGE" -f "$ROOT/$dockerfile" -t "$tag" "$ROOT")
    log "${cmd[*]}"
    "${cmd[@]}" || die "docker build of $tag failed"
    log "$tag built in $((SECONDS - t0))s: $(docker image inspect --format '{{.Size}}' "$tag") bytes"
    # The image this build replaced is untagged now: drop it unless a container still uses it.
    if [ -n "$old" ] && [ "$old" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
}
build "$ORCH_TAG" Dockerfile
build "$WORKER_TAG" worker/Dockerfile
# The build stages' images stay behind untagged (the legacy builder keeps them as cache, of no
# use since the wheelhouse changes with every build): remove them.
docker image prune --force --filter label=org.wafleet.stage=build >/dev/null || true

docker run --rm --network host "$WORKER_TAG" wafleet --help >/dev/null 2>&1 ||
    docker run --rm --network host "$WORKER_TAG" python -c 'import wafleet' ||
    die "$WORKER_TAG: neither 'wafleet --help' nor 'import wafleet' works"
log "done: $ORCH_TAG, $WORKER_TAG"
