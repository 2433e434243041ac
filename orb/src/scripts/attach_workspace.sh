#!/bin/bash
# ferry workspace attach for the attach_workspace command: PARAM_AT, PARAM_FROM
# (jobs, one a line; empty for all), PARAM_STORE.
set -euo pipefail

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
