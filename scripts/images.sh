#!/usr/bin/env bash
# Build the container images the tests run, locally, with no container registry:
#
#   scripts/images.sh [--engine podman] [IMAGE...]
#                                    build these (all when none is named), each with what it builds FROM:
#     skyweave-base:py3.11    Debian bookworm with Python 3.11: `debootstrap --variant=minbase` into a
#                             root file system, tarred once into the cache, then `docker import`
#     skyweave:local          docker/skyweave.Dockerfile (skyweave in /opt/skyweave)
#     skyweave-xray-ep, skyweave-radio-nenufar, skyweave-nenufar-bursts   pipelines/*/Dockerfile
#
# The daemon is $DOCKER_HOST, else the one `scripts/services.sh start docker` started; with --engine
# podman, the podman client $SKYWEAVE_PODMAN, else the one `scripts/services.sh start podman` wrote:
# an image the docker daemon (as above) has already is copied (`docker save | podman load`: the same
# image id, ~10 s), others are made the same way (`podman import` of the same root file system,
# `podman build` of the same files).  Python packages
# come from a wheelhouse in the cache filled by `pip download` on this host (its own index settings;
# bookworm's Python is the host's 3.11), served to the builds on 127.0.0.1 (builds use the host
# network) and installed with --no-index: no build reaches the network itself.
# Cache: $SKYWEAVE_IMAGE_CACHE (default .services/cache): the root file system tar and the wheels, kept
# across daemon restarts; the daemon's own layer cache makes a rebuild with unchanged sources instant.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${SKYWEAVE_SERVICES_DIR:-$ROOT/.services}"
CACHE="${SKYWEAVE_IMAGE_CACHE:-$STATE/cache}"
DOCKER_BIN="${SKYWEAVE_DOCKER_BIN:-/usr/bin/docker}"
ENGINE=docker
if [ "${1:-}" = --engine ]; then ENGINE="${2:-}"; shift 2 || true; fi
PIPELINES=(xray_ep radio_nenufar nenufar_bursts)

say() { printf 'images: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case "$ENGINE" in
    docker)
        if [ -z "${DOCKER_HOST:-}" ]; then
            DOCKER_HOST="$(sed -n 's/^SKYWEAVE_TEST_DOCKER_HOST=//p' "$STATE/env" 2>/dev/null || true)"
            [ -n "$DOCKER_HOST" ] || die "no daemon: start one with scripts/services.sh start docker (or set DOCKER_HOST)"
        fi
        export DOCKER_HOST ;;
    podman)
        if [ -z "${SKYWEAVE_PODMAN:-}" ]; then
            SKYWEAVE_PODMAN="$(sed -n 's/^SKYWEAVE_TEST_PODMAN_BIN=//p' "$STATE/env" 2>/dev/null || true)"
            [ -n "$SKYWEAVE_PODMAN" ] || die "no podman: start it with scripts/services.sh start podman (or set SKYWEAVE_PODMAN)"
        fi
        FROM_DOCKER="${DOCKER_HOST:-$(sed -n 's/^SKYWEAVE_TEST_DOCKER_HOST=//p' "$STATE/env" 2>/dev/null || true)}"
        DOCKER_BIN="$SKYWEAVE_PODMAN" ;;
    *) die "unknown engine '$ENGINE' (docker or podman)" ;;
esac
dk() { "$DOCKER_BIN" "$@"; }
have() { dk image inspect "$1" >/dev/null 2>&1; }
tag_of() { local p="$1"; echo "skyweave-${p//_/-}"; }

base() {
    have skyweave-base:py3.11 && return 0
    local tar="$CACHE/bookworm-python3.tar"
    if [ ! -s "$tar" ]; then
        command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
        local fs; fs="$(mktemp -d "${TMPDIR:-/tmp}/skyweave-rootfs.XXXXXX")"
        say "debootstrap bookworm (minbase + python3) into $fs"
        local t0=$SECONDS
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
            bookworm "$fs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$fs.log" 2>&1 \
            || { tail -20 "$fs.log" >&2; die "debootstrap failed"; }
        rm -rf "$fs"/var/cache/apt/archives/*.deb "$fs"/var/lib/apt/lists/*
        mkdir -p "$CACHE"
        tar -C "$fs" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -cf "$tar.new" .
        mv "$tar.new" "$tar"
        rm -rf "$fs" "$fs.log"
        say "root file system made in $((SECONDS - t0)) s ($tar)"
    fi
    local log; log="$(mktemp)"
    dk import "$tar" skyweave-base:py3.11 >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; die "importing $tar failed"; }
    rm -f "$log"
}

wheels() {  # the wheels every image installs, downloaded once with this host's pip settings
    local dir="$CACHE/wheels" stamp want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT"/pipelines/*/pyproject.toml | sha256sum | cut -c1-16)"
    stamp="$dir/.stamp"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
    mkdir -p "$dir"
    say "pip download into $dir"
    python3 -m pip download -q -d "$dir" -c "$ROOT/constraints.txt" setuptools wheel pip \
        "$ROOT" "${PIPELINES[@]/#/$ROOT/pipelines/}" >/dev/null || die "pip download failed"
    echo "$want" > "$stamp"
}

serve_wheels() {  # an index of the wheelhouse on 127.0.0.1 for the builds; sets WHEELS_URL
    local port; port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    python3 -m http.server --bind 127.0.0.1 --directory "$CACHE/wheels" "$port" >/dev/null 2>&1 &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true' EXIT
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    WHEELS_URL="http://127.0.0.1:$port/"
}

build() {  # build TAG DOCKERFILE
    local t0=$SECONDS
    DOCKER_BUILDKIT=0 dk build -q --network host -f "$ROOT/$2" -t "$1" \
        --build-arg PIP_OPTS="--no-index --find-links $WHEELS_URL" "$ROOT" >/dev/null \
        || die "building $1 from $2 failed"
    say "$1 built in $((SECONDS - t0)) s"
}

copied() {  # copied TAG: podman got TAG from the docker daemon (which has it), or nothing happened
    [ "$ENGINE" = podman ] && [ -n "${FROM_DOCKER:-}" ] || return 1
    "${SKYWEAVE_DOCKER_BIN:-/usr/bin/docker}" -H "$FROM_DOCKER" image inspect "$1" >/dev/null 2>&1 || return 1
    local t0=$SECONDS
    "${SKYWEAVE_DOCKER_BIN:-/usr/bin/docker}" -H "$FROM_DOCKER" save "$1" | dk load -q >/dev/null \
        || die "copying $1 from docker ($FROM_DOCKER) into podman failed"
    say "$1 copied from docker in $((SECONDS - t0)) s"
}

names=("$@"); [ ${#names[@]} -gt 0 ] || names=(skyweave:local "${PIPELINES[@]/#/pipeline:}")
t_all=$SECONDS
if [ "$ENGINE" = podman ] && [ -n "${FROM_DOCKER:-}" ]; then  # what docker has, podman copies
    left=()
    for n in "${names[@]}"; do
        case "$n" in base) t=skyweave-base:py3.11 ;; pipeline:*) t="$(tag_of "${n#pipeline:}")" ;; *) t="$n" ;; esac
        have "$t" || copied "$t" || left+=("$n")
    done
    [ ${#left[@]} -gt 0 ] || { say "images ready in $((SECONDS - t_all)) s"; exit 0; }
    names=("${left[@]}")
    have skyweave-base:py3.11 || copied skyweave-base:py3.11 || true
fi
base
pipelines=()
for n in "${names[@]}"; do
    case "$n" in
        skyweave-base:py3.11|base) ;;
        skyweave:local) pipelines+=("") ;;
        pipeline:*|skyweave-*) p="${n#pipeline:}"; p="${p#skyweave-}"; p="${p%:latest}"; p="${p//-/_}"
                               [ -f "$ROOT/pipelines/$p/Dockerfile" ] || die "no pipeline $p (pipelines/*/Dockerfile)"
                               pipelines+=("$p") ;;
        *) die "unknown image $n (known: skyweave-base:py3.11, skyweave:local, skyweave-<pipeline>)" ;;
    esac
done
if [ ${#pipelines[@]} -gt 0 ]; then  # skyweave:local and what builds FROM it
    wheels
    serve_wheels
    build skyweave:local docker/skyweave.Dockerfile
    for p in "${pipelines[@]}"; do
        [ -z "$p" ] || build "$(tag_of "$p")" "pipelines/$p/Dockerfile"
    done
fi
say "images ready in $((SECONDS - t_all)) s"
