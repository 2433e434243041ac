#!/bin/bash
# ferry artifacts upload for the store_artifacts command: PARAM_PATH,
# PARAM_DESTINATION, PARAM_TTL, PARAM_STORE.
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
PARAM_PATH="$(subst "${PARAM_PATH:-}")"
PARAM_DESTINATION="$(subst "${PARAM_DESTINATION:-}")"
PARAM_TTL="$(subst "${PARAM_TTL:-}")"
PARAM_STORE="$(subst "${PARAM_STORE:-}")"

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(artifacts upload)
[[ -z "${PARAM_DESTINATION:-}" ]] || args+=(--destination "$PARAM_DESTINATION")
[[ -z "${PARAM_TTL:-}" ]] || args+=(--ttl "$PARAM_TTL")
args+=(-- "${PARAM_PATH/#\~/$HOME}")

set -x
ferry "${args[@]}"
