#!/usr/bin/env bash
# Runs the orb's whole suite against the ferry on PATH: bats over orb/test/
# (shellcheck, packing and schema checks, each command run as CircleCI runs it,
# and the README's quick start). Needs the tools .ci/install-tools.sh installs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! ferry="$(command -v ferry)"; then
  echo "orb/test/run.sh: no ferry on PATH; build it (cargo build -p ferry) and add target/debug to PATH" >&2
  exit 1
fi
for tool in bats shellcheck python3 check-jsonschema; do
  command -v "$tool" >/dev/null || { echo "orb/test/run.sh: $tool is missing; run .ci/install-tools.sh" >&2; exit 1; }
done
python3 -c 'import yaml' || { echo "orb/test/run.sh: PyYAML is missing; run .ci/install-tools.sh" >&2; exit 1; }
echo "orb tests: ferry at ${ferry}, $(bats --version)"

# Every test makes its folders under one private temporary folder, removed
# when the suite ends however it ends, so runs leave nothing behind.
TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/ferry-orb-suite.XXXXXX")"
export TMPDIR BATS_TMPDIR="$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT
tap="$TMPDIR/results.tap"
status=0
bats --tap ./*.bats | tee "$tap" || status=$?
passed="$(grep -Ec '^ok [0-9]+' "$tap" || true)"
skipped="$(grep -Ec '^ok [0-9]+ .*# skip' "$tap" || true)"
failed="$(grep -Ec '^not ok [0-9]+' "$tap" || true)"
echo "orb: $((passed - skipped)) passed, ${failed} failed, ${skipped} skipped"
exit "$status"
