#!/usr/bin/env bash
# A real Docker Swarm on one machine: two nodes for the swarm tier (RUNNER=swarm), or three
# managers for the high-availability stack (deploy/wafleet-ha-stack.yml).
#
#   sudo scripts/swarm-engine.sh up      # manager = the engine of docker-engine.sh, + a worker
#   sudo scripts/swarm-engine.sh up3     # three managers: that engine + two more (quorum 2 of 3)
#   sudo scripts/swarm-engine.sh down    # leave the swarm, stop the other engines, clean up
#
# The engine started by scripts/docker-engine.sh is the first manager (`docker swarm init
# --advertise-addr 127.0.0.1`, listening on 127.0.0.1:2377 only). More dockerd, each with its
# own --data-root, --exec-root, --pidfile and unix socket, and like the first
# `--bridge=none --iptables=false`, join it: engine 2 listening on 127.0.0.2:2377, engine 3 on
# 127.0.0.3:2377. With `up` engine 2 is a worker and engine 3 does not run; with `up3` both
# are managers, so the swarm keeps its quorum (2 of 3) and answers while any one engine is
# stopped. Each mode brings the swarm to its own shape: `up` after `up3` demotes engine 2 and
# takes engine 3 out. `ingress` and `docker_gwbridge`, which `swarm init` and every join create
# (a 172.x bridge, a UDP listener), are removed at once; services use `--network host` and
# never publish ports, so nothing leaves loopback. The dispatcher heartbeat is 1 s, so a
# stopped node is seen down within seconds. Images named in SWARM_IMAGES are copied to the
# other engines (`docker save | docker load`). Running `up`/`up3` again restarts an engine that
# was stopped (it rejoins with its saved swarm state).
#
# Environment (all optional; N is 2 or 3):
#   SWARMN_ROOT     folder of engine N (default /var/lib/wafleet-swarmN)
#   SWARMN_SOCK     its socket          (default /run/wafleet-swarmN.sock)
#   SWARMN_LOG      its log             (default /tmp/dockerd-swarmN.log)
#   SWARM_MANAGERS  3: `up` means `up3`
#   SWARM_IMAGES    images to copy to the other engines (default wafleet-worker:latest; empty: none)
#   ENGINE_TIMEOUT  seconds to wait for an engine (default 60)
#
# Exit codes: 0 ready (up) / cleaned (down); 1 unexpected failure; 2 not root / no docker;
#             3 an engine or the swarm could not start (the message says why).
set -euo pipefail

SWARM2_ROOT=${SWARM2_ROOT:-/var/lib/wafleet-swarm2}
SWARM2_SOCK=${SWARM2_SOCK:-/run/wafleet-swarm2.sock}
SWARM2_LOG=${SWARM2_LOG:-/tmp/dockerd-swarm2.log}
SWARM3_ROOT=${SWARM3_ROOT:-/var/lib/wafleet-swarm3}
SWARM3_SOCK=${SWARM3_SOCK:-/run/wafleet-swarm3.sock}
SWARM3_LOG=${SWARM3_LOG:-/tmp/dockerd-swarm3.log}
SWARM_IMAGES=${SWARM_IMAGES-wafleet-worker:latest}
ENGINE_TIMEOUT=${ENGINE_TIMEOUT:-60}

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

# Engine N's folders and socket: root, data root, exec root, pidfile, socket, log.
root_of() { local v="SWARM$1_ROOT"; printf '%s' "${!v}"; }
sock_of() { local v="SWARM$1_SOCK"; printf '%s' "${!v}"; }
log_of() { local v="SWARM$1_LOG"; printf '%s' "${!v}"; }
exec_of() { printf '%s/exec' "$(root_of "$1")"; }
pidfile_of() { printf '%s/dockerd.pid' "$(root_of "$1")"; }
dn() {
    local n=$1
    shift
    docker -H "unix://$(sock_of "$n")" "$@"
}

engine_pid() {
    local pidfile
    pidfile=$(pidfile_of "$1")
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"
}

# Engine N's node id in the swarm, as the engine itself knows it (empty when not in one).
node_id() { dn "$1" info --format '{{.Swarm.NodeID}}' 2>/dev/null || true; }

stop_engine() {
    local n=$1 pid root
    root=$(root_of "$n")
    if pid=$(engine_pid "$n"); then
        log "stopping engine $n (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Containers left under their shims by a SIGKILLed engine (the split-brain test).
    pkill_shims "$n"
    # After `swarm leave` the engine's netns/default stays mounted: unmount before removing.
    { grep -o " $root[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$root" "$(sock_of "$n")"
}

# Engine N out of the swarm and gone: demoted first (a manager leaving would count against the
# quorum), then it leaves, its node entry is removed, and the engine stops. A stopped engine
# that is still a member is started again first, so it can leave properly.
remove_engine() {
    local n=$1 id
    if [ -d "$(root_of "$n")/data/swarm" ] && ! engine_pid "$n" >/dev/null; then
        start_engine "$n"
    fi
    id=$(node_id "$n")
    if [ -n "$id" ]; then
        docker node demote "$id" >/dev/null 2>&1 || true
        dn "$n" swarm leave --force >/dev/null 2>&1 || true
        docker node rm --force "$id" >/dev/null 2>&1 || true
    fi
    stop_engine "$n"
}

down() {
    local n
    for n in 3 2; do
        if engine_pid "$n" >/dev/null; then
            remove_engine "$n"
        else
            stop_engine "$n"
        fi
    done
    if docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -q active; then
        log "the main engine leaves the swarm"
        docker swarm leave --force >/dev/null 2>&1 || true
    fi
}

pkill_shims() {
    # Only the shims of engine N: their command line names its exec root. A container's init
    # goes first: its PID namespace dies with it, workers included (a shim killed alone leaves
    # them running, reparented to init).
    local exec_root pid child
    exec_root=$(exec_of "$1")
    for pid in $(pgrep -f "containerd-shim.*$exec_root" || true); do
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
    for pid in $(pgrep -f "containerd --config $exec_root" || true); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

start_engine() {
    local n=$1 root sock elog
    root=$(root_of "$n") sock=$(sock_of "$n") elog=$(log_of "$n")
    if dn "$n" info >/dev/null 2>&1; then
        log "engine $n already running"
        return
    fi
    local deadline=$((SECONDS + ENGINE_TIMEOUT))
    if engine_pid "$n" >/dev/null; then
        # Running but slow to answer (a busy machine, a swarm re-electing): a second dockerd
        # would only die on the first one's pidfile. Wait for this one instead.
        log "engine $n is running but not answering yet; waiting for it"
        until dn "$n" info >/dev/null 2>&1; do
            [ $SECONDS -lt $deadline ] || die 3 "engine $n (dockerd) did not answer in ${ENGINE_TIMEOUT}s"
            sleep 0.5
        done
        return
    fi
    mkdir -p "$root/data" "$(exec_of "$n")"
    log "starting engine $n (socket $sock, log $elog)"
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
        --data-root "$root/data" --exec-root "$(exec_of "$n")" --pidfile "$(pidfile_of "$n")" \
        -H "unix://$sock" >>"$elog" 2>&1 </dev/null &
    local dpid=$!
    until dn "$n" info >/dev/null 2>&1; do
        if ! kill -0 "$dpid" 2>/dev/null; then
            tail -n 20 "$elog" >&2 || true
            die 3 "engine $n (dockerd) exited while starting (log: $elog)"
        fi
        [ $SECONDS -lt $deadline ] || die 3 "engine $n (dockerd) did not answer in ${ENGINE_TIMEOUT}s"
        sleep 0.5
    done
}

# Engine N in the swarm as ROLE (worker | manager), listening on 127.0.0.N:2377.
join_engine() {
    local n=$1 role=$2 state id
    start_engine "$n"
    state=$(dn "$n" info --format '{{.Swarm.LocalNodeState}}')
    if [ "$state" != active ]; then
        log "engine $n joins as a $role (127.0.0.$n:2377)"
        dn "$n" swarm join --token "$(docker swarm join-token -q "$role")" \
            --listen-addr "127.0.0.$n:2377" --advertise-addr "127.0.0.$n" 127.0.0.1:2377 \
            >/dev/null || die 3 "engine $n could not join the swarm"
    fi
    id=$(node_id "$n")
    local deadline=$((SECONDS + ENGINE_TIMEOUT))
    until [ "$(docker node inspect --format '{{.Status.State}}' "$id" 2>/dev/null)" = ready ]; do
        [ $SECONDS -lt $deadline ] || die 3 "the node of engine $n is not ready"
        sleep 0.5
    done
    local is
    is=$(docker node inspect --format '{{.Spec.Role}}' "$id")
    if [ "$is" != "$role" ]; then
        log "engine $n: $is -> $role"
        if [ "$role" = manager ]; then
            docker node promote "$id" >/dev/null || die 3 "engine $n could not be promoted"
        else
            docker node demote "$id" >/dev/null || die 3 "engine $n could not be demoted"
        fi
    fi
    if [ "$role" = manager ]; then
        deadline=$((SECONDS + ENGINE_TIMEOUT))
        until [ "$(docker node inspect --format '{{.ManagerStatus.Reachability}}' "$id" \
            2>/dev/null)" = reachable ]; do
            [ $SECONDS -lt $deadline ] || die 3 "the manager of engine $n is not reachable"
            sleep 0.5
        done
    fi
    # The join makes docker_gwbridge (a 172.x bridge): remove it.
    dn "$n" network rm docker_gwbridge >/dev/null 2>&1 || true
    local image want have
    for image in $SWARM_IMAGES; do
        want=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null) ||
            die 3 "image $image is missing on the main engine (scripts/build-images.sh)"
        have=$(dn "$n" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
        if [ "$want" != "$have" ]; then
            log "copying $image to engine $n"
            docker save "$image" | dn "$n" load >/dev/null
        fi
    done
}

init_main() {
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
}

up() {
    init_main
    start_engine 2 # first: while engine 3 is demoted, engine 2 may be a manager the quorum needs
    remove_engine 3
    join_engine 2 worker
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
    log "two-node swarm ready: $(docker node ls --format '{{.ID}}:{{.Status}}' | tr '\n' ' ')"
}

up3() {
    init_main
    join_engine 2 manager
    join_engine 3 manager
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
    log "three managers ready: $(docker node ls \
        --format '{{.ID}}:{{.Status}}:{{.ManagerStatus}}' | tr '\n' ' ')"
}

mode=${1:-up}
if [ "$mode" = up ] && [ "${SWARM_MANAGERS:-2}" = 3 ]; then mode=up3; fi
case "$mode" in
    up) up ;;
    up3) up3 ;;
    down) down ;;
    *) die 1 "usage: $0 up|up3|down" ;;
esac
