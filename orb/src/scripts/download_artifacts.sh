#!/bin/bash
# ferry artifacts download for the download_artifacts command: PARAM_JOB,
# PARAM_PATTERN, PARAM_TO, PARAM_STORE.
set -euo pipefail

# Parameters may name environment variables ($VAR, ${VAR}): with the CircleCI CLI
# on the machine they are expanded by `circleci env subst`, as CircleCI's orb
# template does; without it they are used as given.
subst() {
  if command -v circleci >/dev/null 2>&1; then
    circleci env subst "$1"
  else
    printf '%s' "$1"
  fi
}
PARAM_JOB="$(subst "${PARAM_JOB:-}")"
PARAM_PATTERN="$(subst "${PARAM_PATTERN:-}")"
PARAM_TO="$(subst "${PARAM_TO:-}")"
PARAM_STORE="$(subst "${PARAM_STORE:-}")"

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(artifacts download --to "${PARAM_TO/#\~/$HOME}")
[[ -z "${PARAM_JOB:-}" ]] || args+=(--job "$PARAM_JOB")
[[ -z "${PARAM_PATTERN:-}" ]] || args+=(-- "$PARAM_PATTERN")

set -x
ferry "${args[@]}"
