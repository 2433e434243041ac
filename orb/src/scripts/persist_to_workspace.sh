#!/bin/bash
# ferry workspace persist for the persist_to_workspace command: PARAM_ROOT,
# PARAM_PATHS (one a line, relative to the root), PARAM_STORE.
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
PARAM_ROOT="$(subst "${PARAM_ROOT:-}")"
PARAM_PATHS="$(subst "${PARAM_PATHS:-}")"
PARAM_STORE="$(subst "${PARAM_STORE:-}")"

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(workspace persist --root "${PARAM_ROOT/#\~/$HOME}")
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  [[ -z "$line" ]] || args+=(--path "$line")
done < <(printf '%s\n' "${PARAM_PATHS:-}")

set -x
ferry "${args[@]}"
