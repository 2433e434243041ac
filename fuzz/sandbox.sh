#!/usr/bin/env bash
# Runs a command (usually `cargo +nightly fuzz run ...`) in a private mount namespace where
# every file system is read-only except this fuzz/ folder and a fresh /tmp: the targets run
# restores into temporary folders, and a restore that escaped its target while being fuzzed
# as root must not be able to touch the machine. Needs root (unshare --mount); an ordinary
# user can run the fuzzer directly, since its writes are then limited to what the user may change.
set -euo pipefail
fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec unshare --mount --propagation private -- bash -c '
  set -euo pipefail
  fuzz="$1"
  shift
  mount --bind "$fuzz" "$fuzz"
  mount -t tmpfs -o size=2g,mode=1777 tmpfs /tmp
  # Remounting acts on one mount at a time, so the two above stay writable.
  findmnt -rn -o TARGET | while read -r m; do
    case "$m" in
      "$fuzz" | /tmp | /proc | /proc/* | /dev | /dev/pts) ;;
      *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;;
    esac
  done
  export TMPDIR=/tmp
  exec "$@"
' sandbox "$fuzz" "$@"
