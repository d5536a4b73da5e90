#!/usr/bin/env bash
# A real two-node Docker Swarm on one machine, for the swarm tier (RUNNER=swarm).
#
#   sudo scripts/swarm-engine.sh up      # manager = the engine of docker-engine.sh, + a worker
#   sudo scripts/swarm-engine.sh down    # leave the swarm, stop the second engine, clean up
#
# The engine started by scripts/docker-engine.sh becomes the manager
# (`docker swarm init --advertise-addr 127.0.0.1`, listening on 127.0.0.1:2377 only). A second
# dockerd, with its own --data-root, --exec-root, --pidfile and unix socket, and like the first
# `--bridge=none --iptables=false`, joins as a worker listening on 127.0.0.2:2377. `ingress` and
# `docker_gwbridge`, which `swarm init` creates (a 172.x bridge, a UDP listener), are removed at
# once; services use `--network host` and never publish ports, so nothing leaves loopback.
# The dispatcher heartbeat is 1 s, so a stopped node is seen down within seconds.
# Images named in SWARM_IMAGES are copied to the second engine (`docker save | docker load`).
#
# Environment (all optional):
#   SWARM2_ROOT     folder of the second engine (default /var/lib/wafleet-swarm2)
#   SWARM2_SOCK     its socket                   (default /run/wafleet-swarm2.sock)
#   SWARM2_LOG      its log                      (default /tmp/dockerd-swarm2.log)
#   SWARM_IMAGES    images to copy to it         (default wafleet-worker:latest; empty: none)
#   ENGINE_TIMEOUT  seconds to wait for an engine (default 60)
#
# Exit codes: 0 ready (up) / cleaned (down); 1 unexpected failure; 2 not root / no docker;
#             3 the second engine or the swarm could not start (the message says why).
set -euo pipefail

SWARM2_ROOT=${SWARM2_ROOT:-/var/lib/wafleet-swarm2}
SWARM2_SOCK=${SWARM2_SOCK:-/run/wafleet-swarm2.sock}
SWARM2_LOG=${SWARM2_LOG:-/tmp/dockerd-swarm2.log}
SWARM_IMAGES=${SWARM_IMAGES-wafleet-worker:latest}
ENGINE_TIMEOUT=${ENGINE_TIMEOUT:-60}
DATA_ROOT=$SWARM2_ROOT/data
EXEC_ROOT=$SWARM2_ROOT/exec
PIDFILE=$SWARM2_ROOT/dockerd.pid
D2=(docker -H "unix://$SWARM2_SOCK")

log() { printf '[swarm-engine] %s\n' "$*" >&2; }
die() {
    local code=$1
    shift
    printf '\n[swarm-engine] ERROR: %s\n\n' "$*" >&2
    exit "$code"
}

[ "$(id -u)" -eq 0 ] || die 2 "must run as root (dockerd, mounts)"
command -v dockerd >/dev/null || die 2 "dockerd not found: run scripts/docker-engine.sh first"
timeout 10 docker info >/dev/null 2>&1 || die 3 "the main Docker Engine does not answer"

second_pid() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

down() {
    if "${D2[@]}" info >/dev/null 2>&1; then
        "${D2[@]}" swarm leave --force >/dev/null 2>&1 || true
    fi
    local pid
    if pid=$(second_pid); then
        log "stopping the second engine (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Containers left under their shims by a SIGKILLed engine (the split-brain test).
    pkill_shims
    # After `swarm leave` the engine's netns/default stays mounted: unmount before removing.
    grep -o " $SWARM2_ROOT[^ ]*" /proc/self/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$SWARM2_ROOT" "$SWARM2_SOCK"
    if docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -q active; then
        log "the main engine leaves the swarm"
        docker swarm leave --force >/dev/null 2>&1 || true
    fi
}

pkill_shims() {
    # Only the shims of the second engine: their command line names its exec root. A
    # container's init goes first: its PID namespace dies with it, workers included (a shim
    # killed alone leaves them running, reparented to init).
    local pid child
    for pid in $(pgrep -f "containerd-shim.*$EXEC_ROOT" || true); do
        for child in $(pgrep -P "$pid" || true); do
            kill -KILL "$child" 2>/dev/null || true
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # Container inits already orphaned (an earlier run, a shim that died): parent 1, and a
    # container id the main engine does not know. The main engine's own have a shim parent.
    local cid
    for pid in $(pgrep -x docker-init || true); do
        [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = 1 ] || continue
        cid=$(grep -o -m1 'docker/[0-9a-f]\{64\}' "/proc/$pid/cgroup" 2>/dev/null | cut -d/ -f2)
        if [ -n "$cid" ] && docker inspect "$cid" >/dev/null 2>&1; then
            continue
        fi
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in $(pgrep -f "containerd --config $EXEC_ROOT" || true); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

start_second() {
    if "${D2[@]}" info >/dev/null 2>&1; then
        log "second engine already running"
        return
    fi
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
    log "starting the second engine (socket $SWARM2_SOCK, log $SWARM2_LOG)"
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
        --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE" \
        -H "unix://$SWARM2_SOCK" >>"$SWARM2_LOG" 2>&1 </dev/null &
    local dpid=$! deadline=$((SECONDS + ENGINE_TIMEOUT))
    until "${D2[@]}" info >/dev/null 2>&1; do
        if ! kill -0 "$dpid" 2>/dev/null; then
            tail -n 20 "$SWARM2_LOG" >&2 || true
            die 3 "the second dockerd exited while starting (log: $SWARM2_LOG)"
        fi
        [ $SECONDS -lt $deadline ] || die 3 "the second dockerd did not answer in ${ENGINE_TIMEOUT}s"
        sleep 0.5
    done
}

up() {
    local state
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    if [ "$state" != active ]; then
        log "docker swarm init on the main engine (127.0.0.1:2377)"
        docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 \
            --dispatcher-heartbeat 1s >/dev/null || die 3 "docker swarm init failed"
    fi
    # swarm init made a 172.x bridge and an overlay with a UDP listener: neither is wanted.
    docker network rm ingress >/dev/null 2>&1 <<<y || true
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
    docker swarm update --dispatcher-heartbeat 1s >/dev/null
    start_second
    state=$("${D2[@]}" info --format '{{.Swarm.LocalNodeState}}')
    if [ "$state" != active ]; then
        local token
        token=$(docker swarm join-token -q worker)
        log "the second engine joins as a worker (127.0.0.2:2377)"
        "${D2[@]}" swarm join --token "$token" --listen-addr 127.0.0.2:2377 \
            --advertise-addr 127.0.0.2 127.0.0.1:2377 >/dev/null ||
            die 3 "the second engine could not join the swarm"
    fi
    local image
    for image in $SWARM_IMAGES; do
        local want have
        want=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null) ||
            die 3 "image $image is missing on the main engine (scripts/build-images.sh)"
        have=$("${D2[@]}" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
        if [ "$want" != "$have" ]; then
            log "copying $image to the second engine"
            docker save "$image" | "${D2[@]}" load >/dev/null
        fi
    done
    local deadline=$((SECONDS + ENGINE_TIMEOUT))
    until [ "$(docker node ls --filter role=worker --format '{{.Status}}' | grep -c Ready)" -ge 1 ]; do
        [ $SECONDS -lt $deadline ] || die 3 "the worker node is not Ready"
        sleep 0.5
    done
    # The join makes docker_gwbridge again (a 172.x bridge): remove it on both engines.
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
    "${D2[@]}" network rm docker_gwbridge >/dev/null 2>&1 || true
    log "two-node swarm ready: $(docker node ls --format '{{.ID}}:{{.Status}}' | tr '\n' ' ')"
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    *) die 1 "usage: $0 up|down" ;;
esac
