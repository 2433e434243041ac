#!/usr/bin/env bash
# Checks tests/gha/fake_results.py against GitHub's own clients (@actions/cache,
# @actions/artifact, octokit) and its REST answers against GitHub's OpenAPI description, and
# ferry's gha:// store beside those clients (test/ferry.test.mjs: FERRY_BIN, else
# target/debug/ferry).
# Needs the fake running (.ci/servers.sh start, or start-gha) and Node 20+. Installs the
# pinned clients from clients/package-lock.json (npm ci) when the lockfile changed.
#   tests/gha/run.sh [test/FILE.test.mjs ...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="${FERRY_SERVERS_DIR:-$here/../../.ci/cache}/store-gha.env"

if [[ -z "${NODE_EXTRA_CA_CERTS:-}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi
[[ -f "$env_file" ]] || { echo "tests/gha/run.sh: $env_file is missing; run .ci/servers.sh start-gha" >&2; exit 1; }

cd "$here/clients"
stamp=node_modules/.ferry-lock-sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  npm ci --no-audit --no-fund --loglevel=error </dev/null
  echo "$want" >"$stamp"
fi

# A job's environment comes from the fake alone, never from an enclosing CI job.
while IFS= read -r name; do
  unset "$name"
done < <(env | sed -n 's/^\(\(GITHUB\|RUNNER\|ACTIONS\)_[A-Za-z0-9_]*\)=.*/\1/p')
# shellcheck disable=SC1090
source "$env_file"
echo "gha fake checks: fake at ${FERRY_GHA_FAKE_URL}, node $(node --version)"
# One file at a time: the files share the fake, and some move its clock or reset it.
# Arguments name test files to run instead of all of them.
if (($#)); then files=("$@"); else files=(test/*.test.mjs); fi
# The clients' temporary folders live in one private folder removed at the end.
TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/ferry-gha-clients.XXXXXX")"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
node --test --test-concurrency=1 "${files[@]}"
