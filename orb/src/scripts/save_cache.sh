#!/bin/bash
# ferry cache save for the save_cache command: PARAM_KEY, PARAM_PATHS (one a line), PARAM_STORE.
set -euo pipefail

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(cache save --key "$PARAM_KEY")
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  [[ -z "$line" ]] || args+=(--path "$line")
done < <(printf '%s\n' "${PARAM_PATHS:-}")

set -x
ferry "${args[@]}"
