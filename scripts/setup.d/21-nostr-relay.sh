#!/usr/bin/env bash
# A real NOSTR relay for tests/nostr/test_relay_interop.py: the `nostr-relay` package (PyPI) in
# its own virtual environment, .venv-relay, because its pins may clash with ours. The test fixture
# starts it on 127.0.0.1 and stops it. Idempotent: skips pip when the pinned version is present.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
RELAY_VENV="$ROOT/.venv-relay"
PIN="nostr-relay==1.14"
stamp="$RELAY_VENV/.infernet-installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PIN" ] && [ -x "$RELAY_VENV/bin/nostr-relay" ]; then
  exit 0
fi
echo "21-nostr-relay: installing $PIN into $RELAY_VENV"
[ -x "$RELAY_VENV/bin/python" ] || "$PYTHON" -m venv "$RELAY_VENV"
"$RELAY_VENV/bin/python" -m pip install --quiet "$PIN"
echo "$PIN" > "$stamp"
