#!/bin/bash
# ferry cache restore for the restore_cache command: PARAM_KEY and/or PARAM_KEYS
# (one a line); the first key is the primary one, the rest are fallbacks.
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
PARAM_KEY="$(subst "${PARAM_KEY:-}")"
PARAM_KEYS="$(subst "${PARAM_KEYS:-}")"
PARAM_STORE="$(subst "${PARAM_STORE:-}")"

keys=()
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  [[ -z "$line" ]] || keys+=("$line")
done < <(printf '%s\n%s\n' "${PARAM_KEY:-}" "${PARAM_KEYS:-}")
if ((${#keys[@]} == 0)); then
  echo "restore_cache needs a key or keys parameter" >&2
  exit 1
fi

args=()
[[ -z "${PARAM_STORE:-}" ]] || args+=(--store "$PARAM_STORE")
args+=(cache restore --key "${keys[0]}")
for ((i = 1; i < ${#keys[@]}; i++)); do
  args+=(--restore-key "${keys[i]}")
done

set -x
ferry "${args[@]}"
