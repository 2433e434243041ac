#!/usr/bin/env bash
# Runs ferry ui's browser tests: installs playwright-core from the lockfile (npm ci) when
# missing, then drives `ferry ui` in Debian's headless Chromium against the store named by
# FERRY_TEST_STORE (local by default; a server store needs `.ci/servers.sh start`).
# Screenshots land in ui/test/output/<store>/; with FERRY_UI_UPDATE_DOCS=1 the local run's
# are copied to docs/ui/ for the README.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ -z "${NODE_EXTRA_CA_CERTS:-}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi
command -v node >/dev/null || { echo "ui/test/run.sh: node is required" >&2; exit 1; }
chromium="${CHROMIUM:-/usr/bin/chromium}"
[[ -x "$chromium" ]] || { echo "ui/test/run.sh: $chromium is missing; apt-get install chromium" >&2; exit 1; }
# The pinned playwright-core, from the lockfile; installed again only when it differs.
installed="$(node -p 'require("./node_modules/playwright-core/package.json").version' 2>/dev/null || true)"
pinned="$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')"
if [[ "$installed" != "$pinned" ]]; then
  npm ci --no-audit --no-fund --loglevel=error </dev/null
fi
if [[ -z "${FERRY_BIN:-}" ]]; then
  if [[ -x ../../target/debug/ferry ]]; then
    export FERRY_BIN="$PWD/../../target/debug/ferry"
  else
    FERRY_BIN="$(command -v ferry)" || { echo "ui/test/run.sh: build ferry first (cargo build -p ferry)" >&2; exit 1; }
    export FERRY_BIN
  fi
fi
store="${FERRY_TEST_STORE:-local}"
echo "ferry ui browser tests: store ${store}, ferry at ${FERRY_BIN}, $("$chromium" --version 2>/dev/null | head -1)"
rm -rf "output/$store"
node --test --test-concurrency=1 ui.test.js
if [[ "${FERRY_UI_UPDATE_DOCS:-}" == 1 && "$store" == local ]]; then
  mkdir -p ../../docs/ui
  for shot in caches workspace-graph workspace-clash artifacts artifact-text artifact-html artifact-junit usage; do
    cp "output/local/$shot.png" "../../docs/ui/$shot.png"
  done
  echo "copied the screenshots to docs/ui/"
fi
