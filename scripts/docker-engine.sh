#!/usr/bin/env bash
# Make a Docker Engine available on a bare Debian (bookworm) machine, and make sure the
# base image wafleet-base:bookworm exists. Idempotent: every step is skipped when done.
#
#   sudo scripts/docker-engine.sh            # install, start dockerd, build the base image
#
# Environment (all optional):
#   DOCKERD_LOG      dockerd's log            (default /tmp/dockerd.log)
#   DOCKERD_PIDFILE  dockerd's pidfile        (default /var/run/docker.pid)
#   BASE_IMAGE       base image tag           (default wafleet-base:bookworm)
#   DEBIAN_MIRROR    mirror for debootstrap   (default: the one apt uses)
#   ENGINE_TIMEOUT   seconds to wait for dockerd (default 60)
#
# Exit codes: 0 ready; 1 unexpected failure; 2 not root / not Debian-like;
#             3 the engine could not start (see the message and DOCKERD_LOG);
#             4 the base image could not be built.
#
# Networking: dockerd runs with --bridge=none --iptables=false, so containers use the host's
# network (`--network host`) and nothing here creates bridges, NAT rules or addresses.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}
BASE_IMAGE=${BASE_IMAGE:-wafleet-base:bookworm}
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
if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
else
    log "docker.io and debootstrap already installed"
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

# --- 3. the base image -------------------------------------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE already exists"
    exit 0
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

workdir=$(mktemp -d /var/tmp/wafleet-base.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
rootfs=$workdir/rootfs
log "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
if ! debootstrap --variant=minbase --include="$INCLUDE_PKGS" "$SUITE" "$rootfs" "$MIRROR" \
    >"$workdir/debootstrap.log" 2>&1; then
    tail -n 30 "$workdir/debootstrap.log" >&2 || true
    die 4 "debootstrap failed (last lines above)"
fi

# Slim it down: package lists, caches and docs are not needed at run time.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
# Point apt inside the image at the same mirror (for operators who extend it).
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$rootfs/etc/apt/sources.list"

log "importing the root file system as $BASE_IMAGE"
tar -C "$rootfs" --numeric-owner -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        - "$BASE_IMAGE" >/dev/null ||
    die 4 "docker import failed"

docker run --rm --network host "$BASE_IMAGE" python3 -c 'import sys, venv; print(sys.version)' >&2 ||
    die 4 "the base image was built but python3 does not run in it"
log "base image $BASE_IMAGE ready ($(docker image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
