#!/usr/bin/env bash
# IPFS CID oracle for tests/content: the official JS UnixFS importer (ipfs-unixfs-importer and
# friends, versions pinned in tests/content/js/package-lock.json). Idempotent: skips npm when the
# installed tree matches the lock file.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
JS="$ROOT/tests/content/js"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "30-ipfs-oracle: node/npm not found; install Debian packages nodejs and npm" >&2
  exit 1
fi
stamp="$JS/node_modules/.infernet-lock-sha256"
want="$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$JS/node_modules/ipfs-unixfs-importer" ]; then
  exit 0
fi
echo "30-ipfs-oracle: npm ci in tests/content/js"
(cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" > "$stamp"
