#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine with Python 3.11, idempotently:
# the virtual environment with the project and its extras, then each step in scripts/setup.d/
# (in name order: third-party oracles, services). Re-running skips what is already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${VENV:-$ROOT/.venv}"
export ROOT VENV PYTHON

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.infernet-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing infernet-ref with extras dev, kernels, uvloop"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch==2.13.0 (CPU) comes from this machine's wheel cache; see pyproject.toml.
  "$VENV/bin/python" -m pip install --quiet -e ".[dev,kernels,uvloop]"
  echo "$want" > "$stamp"
fi

for step in "$ROOT"/scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  echo "setup: $(basename "$step")"
  bash "$step"
done
