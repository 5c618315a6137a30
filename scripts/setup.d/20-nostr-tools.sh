#!/usr/bin/env bash
# nostr-tools oracle for tests/nostr (interop both ways) and benchmarks/bench_nostr.py: version
# pinned in tests/nostr/js/package-lock.json. Idempotent: skips npm when the installed tree
# matches the lock file.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
JS="$ROOT/tests/nostr/js"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "20-nostr-tools: node/npm not found; install Debian packages nodejs and npm" >&2
  exit 1
fi
stamp="$JS/node_modules/.infernet-lock-sha256"
want="$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$JS/node_modules/nostr-tools" ]; then
  exit 0
fi
echo "20-nostr-tools: npm ci in tests/nostr/js"
(cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" > "$stamp"
