# Shared set-up for the orb's bats tests: pack the orb, give each test a
# CircleCI-like environment, start jobs on "fresh machines", run orb commands
# through circleci.py (the stand-in for CircleCI) against the real ferry.

ORB_TEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ORB_DIR="$(dirname "$ORB_TEST_DIR")"
REPO_DIR="$(dirname "$ORB_DIR")"
# The interpreter itself, not a shim: some tests run with a bare PATH.
PYTHON="$(python3 -c 'import sys; print(sys.executable)')"

pack_orb() {
  "$PYTHON" "$ORB_DIR/pack.py" "$ORB_DIR/src" >"$1"
}

# CircleCI's variables for one workflow run, a fresh home, and a store shared
# by the run's jobs (as a context's FERRY_STORE would be); nothing of GitHub's.
circleci_env() {
  local name
  for name in $(env | sed -n 's/^\(\(GITHUB\|RUNNER\|CIRCLE\|FERRY\)_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$name"
  done
  unset GITHUB_ACTIONS BASH_ENV
  export CIRCLECI=true
  CIRCLE_WORKFLOW_ID="5d1f6b3e-0000-4000-8000-$(printf '%012d' "$RANDOM$RANDOM")"
  export CIRCLE_WORKFLOW_ID
  export CIRCLE_BRANCH=main
  export CIRCLE_SHA1=0123456789abcdef0123456789abcdef01234567
  export CIRCLE_PROJECT_USERNAME=ferry-ci
  export CIRCLE_PROJECT_REPONAME=example
  export CIRCLE_BUILD_NUM=100
  export HOME="$BATS_TEST_TMPDIR/home"
  export XDG_CACHE_HOME="$HOME/.cache"
  mkdir -p "$HOME"
  export FERRY_STORE="$BATS_TEST_TMPDIR/store"
}

# A new job of the current workflow on a fresh machine: its own working folder
# and BASH_ENV file, CIRCLE_JOB set, the next build number.
start_job() {
  export CIRCLE_JOB="$1"
  export CIRCLE_BUILD_NUM=$((CIRCLE_BUILD_NUM + 1))
  JOB_DIR="$BATS_TEST_TMPDIR/jobs/${CIRCLE_BUILD_NUM}-$1"
  mkdir -p "$JOB_DIR"
  cd "$JOB_DIR" || return 1
  export BASH_ENV="$JOB_DIR/.bash_env"
  : >"$BASH_ENV"
}

# Runs one orb command in the current job, as a step of it: NAME [PARAM=VALUE...]
orb_command() {
  "$PYTHON" "$ORB_TEST_DIR/circleci.py" command "$PACKED_ORB" "$@"
}

# Writes the YAML block of the README's quick start NAME (or, until the README
# has it between its markers, of DOCS_PAGE) to OUT, and prints where it came from.
quickstart_yaml() {
  "$PYTHON" - "$REPO_DIR" "$1" "$2" "$3" <<'PY'
import pathlib, re, sys
repo, name, docs, out = sys.argv[1:]
opening, closing = f"<!-- quickstart:{name} -->", f"<!-- /quickstart:{name} -->"
for page in (pathlib.Path(repo, "README.md"), pathlib.Path(repo, docs)):
    if not page.is_file():
        continue
    text = page.read_text(encoding="utf-8")
    if opening not in text:
        continue
    section = text.split(opening, 1)[1].split(closing, 1)
    if len(section) != 2:
        sys.exit(f"{page}: {opening} has no {closing}")
    block = re.search(r"```ya?ml\n(.*?)```", section[0], re.S)
    if not block:
        if page.name == "README.md" and not section[0].strip():
            continue  # markers placed, snippet not moved in yet
        sys.exit(f"{page}: the {name} quick start has no yaml block")
    pathlib.Path(out).write_text(block.group(1), encoding="utf-8")
    print(page.relative_to(repo))
    break
else:
    sys.exit(f"no {opening} in README.md or {docs}")
PY
}

# Serves DIR on loopback like GitHub's release downloads; sets RELEASES_URL and SERVER_PID.
# shellcheck disable=SC2034 # RELEASES_URL is for the tests.
start_release_server() {
  local log="$BATS_TEST_TMPDIR/release-server.log" port=""
  "$PYTHON" -u -m http.server 0 --bind 127.0.0.1 --directory "$1" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    port="$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)"
    [[ -z "$port" ]] || break
    sleep 0.1
  done
  [[ -n "$port" ]] || { cat "$log" >&2; return 1; }
  RELEASES_URL="http://127.0.0.1:${port}"
}

stop_release_server() {
  if [[ -n "${SERVER_PID:-}" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

# The release asset name for this machine, as install.sh computes it.
this_asset() {
  local arch
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
  esac
  case "$(uname -s)" in
    Linux) echo "ferry-${arch}-unknown-linux-musl.tar.gz" ;;
    Darwin) echo "ferry-${arch}-apple-darwin.tar.gz" ;;
  esac
}
