#!/usr/bin/env bash
# Sandbox backends for the node (spec/node-worker.md): installs docker.io and bubblewrap when
# missing, starts dockerd in the background when no daemon answers (bounded wait), and builds
# the local worker image (`docker import` of a tiny rootfs; no registry is needed). Idempotent
# and quick when everything is already there. A daemon that cannot start is reported, not
# fatal: the docker-marked tests then skip with a visible reason.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
VENV="${VENV:-$ROOT/.venv}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
if [ "${#need[@]}" -gt 0 ]; then
  echo "50-docker: installing ${need[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log="${TMPDIR:-/tmp}/infernet-dockerd.log"
  echo "50-docker: starting dockerd (log: $log)"
  $SUDO sh -c "nohup dockerd >'$log' 2>&1 &"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
if ! docker info >/dev/null 2>&1; then
  echo "50-docker: WARNING: no Docker daemon answers; docker tests will be skipped"
  exit 0
fi
"$VENV/bin/infernet" sandbox image
