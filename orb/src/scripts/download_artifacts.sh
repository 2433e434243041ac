#!/bin/bash
# ferry artifacts download for the download_artifacts command: PARAM_JOB,
# PARAM_PATTERN, PARAM_TO, PARAM_STORE.
set -euo pipefail

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(artifacts download --to "${PARAM_TO/#\~/$HOME}")
[[ -z "${PARAM_JOB:-}" ]] || args+=(--job "$PARAM_JOB")
[[ -z "${PARAM_PATTERN:-}" ]] || args+=(-- "$PARAM_PATTERN")

set -x
ferry "${args[@]}"
