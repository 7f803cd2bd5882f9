#!/usr/bin/env bash
# Prepare a development or CI machine for CloudAI. Safe to re-run: every step
# checks first and is a quick no-op when its work is already done.
#
#   scripts/setup.sh                    everything
#   scripts/setup.sh --python-only      just the virtualenv and `pip install -e '.[dev]'`
#   scripts/setup.sh --docker-only      just the engine, the sample image and the registry
#   scripts/setup.sh --verify-registry  also push an image to the local registry and pull it back
#
# Environment:
#   CLOUDAI_OFFLINE=1        never try a registry; build the base image with mmdebstrap
#   CLOUDAI_DEBIAN_MIRROR    mirror for mmdebstrap (default: deb.debian.org)
#   CLOUDAI_DOCKERD_ARGS     extra arguments for dockerd when this script starts it
#   PYTHON                   interpreter for the virtualenv (default: python3)
#
# Docker Hub is unreachable on the project's machines, so the sample image is
# built on a Debian base made locally by mmdebstrap when a pull does not answer.
# See "Docker on the development machines" in the design brief.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SAMPLE_IMAGE="cloudai/sample-task:latest"
ONLINE_BASE="python:3.11-slim"
OFFLINE_BASE="cloudai/base:bookworm"
REGISTRY_ADDR="127.0.0.1:5000"
DOCKERD_LOG="/var/log/cloudai-dockerd.log"
APT=(apt-get -o DPkg::Lock::Timeout=120 -q)

if [ "$(id -u)" -eq 0 ]; then
    STATE_DIR="/var/lib/cloudai"
    LOG_DIR="/var/log"
else
    STATE_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/cloudai"
    LOG_DIR="$STATE_DIR"
fi
SETUP_LOG="$LOG_DIR/cloudai-setup.log"
REGISTRY_LOG="$LOG_DIR/cloudai-registry.log"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }

# Run a noisy command with its output in the setup log; show the tail if it fails.
quietly() {
    printf '\n$ %s\n' "$*" >>"$SETUP_LOG"
    if ! "$@" >>"$SETUP_LOG" 2>&1 </dev/null; then
        printf '[setup] ERROR: command failed: %s\n' "$*" >&2
        tail -n 25 "$SETUP_LOG" | sed 's/^/[setup]   | /' >&2
        exit 1
    fi
}

# Run a check once a second until it passes or the time limit (seconds) runs out.
wait_for() {
    local limit="$1" started=$SECONDS
    shift
    until "$@"; do
        [ $((SECONDS - started)) -lt "$limit" ] || return 1
        sleep 1
    done
}

APT_UPDATED=0
apt_install() {
    is_root || die "need root to install $*: run 'sudo apt-get install -y $*' and re-run"
    have apt-get || die "$* not found and this is not a Debian-style system; install it by hand"
    if [ "$APT_UPDATED" -eq 0 ]; then
        quietly "${APT[@]}" update
        APT_UPDATED=1
    fi
    say "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive quietly "${APT[@]}" install -y "$@"
}

# --- a. Python ----------------------------------------------------------------

setup_python() {
    local py="${PYTHON:-python3}"
    if ! have "$py"; then
        [ "$py" = python3 ] && is_root && have apt-get && apt_install python3 python3-venv
        have "$py" || die "$py not found: install Python 3.11+ (apt-get install -y python3 python3-venv)"
    fi
    if [ ! -x .venv/bin/python ]; then
        "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "$py is $("$py" -V 2>&1); CloudAI needs Python 3.11+ (set PYTHON=...)"
        say "creating .venv with $("$py" -V 2>&1)"
        if ! "$py" -m venv .venv >>"$SETUP_LOG" 2>&1; then
            # Debian ships venv's ensurepip separately.
            rm -rf .venv
            apt_install python3-venv
            quietly "$py" -m venv .venv
        fi
    fi
    local stamp
    stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ -f "$stamp" ]; then
        say "python: .venv is up to date with pyproject.toml"
        return
    fi
    say "python: pip install -e '.[dev]' (log: $SETUP_LOG)"
    quietly .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
}

# --- b. Docker engine -----------------------------------------------------------

engine_up() { timeout 20 docker info >/dev/null 2>&1; }

not_root_help() {
    cat >&2 <<'EOF'
[setup] ERROR: no usable Docker engine, and this script is not running as root.
[setup] Install and start one, then re-run:
[setup]     sudo apt-get install -y docker.io          # Debian / Ubuntu
[setup]     sudo systemctl enable --now docker         # with systemd
[setup]     sudo sh -c 'nohup dockerd >/var/log/cloudai-dockerd.log 2>&1 &'   # without
[setup] To use Docker without sudo: sudo usermod -aG docker "$USER", then log in again.
[setup] Or run this script as root: sudo scripts/setup.sh
EOF
    exit 1
}

start_dockerd() {
    if [ -d /run/systemd/system ] && have systemctl; then
        say "starting docker with systemctl"
        systemctl start docker >>"$SETUP_LOG" 2>&1 || true
        engine_up && return
    fi
    if [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        say "dockerd is already starting; waiting for it"
        return
    fi
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon outlives this script and its terminal.
    # From /, as daemons run: the checkout it was started from may be removed later.
    # shellcheck disable=SC2086  # CLOUDAI_DOCKERD_ARGS is a list of words
    (cd / && exec setsid nohup dockerd ${CLOUDAI_DOCKERD_ARGS:-}) >>"$DOCKERD_LOG" 2>&1 </dev/null &
}

setup_docker_engine() {
    if engine_up; then
        say "docker: engine is running ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
        return
    fi
    is_root || not_root_help
    if ! have dockerd || ! have docker; then apt_install docker.io; fi
    engine_up && { say "docker: engine started by its package"; return; }
    local started=$SECONDS
    start_dockerd
    if wait_for 60 engine_up; then
        say "docker: engine is up after $((SECONDS - started))s"
        return
    fi
    tail -n 20 "$DOCKERD_LOG" 2>/dev/null | sed 's/^/[setup]   | /' >&2 || true
    die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
}

# --- c. Base image and sample image -------------------------------------------

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_label() {
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# The sample image carries a hash of its sources, so an edit to task.py or the
# Dockerfile rebuilds it while an unchanged tree skips the build.
sample_sources_sha() {
    cat sample_task/Dockerfile sample_task/.dockerignore sample_task/task.py | sha256sum | cut -c1-16
}

registry_answers() {
    [ "${CLOUDAI_OFFLINE:-0}" = "1" ] && return 1
    image_exists "$ONLINE_BASE" && return 0
    say "trying to pull $ONLINE_BASE (20 s limit; CLOUDAI_OFFLINE=1 skips this)"
    timeout 20 docker pull -q "$ONLINE_BASE" >>"$SETUP_LOG" 2>&1 </dev/null
}

build_offline_base() {
    if image_exists "$OFFLINE_BASE"; then
        return
    fi
    have mmdebstrap || apt_install mmdebstrap
    is_root || die "building $OFFLINE_BASE needs root (mmdebstrap); run: sudo scripts/setup.sh"
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand $tmp now, while it is set
    trap "rm -rf '$tmp'" EXIT
    say "building $OFFLINE_BASE with mmdebstrap (bookworm, python3-minimal)"
    local started=$SECONDS
    # An explicit suite means mmdebstrap never reads sources from stdin (CI has none).
    quietly mmdebstrap --variant=essential --include=python3-minimal \
        bookworm "$tmp/base.tar" ${CLOUDAI_DEBIAN_MIRROR:+"$CLOUDAI_DEBIAN_MIRROR"}
    quietly docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        "$tmp/base.tar" "$OFFLINE_BASE"
    rm -rf "$tmp"
    trap - EXIT
    say "built $OFFLINE_BASE in $((SECONDS - started))s"
}

setup_images() {
    local want
    want="$(sample_sources_sha)"
    if [ "$(image_label "$SAMPLE_IMAGE" cloudai.sources-sha)" = "$want" ]; then
        say "image: $SAMPLE_IMAGE is up to date"
        return
    fi
    local base="$ONLINE_BASE"
    if ! registry_answers; then
        say "no registry answers: using the offline base $OFFLINE_BASE"
        base="$OFFLINE_BASE"
        build_offline_base
    fi
    local old
    old="$(docker image inspect -f '{{.Id}}' "$SAMPLE_IMAGE" 2>/dev/null || true)"
    say "building $SAMPLE_IMAGE on $base"
    quietly docker build --build-arg "BASE_IMAGE=$base" \
        --label "cloudai.sources-sha=$want" --label "cloudai.base-image=$base" \
        -t "$SAMPLE_IMAGE" sample_task
    # Drop the image the new build replaced, unless a container still uses it.
    if [ -n "$old" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
}

# --- d. Local registry on 127.0.0.1:5000 ----------------------------------------

registry_up() { curl -fsS -o /dev/null --max-time 3 "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }

write_registry_config() {
    local cfg="$1" tmp
    tmp="$(mktemp)"
    # Our own config: Debian's default listens on all interfaces and enables htpasswd auth.
    cat >"$tmp" <<EOF
version: 0.1
log:
  level: warn
  fields:
    service: cloudai-registry
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    if cmp -s "$tmp" "$cfg"; then rm -f "$tmp"; else mv "$tmp" "$cfg"; fi
}

setup_registry() {
    if registry_up; then
        say "registry: serving on $REGISTRY_ADDR"
        return
    fi
    if have curl && curl -s -o /dev/null --max-time 3 "http://$REGISTRY_ADDR/"; then
        die "something else answers on $REGISTRY_ADDR but not as an open registry" \
            "(Debian's own docker-registry service? try: systemctl disable --now docker-registry)"
    fi
    have curl || apt_install curl
    have docker-registry || apt_install docker-registry
    mkdir -p "$STATE_DIR/registry"
    local cfg="$STATE_DIR/registry-config.yml"
    write_registry_config "$cfg"
    say "starting docker-registry on $REGISTRY_ADDR (log: $REGISTRY_LOG)"
    local started=$SECONDS
    setsid nohup docker-registry serve "$cfg" >>"$REGISTRY_LOG" 2>&1 </dev/null &
    if wait_for 30 registry_up; then
        say "registry: up after $((SECONDS - started))s"
        return
    fi
    tail -n 20 "$REGISTRY_LOG" | sed 's/^/[setup]   | /' >&2 || true
    die "docker-registry did not answer on $REGISTRY_ADDR within 30 s; see $REGISTRY_LOG"
}

verify_registry() {
    local probe="$REGISTRY_ADDR/cloudai/probe:latest"
    say "registry: push and pull $probe"
    quietly docker tag "$SAMPLE_IMAGE" "$probe"
    quietly docker push "$probe"
    quietly docker rmi "$probe"
    quietly docker pull "$probe"
    quietly docker rmi "$probe"
    say "registry: push and pull work"
}

# --- main -----------------------------------------------------------------------

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

main() {
    local do_python=1 do_docker=1 do_verify=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --python-only) do_docker=0 ;;
            --docker-only) do_python=0 ;;
            --verify-registry) do_verify=1 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    if ! mkdir -p "$LOG_DIR" 2>/dev/null; then
        LOG_DIR="${TMPDIR:-/tmp}"
        SETUP_LOG="$LOG_DIR/cloudai-setup-$(id -u).log"
        REGISTRY_LOG="$LOG_DIR/cloudai-registry-$(id -u).log"
    fi
    local started=$SECONDS

    if [ "$do_python" -eq 1 ]; then setup_python; fi
    if [ "$do_docker" -eq 1 ]; then
        setup_docker_engine
        setup_images
        setup_registry
        if [ "$do_verify" -eq 1 ]; then verify_registry; fi
        local base
        base="$(image_label "$SAMPLE_IMAGE" cloudai.base-image)"
        local offline="no"
        [ "$base" = "$OFFLINE_BASE" ] && offline="yes"
        say "done in $((SECONDS - started))s: image $SAMPLE_IMAGE (base $base, offline base: $offline)," \
            "registry $REGISTRY_ADDR"
    else
        say "done in $((SECONDS - started))s: python environment only"
    fi
}

main "$@"
