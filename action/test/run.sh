#!/usr/bin/env bash
# Runs the GitHub Action's whole suite against the ferry on PATH: schema and
# actionlint checks, then every node:test file (each drives the action as the
# runner does). Needs the tools .ci/install-tools.sh installs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! ferry="$(command -v ferry)"; then
  echo "action/test/run.sh: no ferry on PATH; build it (cargo build -p ferry) and add target/debug to PATH" >&2
  exit 1
fi
for tool in node python3 check-jsonschema actionlint openssl; do
  command -v "$tool" >/dev/null || { echo "action/test/run.sh: $tool is missing; run .ci/install-tools.sh" >&2; exit 1; }
done
echo "action tests: ferry at ${ferry}, node $(node --version)"

# The tests make their own stores, homes and runner folders; keep the runner
# variables of an enclosing CI job out of the processes they start.
while IFS= read -r name; do
  unset "$name"
done < <(env | sed -n 's/^\(\(GITHUB\|RUNNER\|INPUT\|STATE\|CIRCLE\|FERRY\|ACTIONS\)_[A-Za-z0-9_-]*\)=.*/\1/p' \
  | grep -v -- '-' | grep -v '^FERRY_TEST_')
unset GITHUB_ACTIONS CIRCLECI

# Every test makes its folders under one private temporary folder, removed
# when the suite ends however it ends, so runs leave nothing behind.
TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/ferry-action-suite.XXXXXX")"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
node --test test/*.test.js
