#!/bin/bash
# Puts ferry on PATH: keeps one already there, else downloads the release for
# this OS and architecture, checks its SHA-256 and installs it. The install
# folder is added to PATH for later steps through $BASH_ENV, which CircleCI's
# bash sources at the start of every step.
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
PARAM_VERSION="$(subst "${PARAM_VERSION:-}")"
PARAM_INSTALL_DIR="$(subst "${PARAM_INSTALL_DIR:-}")"
PARAM_RELEASES_URL="$(subst "${PARAM_RELEASES_URL:-}")"

install_dir="${PARAM_INSTALL_DIR:-}"
[[ -n "$install_dir" ]] || install_dir="${HOME}/.local/bin"
install_dir="${install_dir/#\~/$HOME}"

add_to_path() {
  if [[ -n "${BASH_ENV:-}" ]]; then
    # shellcheck disable=SC2016 # $PATH is expanded when BASH_ENV is sourced.
    printf 'export PATH="%s:$PATH"\n' "$1" >>"$BASH_ENV"
  fi
  export PATH="$1:$PATH"
}

if existing="$(command -v ferry)"; then
  echo "Using ferry from PATH: ${existing} ($(ferry --version))"
  exit 0
fi
if [[ -x "${install_dir}/ferry" ]]; then
  add_to_path "$install_dir"
  echo "Using ferry from ${install_dir} ($("${install_dir}/ferry" --version))"
  exit 0
fi

case "$(uname -s)" in
  MINGW* | MSYS* | CYGWIN* | Windows_NT)
    echo "ferry is built for Linux and macOS only: it relies on Unix file modes and symlinks, and no Windows build is published. Run this job on a Linux (docker or machine) or macOS executor." >&2
    exit 1
    ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *)
    echo "ferry has no release for architecture $(uname -m): put a ferry binary on PATH first" >&2
    exit 1
    ;;
esac
case "$(uname -s)" in
  Linux) asset="ferry-${arch}-unknown-linux-musl.tar.gz" ;;
  Darwin) asset="ferry-${arch}-apple-darwin.tar.gz" ;;
  *)
    echo "ferry has no release for OS $(uname -s): put a ferry binary on PATH first" >&2
    exit 1
    ;;
esac

version="${PARAM_VERSION:-latest}"
base="${PARAM_RELEASES_URL:-https://github.com/ferry-ci/ferry/releases}"
base="${base%/}"
if [[ "$version" == latest ]]; then
  url="${base}/latest/download/${asset}"
else
  url="${base}/download/v${version#v}/${asset}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl --fail --silent --show-error --location --retry 3 --output "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget --quiet --tries=3 --output-document="$2" "$1"
  else
    echo "neither curl nor wget is installed: cannot download ${1}" >&2
    return 1
  fi
}

echo "Downloading ferry ${version} from ${url}"
if ! fetch "$url" "${work}/${asset}" || ! fetch "${url}.sha256" "${work}/${asset}.sha256"; then
  echo "failed to download ${url}: check the version parameter (${version}) and the network" >&2
  exit 1
fi

expected="$(cut -d ' ' -f 1 "${work}/${asset}.sha256")"
if command -v sha256sum >/dev/null 2>&1; then
  actual="$(sha256sum "${work}/${asset}" | cut -d ' ' -f 1)"
else
  actual="$(shasum -a 256 "${work}/${asset}" | cut -d ' ' -f 1)"
fi
if [[ "$expected" != "$actual" ]]; then
  echo "checksum mismatch for ${url}: expected ${expected}, got ${actual}" >&2
  exit 1
fi

mkdir -p "${work}/unpacked" "$install_dir"
tar -xzf "${work}/${asset}" -C "${work}/unpacked"
install -m 0755 "${work}/unpacked/ferry" "${install_dir}/ferry"
add_to_path "$install_dir"
echo "Installed $("${install_dir}/ferry" --version) to ${install_dir}/ferry"
