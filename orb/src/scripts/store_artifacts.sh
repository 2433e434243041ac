#!/bin/bash
# ferry artifacts upload for the store_artifacts command: PARAM_PATH,
# PARAM_DESTINATION, PARAM_TTL, PARAM_STORE.
set -euo pipefail

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(artifacts upload)
[[ -z "${PARAM_DESTINATION:-}" ]] || args+=(--destination "$PARAM_DESTINATION")
[[ -z "${PARAM_TTL:-}" ]] || args+=(--ttl "$PARAM_TTL")
args+=(-- "${PARAM_PATH/#\~/$HOME}")

set -x
ferry "${args[@]}"
