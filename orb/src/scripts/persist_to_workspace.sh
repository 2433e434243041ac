#!/bin/bash
# ferry workspace persist for the persist_to_workspace command: PARAM_ROOT,
# PARAM_PATHS (one a line, relative to the root), PARAM_STORE.
set -euo pipefail

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
