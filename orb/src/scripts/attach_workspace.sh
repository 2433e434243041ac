#!/bin/bash
# ferry workspace attach for the attach_workspace command: PARAM_AT, PARAM_FROM
# (jobs, one a line; empty for all), PARAM_STORE.
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
PARAM_AT="$(subst "${PARAM_AT:-}")"
PARAM_FROM="$(subst "${PARAM_FROM:-}")"
PARAM_STORE="$(subst "${PARAM_STORE:-}")"

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(workspace attach --at "${PARAM_AT/#\~/$HOME}")
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  [[ -z "$line" ]] || args+=(--from "$line")
done < <(printf '%s\n' "${PARAM_FROM:-}")

set -x
ferry "${args[@]}"
