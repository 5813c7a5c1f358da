#!/usr/bin/env bash
# Real servers for the integration tests: installed from Debian's packages if missing, started on
# 127.0.0.1 on free high ports with their data in a temporary directory, stopped again.
#
#   scripts/services.sh start [postgres] [redis] [nats] [slurm] [docker] [podman] [dask] [moto]
#                                                          start them (all when none is named);
#                                                          one already running is left as it is
#   scripts/services.sh stop  [NAME...]                   stop them (every running one when none named)
#   scripts/services.sh env                               `export` lines of the running ones' URLs
#   scripts/services.sh restart [--hard] NAME...          stop and start again on the same port and
#                                                          data (--hard: killed, as in a crash)
#   scripts/services.sh run NAME... -- COMMAND [ARG...]   start, run COMMAND with the URLs and
#                                                          SKYWEAVE_REQUIRE_SERVICES=1 in its
#                                                          environment, stop what this call started
#                                                          (also when COMMAND fails or is interrupted)
#
# The URLs are written to $SKYWEAVE_SERVICES_DIR/env (default: .services/env in the repository),
# one KEY=value a line, which the tests read (tests/services.py):
#   SKYWEAVE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:PORT/postgres
#   SKYWEAVE_TEST_REDIS_URL=redis://127.0.0.1:PORT/0
#   SKYWEAVE_TEST_NATS_URL=nats://127.0.0.1:PORT
#   SKYWEAVE_TEST_SLURM_URL=slurm://?conf=DIR/slurm.conf   (the executor setting for that cluster)
#   SKYWEAVE_TEST_DOCKER_HOST=unix:///tmp/skyweave-docker.XXXXXX/docker.sock  (dockerd, as root, with
#     its images and containers in that directory; Podman gets /etc/containers/containers.conf)
#   SKYWEAVE_TEST_PODMAN_BIN=/tmp/skyweave-podman.XXXXXX/podman  (no daemon: a podman client, as root,
#     with its images and containers in that directory; the executor's binary=)
#   SKYWEAVE_TEST_DASK_URL=tcp://127.0.0.1:PORT   (a dask scheduler and two one-thread workers)
#   SKYWEAVE_TEST_S3_URL=http://127.0.0.1:PORT   (moto's S3 server, from the dev extra in .venv)
# Quiet unless something fails (then the failing step's output is shown).  Needs root (or sudo)
# only to install a missing package; `apt-get update` runs only when a package has no candidate.
# Servers are throw-away: no fsync, nothing kept beyond the temporary directory; Redis keeps an
# append-only file there (fsync every second), so a restart (as in a fault test) keeps its streams.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${SKYWEAVE_SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="$STATE/env"
ALL=(postgres redis nats slurm docker podman dask moto)

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# -- installing ------------------------------------------------------------------------------------

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else die "installing needs root: run as root, or install the packages yourself ($*)"; fi
}

quietly() {  # run "$@", showing its output only if it fails
    local log; log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
    rm -f "$log"
}

apt_install() {  # apt_install PACKAGE...: update the package lists only if one has no candidate
    local pkg need_update=0
    for pkg in "$@"; do
        # (no pipe into grep -q: with pipefail, apt-cache's SIGPIPE would read as "no candidate")
        case "$(apt-cache policy "$pkg" 2>/dev/null)" in *"Candidate: ("*|"") need_update=1 ;;
                                                          *"Candidate: "*) ;; *) need_update=1 ;; esac
    done
    if [ "$need_update" = 1 ]; then
        say "apt-get update (no candidate for $*)"
        quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            || die "apt-get update failed"
    fi
    say "installing $* (Debian packages)"
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        || die "could not install $*"
}

pg_bin() {  # the newest installed PostgreSQL server's bin directory, or nothing
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$found" ] && dirname "$found"
    return 0
}

ensure_installed() {
    case "$1" in
        postgres) [ -n "$(pg_bin)" ] || apt_install postgresql
                  [ -n "$(pg_bin)" ] || die "PostgreSQL installed but no /usr/lib/postgresql/*/bin/pg_ctl" ;;
        redis)    command -v redis-server >/dev/null || apt_install redis-server ;;
        nats)     command -v nats-server >/dev/null || apt_install nats-server ;;
        slurm)    { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } \
                      >/dev/null || apt_install slurmctld slurmd slurm-client munge ;;
        docker)   [ "$(id -u)" = 0 ] || die "dockerd runs as root here: run as root"
                  [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || apt_install docker.io
                  command -v debootstrap >/dev/null || apt_install debootstrap ;;
        podman)   [ "$(id -u)" = 0 ] || die "podman runs as root here: run as root"
                  [ -x /usr/bin/podman ] || apt_install podman
                  command -v debootstrap >/dev/null || apt_install debootstrap ;;
        dask)     dask_bin >/dev/null || die "no dask command: install the dask extra (pip install -e '.[dask]'; make does)" ;;
        moto)     [ -x "$(moto_bin)" ] || die "moto_server not found: \`make\` installs it in .venv (dev extra: moto[server])" ;;
        *)        die "unknown service '$1' (known: ${ALL[*]})" ;;
    esac
}

# -- state: the env file and one directory per running service ----------------------------------

var_of() { case "$1" in postgres) echo SKYWEAVE_TEST_POSTGRES_URL ;; redis) echo SKYWEAVE_TEST_REDIS_URL ;;
                        nats) echo SKYWEAVE_TEST_NATS_URL ;; slurm) echo SKYWEAVE_TEST_SLURM_URL ;;
                        docker) echo SKYWEAVE_TEST_DOCKER_HOST ;; podman) echo SKYWEAVE_TEST_PODMAN_BIN ;;
                        dask) echo SKYWEAVE_TEST_DASK_URL ;;
                        moto) echo SKYWEAVE_TEST_S3_URL ;; *) die "unknown service '$1' (known: ${ALL[*]})" ;; esac; }

dir_of() { [ -f "$STATE/$1.dir" ] && cat "$STATE/$1.dir"; return 0; }

pid_of() {  # the pid of a running service's server, or nothing
    local dir pid=""; dir="$(dir_of "$1")"
    [ -n "$dir" ] || return 0
    if [ "$1" = podman ]; then  # no daemon: "running" while its client works on its storage
        [ -x "$dir/podman" ] && echo "$dir/podman"
        return 0
    fi
    case "$1" in
        postgres) [ -f "$dir/data/postmaster.pid" ] && pid="$(head -n 1 "$dir/data/postmaster.pid")" ;;
        redis)    [ -f "$dir/redis.pid" ] && pid="$(cat "$dir/redis.pid")" ;;
        nats)     [ -f "$dir/nats.pid" ] && pid="$(cat "$dir/nats.pid")" ;;
        slurm)    [ -f "$dir/slurmctld.pid" ] && pid="$(cat "$dir/slurmctld.pid")" ;;
        docker)   [ -f "$dir/dockerd.pid" ] && pid="$(cat "$dir/dockerd.pid")" ;;
        dask)     [ -f "$dir/scheduler.pid" ] && pid="$(cat "$dir/scheduler.pid")" ;;
        moto)     [ -f "$dir/moto.pid" ] && pid="$(cat "$dir/moto.pid")" ;;
    esac
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
    return 0
}

set_url() {  # set_url NAME URL (URL empty: remove the line)
    local var; var="$(var_of "$1")"
    mkdir -p "$STATE"
    { [ -f "$ENV_FILE" ] && grep -v "^$var=" "$ENV_FILE" || true; } > "$ENV_FILE.new"
    [ -z "$2" ] || echo "$var=$2" >> "$ENV_FILE.new"
    mv "$ENV_FILE.new" "$ENV_FILE"
    [ -s "$ENV_FILE" ] || rm -f "$ENV_FILE"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for WHAT COMMAND...: up to 10 s for COMMAND to succeed
    local i
    for i in $(seq 200); do "${@:2}" >/dev/null 2>&1 && return 0; sleep 0.05; done
    say "$1 did not become ready within 10 s"; return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# -- starting and stopping each server --------------------------------------------------------------

as_postgres() {  # run a PostgreSQL command as the postgres user when root (initdb refuses root)
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else "$@"; fi
}

start_postgres() {  # fsync off (throw-away data), but commits written before they return: a
    # `restart --hard` (the server killed, the machine up) then loses nothing committed, as with a real
    # server (synchronous_commit=off would lose the last ones, which a fault test would count as lost)
    local dir="$1" port="$2"
    [ "$(id -u)" != 0 ] || chown postgres "$dir"
    [ -d "$dir/data" ] || quietly as_postgres "$(pg_bin)/initdb" -D "$dir/data" -A trust -U postgres --no-sync \
        -E UTF8 --locale=C.UTF-8 || return 1
    quietly as_postgres "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 20 start \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=200" \
        || { cat "$dir/log" >&2 2>/dev/null; return 1; }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {  # stop_postgres DIR [MODE]: fast (clean) or immediate (as a crash: recovery on start)
    quietly as_postgres "$(pg_bin)/pg_ctl" -D "$1/data" -m "${2:-fast}" -w -t 20 stop
}

start_redis() {  # with an append-only file (fsync every second), so a restart keeps the streams
    local dir="$1" port="$2"
    quietly redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly yes \
        --appendfsync everysec --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/log" || return 1
    wait_for redis port_open "$port" || { cat "$dir/log" >&2; return 1; }
    wait_for "redis pid file" test -s "$dir/redis.pid" || return 1
    echo "redis://127.0.0.1:$port/0"
}

start_nats() {
    local dir="$1" port="$2"
    nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir/js" -P "$dir/nats.pid" -l "$dir/log" </dev/null >/dev/null 2>&1 &
    wait_for nats port_open "$port" || { cat "$dir/log" >&2; return 1; }
    wait_for "nats pid file" test -s "$dir/nats.pid" || return 1
    echo "nats://127.0.0.1:$port"
}

# Slurm 22.05 as a one-node cluster (node sw1 at 127.0.0.1, partition debug) for the Slurm executor:
# munged (shared by the host: started, and stopped after, only if it was not running), then
# slurmctld and slurmd with their state, spool, logs and pid files in DIR.  No accounting (sacct
# does not work), no cgroups (proctrack/linuxproc, task/none).  The node claims 64 CPUs whatever
# the host has, so that many short jobs (mostly waiting, in the tests) can run at once.
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_slurm() {
    local dir="$1" port="$2" mem
    if ! munge_ok; then
        mkdir -p /run/munge
        if [ "$(id -u)" = 0 ]; then
            chown munge:munge /run/munge && chmod 755 /run/munge
            quietly su munge -s /bin/sh -c /usr/sbin/munged || return 1
        else quietly /usr/sbin/munged || return 1; fi
        touch "$dir/munged.ours"
        wait_for munged munge_ok || return 1
    fi
    mem="$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)"
    mkdir -p "$dir/state" "$dir/spool"
    cat > "$dir/slurm.conf" <<CONF
ClusterName=skyweave
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MaxArraySize=10001
MaxJobCount=50000
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=sw1 NodeAddr=127.0.0.1 NodeHostname=$(hostname) CPUs=64 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=sw1 Default=YES MaxTime=INFINITE State=UP
CONF
    quietly slurmctld -f "$dir/slurm.conf" || { cat "$dir/slurmctld.log" >&2 2>/dev/null; return 1; }
    quietly slurmd -f "$dir/slurm.conf" -N sw1 || { cat "$dir/slurmd.log" >&2 2>/dev/null; return 1; }
    wait_for "slurm node sw1 idle" bash -c "SLURM_CONF='$dir/slurm.conf' sinfo -h -n sw1 -o %t | grep -qx idle" \
        || { cat "$dir/slurmctld.log" "$dir/slurmd.log" >&2 2>/dev/null; return 1; }
    echo "slurm://?conf=$dir/slurm.conf"
}

stop_slurm() {  # cancel every job, stop slurmd and slurmctld, and munged if start_slurm started it
    local dir="$1" pid name
    SLURM_CONF="$dir/slurm.conf" scancel --partition=debug >/dev/null 2>&1 || true
    for name in slurmd slurmctld; do
        pid="$(cat "$dir/$name.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
            wait_for "$name to stop" bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
        fi
    done
    if [ -f "$dir/munged.ours" ]; then
        pid="$(cat /run/munge/munged.pid 2>/dev/null || true)"
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
        rm -f "$dir/munged.ours"
    fi
    return 0
}

start_docker() {  # dockerd on a socket in DIR (no TCP port: PORT is unused), images and containers in DIR
    local dir="$1"
    podman_config
    /usr/sbin/dockerd --host "unix://$dir/docker.sock" --data-root "$dir/root" --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" --iptables=false --ip-masq=false </dev/null >"$dir/log" 2>&1 &
    wait_for dockerd /usr/bin/docker -H "unix://$dir/docker.sock" version || { cat "$dir/log" >&2; return 1; }
    echo "unix://$dir/docker.sock"
}

podman_config() {  # what Podman needs on these machines (crun fails on their cgroups), if not set already
    [ -f /etc/containers/containers.conf ] && return 0
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' \
        > /etc/containers/containers.conf
}

# Podman has no daemon: "starting" it writes DIR/podman, the podman client with its storage (overlay),
# run state and temporary files in DIR and the settings these machines need: cgroupfs (no systemd),
# events in a file (no journald), runc (podman_config: crun fails on their cgroups).  Images are
# imported into it by scripts/images.sh --engine podman.
start_podman() {
    local dir="$1"
    podman_config
    mkdir -p "$dir/tmp"
    cat > "$dir/podman" <<WRAPPER
#!/bin/sh
exec /usr/bin/podman --root "$dir/root" --runroot "$dir/run" --tmpdir "$dir/tmp" --storage-driver overlay \
    --cgroup-manager cgroupfs --events-backend file "\$@"
WRAPPER
    chmod 755 "$dir/podman"
    quietly "$dir/podman" info || { rm -f "$dir/podman"; return 1; }
    echo "$dir/podman"
}

stop_podman() {  # remove what the tests left (at once: no grace period), then the storage's mounts
    local dir="$1"
    "$dir/podman" rm -af -t 0 >/dev/null 2>&1 || true
    grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -f "$dir/podman"
}

stop_docker() {  # remove what the tests left running, then stop the daemon (its data goes with DIR)
    local dir="$1" left
    left="$(/usr/bin/docker -H "unix://$dir/docker.sock" ps -aq 2>/dev/null || true)"
    [ -z "$left" ] || /usr/bin/docker -H "unix://$dir/docker.sock" rm -f $left >/dev/null 2>&1 || true
    stop_by_pid docker
    # the daemon's mounts under DIR (overlay layers, netns) must go before DIR can be removed
    grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

dask_bin() {  # the dask command of the repository's virtual environment, else the one on PATH
    if [ -x "$ROOT/.venv/bin/dask" ]; then echo "$ROOT/.venv/bin/dask"; else command -v dask; fi
}

start_dask() {  # a scheduler and two one-thread worker processes (nanny'd), each with resource CPU=1
    local dir="$1" port="$2" bin; bin="$(dask_bin)"
    (cd "$dir" && exec "$bin" scheduler --host 127.0.0.1 --port "$port" --no-dashboard \
        --pid-file "$dir/scheduler.pid" </dev/null >"$dir/scheduler.log" 2>&1) &
    wait_for "dask scheduler" port_open "$port" || { cat "$dir/scheduler.log" >&2; return 1; }
    (cd "$dir" && exec "$bin" worker "tcp://127.0.0.1:$port" --host 127.0.0.1 --nworkers 2 --nthreads 1 \
        --resources "CPU=1" --no-dashboard --local-directory "$dir/workers" --pid-file "$dir/worker.pid" \
        </dev/null >"$dir/worker.log" 2>&1) &
    wait_for "dask workers" bash -c "[ \"\$(grep -c 'Starting established connection' '$dir/worker.log')\" -ge 2 ]" || { cat "$dir/worker.log" >&2; return 1; }
    echo "tcp://127.0.0.1:$port"
}

stop_dask() {  # the workers first (so they do not wait for a scheduler that is gone), then the scheduler
    local dir="$1" pid
    if [ -f "$dir/worker.pid" ]; then
        pid="$(cat "$dir/worker.pid")"
        kill "$pid" 2>/dev/null && wait_for "dask workers to stop" bash -c "! kill -0 $pid 2>/dev/null"
    fi
    stop_by_pid dask
}

moto_bin() { echo "${SKYWEAVE_MOTO_SERVER:-$ROOT/.venv/bin/moto_server}"; }

start_moto() {  # moto's S3 server: buckets in memory, gone when it stops
    local dir="$1" port="$2"
    "$(moto_bin)" -H 127.0.0.1 -p "$port" </dev/null >"$dir/log" 2>&1 &
    echo $! > "$dir/moto.pid"
    wait_for moto port_open "$port" || { cat "$dir/log" >&2; return 1; }
    echo "http://127.0.0.1:$port"
}

stop_by_pid() {  # stop_by_pid NAME [SIGNAL]: SIGTERM (or SIGNAL), then wait up to 10 s for the process to go
    local pid; pid="$(pid_of "$1")"
    [ -n "$pid" ] || return 0
    kill -s "${2:-TERM}" "$pid" 2>/dev/null || return 0
    wait_for "$1 to stop" bash -c "! kill -0 $pid 2>/dev/null"
}

restart_one() {  # restart_one NAME HARD: stop (HARD=1: as a crash) and start on the same port and data
    local name="$1" hard="$2" dir port
    dir="$(dir_of "$name")"
    case "$name" in slurm|podman) die "restart is not supported for $name (stop and start it)" ;; esac
    [ -n "$(pid_of "$name")" ] || die "$name is not running (start it first)"
    port="$(sed -n "s#^$(var_of "$name")=.*:\([0-9][0-9]*\)\(/.*\)\{0,1\}\$#\1#p" "$ENV_FILE")"
    [ -n "$port" ] || die "no port recorded for $name in $ENV_FILE"
    case "$name" in
        postgres) if [ "$hard" = 1 ]; then stop_postgres "$dir" immediate; else stop_postgres "$dir"; fi ;;
        *) if [ "$hard" = 1 ]; then stop_by_pid "$name" KILL; else stop_by_pid "$name"; fi ;;
    esac || die "$name did not stop"
    rm -f "$dir/redis.pid" "$dir/nats.pid" "$dir/dockerd.pid" "$dir/moto.pid"
    "start_$name" "$dir" "$port" >/dev/null || die "$name did not start again on port $port"
}

start_one() {
    local name="$1" dir port url attempt
    if [ -n "$(pid_of "$name")" ] && grep -q "^$(var_of "$name")=" "$ENV_FILE" 2>/dev/null; then
        return 0  # already running: leave it
    fi
    stop_one "$name"  # a stale one (died, or half-started): clean up first
    ensure_installed "$name"
    mkdir -p "$STATE"
    for attempt in 1 2 3; do  # a free port can be taken between choosing and binding it
        dir="$(mktemp -d "${TMPDIR:-/tmp}/skyweave-$name.XXXXXX")"
        chmod 755 "$dir"
        echo "$dir" > "$STATE/$name.dir"
        port="$(free_port)"
        if url="$("start_$name" "$dir" "$port")"; then
            set_url "$name" "$url"
            STARTED+=("$name")
            return 0
        fi
        say "$name did not start on port $port (attempt $attempt)"
        stop_one "$name"
    done
    die "could not start $name; its log was shown above"
}

stop_one() {
    local name="$1" dir; dir="$(dir_of "$name")"
    if [ -n "$dir" ]; then
        if [ -n "$(pid_of "$name")" ]; then
            case "$name" in
                postgres) stop_postgres "$dir" || say "postgres did not stop cleanly" ;;
                slurm)    stop_slurm "$dir" || say "slurm did not stop cleanly" ;;
                docker) stop_docker "$dir" || say "dockerd did not stop cleanly" ;;
                podman) stop_podman "$dir" || say "podman's storage was not removed cleanly" ;;
                dask) stop_dask "$dir" || say "dask did not stop" ;;
                *) stop_by_pid "$name" || say "$name did not stop" ;;
            esac
        fi
        case "$dir" in "${TMPDIR:-/tmp}"/skyweave-"$name".*) rm -rf "$dir" ;; esac
    fi
    rm -f "$STATE/$name.dir"
    set_url "$name" ""
}

running() { local n; for n in "${ALL[@]}"; do [ -z "$(dir_of "$n")" ] || echo "$n"; done; }

print_env() { [ -f "$ENV_FILE" ] && sed 's/^/export /' "$ENV_FILE"; return 0; }

# -- commands -----------------------------------------------------------------------------------------

STARTED=()
cmd="${1:-}"; shift || true
case "$cmd" in
    start)
        names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
        for n in "${names[@]}"; do var_of "$n" >/dev/null; done
        for n in "${names[@]}"; do start_one "$n"; done
        print_env ;;
    stop)
        if [ $# -gt 0 ]; then names=("$@"); else mapfile -t names < <(running); fi
        for n in "${names[@]}"; do var_of "$n" >/dev/null; stop_one "$n"; done ;;
    env)
        print_env ;;
    restart)
        hard=0; names=()
        for a in "$@"; do if [ "$a" = --hard ]; then hard=1; else names+=("$a"); fi; done
        [ ${#names[@]} -gt 0 ] || die "usage: $0 restart [--hard] NAME..."
        for n in "${names[@]}"; do var_of "$n" >/dev/null; restart_one "$n" "$hard"; done ;;
    run)
        names=()
        while [ $# -gt 0 ] && [ "$1" != "--" ]; do names+=("$1"); shift; done
        [ $# -gt 1 ] || die "usage: $0 run NAME... -- COMMAND [ARG...]"
        shift
        for n in "${names[@]}"; do var_of "$n" >/dev/null; done
        # stop what this call started however it ends (failure, Ctrl-C, kill)
        trap 'for n in "${STARTED[@]}"; do stop_one "$n"; done' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        for n in "${names[@]}"; do start_one "$n"; done
        set +e
        (set -a; [ ! -f "$ENV_FILE" ] || . "$ENV_FILE"; export SKYWEAVE_REQUIRE_SERVICES=1; exec "$@")
        status=$?
        set -e
        exit "$status" ;;
    *)
        sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2 ;;
esac
