#!/usr/bin/env bash
# Make a Docker Engine available on a bare Debian (bookworm) machine, and make sure the
# base image wafleet-base:bookworm exists. Idempotent: every step is skipped when done.
#
#   sudo scripts/docker-engine.sh            # install, start dockerd, build the base image
#   sudo scripts/docker-engine.sh redis      # ... and the Redis image of deploy/wafleet-stack.yml
#
# Environment (all optional):
#   DOCKERD_LOG      dockerd's log            (default /tmp/dockerd.log)
#   DOCKERD_PIDFILE  dockerd's pidfile        (default /var/run/docker.pid)
#   BASE_IMAGE       base image tag           (default wafleet-base:bookworm)
#   REDIS_IMAGE      Redis image tag          (default wafleet-redis:bookworm; `redis` only)
#   DEBIAN_MIRROR    mirror for debootstrap   (default: the one apt uses)
#   ENGINE_TIMEOUT   seconds to wait for dockerd (default 60)
#
# Exit codes: 0 ready; 1 unexpected failure; 2 not root / not Debian-like;
#             3 the engine could not start (see the message and DOCKERD_LOG);
#             4 an image could not be built.
#
# Networking: dockerd runs with --bridge=none --iptables=false, so containers use the host's
# network (`--network host`) and nothing here creates bridges, NAT rules or addresses.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}
BASE_IMAGE=${BASE_IMAGE:-wafleet-base:bookworm}
REDIS_IMAGE=${REDIS_IMAGE:-wafleet-redis:bookworm}
ENGINE_TIMEOUT=${ENGINE_TIMEOUT:-60}
SUITE=bookworm
INCLUDE_PKGS=python3,python3-venv,ca-certificates,libmagic1

log() { printf '[docker-engine] %s\n' "$*" >&2; }
die() {
    local code=$1
    shift
    printf '\n[docker-engine] ERROR: %s\n\n' "$*" >&2
    exit "$code"
}

[ "$(id -u)" -eq 0 ] || die 2 "must run as root (apt-get, dockerd, debootstrap)"
command -v apt-get >/dev/null || die 2 "apt-get not found: this script is for Debian"

# --- 1. packages -------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
# Compose v1 (Debian's): the Docker tier checks docker-compose.yml with `docker-compose config`.
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
else
    log "docker.io, debootstrap and docker-compose already installed"
fi

# --- 2. the engine -----------------------------------------------------------------------
engine_up() { timeout 10 docker info >/dev/null 2>&1; }

if engine_up; then
    log "Docker Engine already running"
else
    dpid=""
    if [ -f "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
        dpid=$(cat "$DOCKERD_PIDFILE")
        log "dockerd (pid $dpid) exists but does not answer yet; waiting"
    else
        rm -f "$DOCKERD_PIDFILE"
        log "starting dockerd (log: $DOCKERD_LOG)"
        # setsid + nohup: dockerd outlives this script and the shell that ran it.
        setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
            --pidfile "$DOCKERD_PIDFILE" >>"$DOCKERD_LOG" 2>&1 </dev/null &
        dpid=$!
    fi
    deadline=$((SECONDS + ENGINE_TIMEOUT))
    until engine_up; do
        if ! kill -0 "$dpid" 2>/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die 3 "dockerd exited while starting (dockerd log: $DOCKERD_LOG, last lines above)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die 3 "the Docker Engine did not answer 'docker info' within ${ENGINE_TIMEOUT}s" \
                "(dockerd log: $DOCKERD_LOG, last lines above)"
        fi
        sleep 1
    done
    log "Docker Engine is up: $(docker info --format '{{.ServerVersion}} storage={{.Driver}} cgroup={{.CgroupVersion}}')"
fi

# --- 3. the images ------------------------------------------------------------------------
WANT_REDIS=0
case "${1:-}" in
    "") ;;
    redis) WANT_REDIS=1 ;;
    *) die 1 "usage: $0 [redis]" ;;
esac
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
if have_image "$BASE_IMAGE"; then
    log "base image $BASE_IMAGE already exists"
    if [ "$WANT_REDIS" = 0 ]; then exit 0; fi
    if have_image "$REDIS_IMAGE"; then
        log "Redis image $REDIS_IMAGE already exists"
        exit 0
    fi
fi

# The Debian mirror apt uses for the main suite (deb822 .sources or one-line .list files).
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # Stanzas are separated by blank lines; take URIs of a stanza whose Suites has $SUITE.
        awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; ok = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^[ \t]*#/) continue
                    if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); uris = $i }
                    if ($i ~ /^Suites:/) {
                        n = split(substr($i, 8), s, /[ \t]+/)
                        for (j = 1; j <= n; j++) if (s[j] == suite) ok = 1
                    }
                }
                if (ok && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f"
    done
}

MIRROR=${DEBIAN_MIRROR:-$(find_mirror | head -n 1)}
[ -n "$MIRROR" ] || die 4 "no Debian mirror for '$SUITE' found in /etc/apt; set DEBIAN_MIRROR"
case "$MIRROR" in
    http://* | https://*) ;;
    *) die 4 "unsupported mirror URI '$MIRROR'; set DEBIAN_MIRROR to an http(s) mirror" ;;
esac

workdir=$(mktemp -d /var/tmp/wafleet-image.XXXXXX)
trap 'rm -rf "$workdir"' EXIT

# A root file system from debootstrap with the given packages, slimmed, in "$workdir/$1".
bootstrap() {
    local name=$1 include=$2 rootfs=$workdir/$1
    log "debootstrap --variant=minbase $SUITE --include=$include from $MIRROR (about a minute)"
    if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$rootfs" "$MIRROR" \
        >"$workdir/$name.log" 2>&1; then
        tail -n 30 "$workdir/$name.log" >&2 || true
        die 4 "debootstrap of $name failed (last lines above)"
    fi
    # Slim it down: package lists, caches and docs are not needed at run time.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
    # Point apt inside the image at the same mirror (for operators who extend it).
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$rootfs/etc/apt/sources.list"
}

# `docker import` of "$workdir/$1" as image $2; the rest are --change instructions.
import_rootfs() {
    local name=$1 tag=$2
    shift 2
    local changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
        --change 'ENV LANG=C.UTF-8')
    local c
    for c in "$@"; do changes+=(--change "$c"); done
    log "importing the root file system as $tag"
    tar -C "$workdir/$name" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" \
        >/dev/null || die 4 "docker import of $tag failed"
}

if ! have_image "$BASE_IMAGE"; then
    bootstrap base "$INCLUDE_PKGS"
    import_rootfs base "$BASE_IMAGE" 'CMD ["bash"]'
    docker run --rm --network host "$BASE_IMAGE" python3 -c 'import sys, venv; print(sys.version)' >&2 ||
        die 4 "the base image was built but python3 does not run in it"
    log "base image $BASE_IMAGE ready ($(docker image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
fi

# The Redis of deploy/wafleet-stack.yml, made the same way: no registry is needed. It runs as
# the package's `redis` user; /data (the AOF's volume) belongs to it, so a fresh named volume
# mounted there is writable (Docker copies the mount point's owner into an empty volume).
if [ "$WANT_REDIS" = 1 ] && ! have_image "$REDIS_IMAGE"; then
    bootstrap redis redis-server
    rootfs=$workdir/redis
    rm -rf "$rootfs"/usr/share/locale/*
    mkdir -p "$rootfs/data"
    chown "$(chroot "$rootfs" id -u redis):$(chroot "$rootfs" id -g redis)" "$rootfs/data"
    import_rootfs redis "$REDIS_IMAGE" 'USER redis' 'WORKDIR /data' 'VOLUME /data' \
        'CMD ["redis-server", "--appendonly", "yes", "--dir", "/data", "--bind", "127.0.0.1"]'
    docker run --rm --network none "$REDIS_IMAGE" redis-server --version >&2 ||
        die 4 "the Redis image was built but redis-server does not run in it"
    log "Redis image $REDIS_IMAGE ready ($(docker image inspect --format '{{.Size}}' "$REDIS_IMAGE") bytes)"
fi
