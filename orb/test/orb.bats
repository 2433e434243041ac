#!/usr/bin/env bats
# The orb: its scripts pass shellcheck, its source packs into one orb.yml that
# validates against the CircleCI config schema, and each command, run as
# CircleCI runs it (parameters substituted into the packed orb, CIRCLE_*
# variables, one BASH_ENV per job), does its job with the real ferry.

load helpers

setup_file() {
  export PACKED_ORB="$BATS_FILE_TMPDIR/orb.yml"
  pack_orb "$PACKED_ORB"
}

setup() {
  circleci_env
}

teardown() {
  stop_release_server
}

# ---------------------------------------------------------------- the source

@test "scripts pass shellcheck" {
  run shellcheck --shell=bash "$ORB_DIR"/src/scripts/*.sh
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "scripts hold no <<" {
  # CircleCI reads << ... >> in every string of the compiled config, included
  # scripts too; a script free of << cannot be mistaken for config syntax.
  run grep -n '<<' "$ORB_DIR"/src/scripts/*.sh
  echo "$output"
  [ "$status" -eq 1 ]
}

@test "the packed orb inlines every script and validates against the CircleCI schema" {
  run grep -c 'include(' "$PACKED_ORB"
  [ "$output" = 0 ]
  grep -q 'ferry "${args\[@\]}"' "$PACKED_ORB"
  run check-jsonschema --builtin-schema vendor.circle-ci "$PACKED_ORB"
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "the packer refuses an include that is not the whole value, or is missing" {
  src="$BATS_TEST_TMPDIR/src"
  cp -r "$ORB_DIR/src" "$src"
  printf 'description: x\nsteps:\n  - run: echo <<include(scripts/install.sh)>>\n' >"$src/commands/bad.yml"
  run "$PYTHON" "$ORB_DIR/pack.py" "$src"
  [ "$status" -eq 1 ]
  [[ "$output" == *"must be the whole value"* ]]
  printf 'description: x\nsteps:\n  - run: <<include(scripts/nope.sh)>>\n' >"$src/commands/bad.yml"
  run "$PYTHON" "$ORB_DIR/pack.py" "$src"
  [ "$status" -eq 1 ]
  [[ "$output" == *"scripts/nope.sh does not exist"* ]]
}

@test "each example's usage validates against the CircleCI schema" {
  "$PYTHON" - "$PACKED_ORB" "$BATS_TEST_TMPDIR" <<'PY'
import sys, yaml
orb = yaml.safe_load(open(sys.argv[1]))
assert len(orb["examples"]) >= 2, orb["examples"].keys()
for name, example in orb["examples"].items():
    assert example.get("description"), name
    with open(f"{sys.argv[2]}/example-{name}.yml", "w") as out:
        yaml.safe_dump(example["usage"], out)
PY
  run check-jsonschema --builtin-schema vendor.circle-ci "$BATS_TEST_TMPDIR"/example-*.yml
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "the config in orb/README.md validates against the CircleCI schema" {
  "$PYTHON" - "$ORB_DIR/README.md" "$BATS_TEST_TMPDIR" <<'PY'
import re, sys
blocks = [b for b in re.findall(r"```yaml\n(.*?)```", open(sys.argv[1]).read(), re.S) if "orbs:" in b]
assert blocks, "orb/README.md shows a config"
for i, block in enumerate(blocks):
    open(f"{sys.argv[2]}/readme-{i}.yml", "w").write(block)
PY
  run check-jsonschema --builtin-schema vendor.circle-ci "$BATS_TEST_TMPDIR"/readme-*.yml
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "the commands and their parameters mirror CircleCI's steps" {
  "$PYTHON" - "$PACKED_ORB" <<'PY'
import sys, yaml
commands = yaml.safe_load(open(sys.argv[1]))["commands"]
expected = {
    "install": {"version"},
    "save_cache": {"key", "paths", "name", "when", "store"},
    "restore_cache": {"key", "keys", "name", "store"},
    "persist_to_workspace": {"root", "paths", "name", "store"},
    "attach_workspace": {"at", "name", "store"},
    "store_artifacts": {"path", "destination", "name", "store"},
    "download_artifacts": {"store"},
}
assert set(commands) == set(expected), sorted(commands)
for name, params in expected.items():
    missing = params - set(commands[name].get("parameters", {}))
    assert not missing, f"{name} lacks {missing}"
    for step in commands[name]["steps"]:
        run = step.get("run") if isinstance(step, dict) else None
        if run:
            env = run.get("environment", {})
            assert all(key.startswith("PARAM_") for key in env), (name, env)
PY
}

@test "install's default version is the version of the ferry crates" {
  crates="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$REPO_DIR/Cargo.toml")"
  orb_default="$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["commands"]["install"]["parameters"]["version"]["default"])' "$PACKED_ORB")"
  [ -n "$crates" ]
  [ "$orb_default" = "$crates" ]
}

@test "a missing required parameter is an error, as CircleCI makes it" {
  start_job build
  run orb_command save_cache paths=deps
  [ "$status" -eq 2 ]
  [[ "$output" == *"missing required parameter key"* ]]
  run orb_command save_cache key=k paths=deps when=sometimes
  [ "$status" -eq 2 ]
  [[ "$output" == *"must be one of"* ]]
}

# ------------------------------------------------------------------- caches

@test "save_cache then restore_cache in a later job restores the files" {
  start_job build
  echo v1 >deps.lock
  mkdir -p deps/nested
  echo lib >deps/lib.txt
  echo more >deps/nested/more.txt
  run orb_command restore_cache key='deps-{{ checksum "deps.lock" }}'
  echo "$output"
  [ "$status" -eq 0 ]
  run orb_command save_cache key='deps-{{ checksum "deps.lock" }}' paths=deps
  echo "$output"
  [ "$status" -eq 0 ]

  start_job build
  echo v1 >deps.lock
  run orb_command restore_cache key='deps-{{ checksum "deps.lock" }}'
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(cat deps/lib.txt)" = lib ]
  [ "$(cat deps/nested/more.txt)" = more ]
}

@test "parameters expand environment variables through circleci env subst when the CLI is there" {
  export PATH="$ORB_TEST_DIR/fixtures/circleci-cli:$PATH"
  export CIRCLECI_CLI_LOG="$BATS_TEST_TMPDIR/circleci-cli.log"
  export DEPS_DIR=deps LOCK_VERSION=v7
  start_job build
  mkdir deps
  echo lib >deps/lib.txt
  run orb_command save_cache key='deps-${LOCK_VERSION}-{{ .Branch }}' paths='$DEPS_DIR'
  echo "$output"
  [ "$status" -eq 0 ]
  grep -q '^env subst deps-${LOCK_VERSION}-{{ .Branch }}$' "$CIRCLECI_CLI_LOG"

  start_job build
  run orb_command restore_cache keys='deps-${LOCK_VERSION}-{{ .Branch }}'
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(cat deps/lib.txt)" = lib ]
  run ferry --json cache ls
  [[ "$output" == *'"key":"deps-v7-main"'* ]]
}

@test "without the CircleCI CLI parameters are passed to ferry as given" {
  run command -v circleci
  [ "$status" -ne 0 ]
  export LOCK_VERSION=v7
  start_job build
  mkdir deps
  echo lib >deps/lib.txt
  run orb_command save_cache key='deps-${LOCK_VERSION}' paths=deps
  echo "$output"
  [ "$status" -eq 0 ]
  run ferry --json cache ls
  [[ "$output" == *'"key":"deps-${LOCK_VERSION}"'* ]]
}

@test "restore_cache tries keys in order and falls back to a prefix match" {
  start_job build
  echo v1 >deps.lock
  mkdir deps
  echo old >deps/lib.txt
  run orb_command save_cache key='deps-{{ .Branch }}-{{ checksum "deps.lock" }}' paths='
    deps
  '
  echo "$output"
  [ "$status" -eq 0 ]

  start_job build
  echo v2 >deps.lock
  run orb_command restore_cache keys='deps-{{ .Branch }}-{{ checksum "deps.lock" }}
deps-{{ .Branch }}-'
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(cat deps/lib.txt)" = old ]
  run ferry --json cache restore --key "deps-main-$(sha256sum deps.lock | cut -d ' ' -f 1)" --lookup-only
  [[ "$output" == *'"hit":"miss"'* ]]
}

@test "restore_cache misses without failing, and needs a key" {
  start_job build
  run orb_command restore_cache key=nothing-saved-here
  echo "$output"
  [ "$status" -eq 0 ]
  run orb_command restore_cache
  [ "$status" -eq 1 ]
  [[ "$output" == *"restore_cache needs a key or keys parameter"* ]]
}

@test "save_cache leaves an existing key alone" {
  start_job build
  mkdir deps
  echo first >deps/lib.txt
  run orb_command save_cache key=fixed paths=deps
  [ "$status" -eq 0 ]
  echo second >deps/lib.txt
  run orb_command save_cache key=fixed paths=deps
  echo "$output"
  [ "$status" -eq 0 ]

  start_job build
  run orb_command restore_cache key=fixed
  [ "$(cat deps/lib.txt)" = first ]
}

@test "save_cache honours when: skipped after a failed step unless on_fail or always" {
  cat >"$BATS_TEST_TMPDIR/config.yml" <<'YML'
version: 2.1
orbs:
  ferry: ferry-ci/ferry@dev:alpha
jobs:
  flaky:
    docker:
      - image: cimg/base:current
    steps:
      - run: mkdir -p deps && echo x > deps/a
      - run: exit 1
      - ferry/save_cache:
          key: on-success
          paths: deps
      - ferry/save_cache:
          key: on-fail
          paths: deps
          when: on_fail
      - ferry/save_cache:
          key: always
          paths: deps
          when: always
YML
  run check-jsonschema --builtin-schema vendor.circle-ci "$BATS_TEST_TMPDIR/config.yml"
  [ "$status" -eq 0 ]
  start_job flaky
  run "$PYTHON" "$ORB_TEST_DIR/circleci.py" job "$BATS_TEST_TMPDIR/config.yml" flaky --orb "ferry-ci/ferry=$PACKED_ORB"
  echo "$output"
  [ "$status" -eq 1 ]
  for key in on-success on-fail always; do
    run ferry --json cache restore --key "$key" --exact --lookup-only
    echo "$key: $output"
    case "$key" in
      on-success) [[ "$output" == *'"hit":"miss"'* ]] ;;
      *) [[ "$output" == *'"hit":"exact"'* ]] ;;
    esac
  done
}

# --------------------------------------------------------------- workspaces

@test "persist_to_workspace in one job, attach_workspace in the next job of the workflow" {
  start_job build
  mkdir -p out/dist/lib out/tmp
  echo app >out/dist/app.js
  echo util >out/dist/lib/util.js
  echo scratch >out/tmp/scratch
  run orb_command persist_to_workspace root=out paths=dist
  echo "$output"
  [ "$status" -eq 0 ]

  start_job test
  run orb_command attach_workspace at=ws
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(cat ws/dist/app.js)" = app ]
  [ "$(cat ws/dist/lib/util.js)" = util ]
  [ ! -e ws/tmp/scratch ]
}

@test "attach_workspace does not see another workflow's workspace" {
  start_job build
  mkdir -p out/dist
  echo app >out/dist/app.js
  run orb_command persist_to_workspace root=out paths=dist
  [ "$status" -eq 0 ]

  export CIRCLE_WORKFLOW_ID="${CIRCLE_WORKFLOW_ID%?}x"
  start_job test
  run orb_command attach_workspace at=ws
  echo "$output"
  [ ! -e ws/dist/app.js ]
}

# ---------------------------------------------------------------- artifacts

@test "store_artifacts uploads a folder under destination; download_artifacts gets it back" {
  start_job test
  mkdir -p reports/coverage
  echo '<testsuites/>' >reports/junit.xml
  echo '<html/>' >reports/coverage/index.html
  run orb_command store_artifacts path=reports destination=test-results
  echo "$output"
  [ "$status" -eq 0 ]
  run ferry artifacts ls --run "$CIRCLE_WORKFLOW_ID" --job test
  echo "$output"
  [[ "$output" == *test-results/junit.xml* ]]

  start_job report
  run orb_command download_artifacts job=test to=downloaded
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(cat downloaded/test-results/junit.xml)" = '<testsuites/>' ]
  [ "$(cat downloaded/test-results/coverage/index.html)" = '<html/>' ]
}

@test "store_artifacts stores a file as destination/NAME, and keeps its mode" {
  start_job build
  mkdir -p bin
  printf '#!/bin/sh\necho hi\n' >bin/tool
  chmod 755 bin/tool
  run orb_command store_artifacts path=bin/tool destination=tools
  echo "$output"
  [ "$status" -eq 0 ]
  run orb_command download_artifacts pattern='tools/*' to=got
  echo "$output"
  [ "$status" -eq 0 ]
  [ -x got/tools/tool ]
  [ "$(got/tools/tool)" = hi ]
}

# ------------------------------------------------------------------ install

publish_release() { # DIR TAG [corrupt]
  local dir="$1/download/$2" asset staging
  asset="$(this_asset)"
  staging="$(mktemp -d)"
  cp "$(command -v ferry)" "$staging/ferry"
  mkdir -p "$dir"
  tar -czf "$dir/$asset" -C "$staging" ferry
  if [[ "${3:-}" == corrupt ]]; then
    printf '%064d  %s\n' 0 "$asset" >"$dir/$asset.sha256"
  else
    (cd "$dir" && sha256sum "$asset" >"$asset.sha256")
  fi
}

@test "install downloads the release, checks it, and puts ferry on PATH for later steps" {
  releases="$BATS_TEST_TMPDIR/releases"
  publish_release "$releases" v0.1.0
  start_release_server "$releases"
  start_job build
  PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
  run command -v ferry
  [ "$status" -ne 0 ]
  run orb_command install version=0.1.0 releases_url="$RELEASES_URL" install_dir="$JOB_DIR/bin"
  echo "$output"
  [ "$status" -eq 0 ]
  [ -x "$JOB_DIR/bin/ferry" ]
  grep -q "$JOB_DIR/bin" "$BASH_ENV"
  grep -q "GET /download/v0.1.0/$(this_asset).sha256" "$BATS_TEST_TMPDIR/release-server.log"

  # A later step of the job finds it through BASH_ENV, with this PATH still bare.
  run orb_command restore_cache key=anything
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"Using ferry from PATH: $JOB_DIR/bin/ferry"* ]]
}

@test "install asks for the asset release.yml publishes for each OS and architecture" {
  stubs="$BATS_TEST_TMPDIR/stubs"
  mkdir -p "$stubs"
  # uname answers from STUB_OS/STUB_ARCH; curl records the URL and fails.
  printf '#!/bin/sh\ncase "$1" in -s) echo "$STUB_OS" ;; -m) echo "$STUB_ARCH" ;; esac\n' >"$stubs/uname"
  printf '#!/bin/sh\nfor a; do case "$a" in http*) echo "$a" >>"$CURL_LOG" ;; esac; done\nexit 22\n' >"$stubs/curl"
  chmod +x "$stubs/uname" "$stubs/curl"
  export CURL_LOG="$BATS_TEST_TMPDIR/curl.log"
  start_job build
  PATH="$stubs:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
  while read -r os arch target ext; do
    : >"$CURL_LOG"
    STUB_OS="$os" STUB_ARCH="$arch" run orb_command install version=1.2.3 releases_url=https://example.invalid/releases
    [ "$status" -eq 1 ]
    [ "$(head -n 1 "$CURL_LOG")" = "https://example.invalid/releases/download/v1.2.3/ferry-${target}.${ext}" ]
    grep -q "target: ${target}\$" "$REPO_DIR/.github/workflows/release.yml"
  done <<'TABLE'
Linux x86_64 x86_64-unknown-linux-musl tar.gz
Linux aarch64 aarch64-unknown-linux-musl tar.gz
Darwin x86_64 x86_64-apple-darwin tar.gz
Darwin arm64 aarch64-apple-darwin tar.gz
TABLE
}

@test "install on Windows fails saying ferry runs on Linux and macOS, and downloads nothing" {
  stubs="$BATS_TEST_TMPDIR/stubs"
  mkdir -p "$stubs"
  printf '#!/bin/sh\ncase "$1" in -s) echo "$STUB_OS" ;; -m) echo x86_64 ;; esac\n' >"$stubs/uname"
  printf '#!/bin/sh\necho "$*" >>"$CURL_LOG"\nexit 22\n' >"$stubs/curl"
  chmod +x "$stubs/uname" "$stubs/curl"
  export CURL_LOG="$BATS_TEST_TMPDIR/curl.log"
  : >"$CURL_LOG"
  start_job build
  PATH="$stubs:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
  for os in MINGW64_NT-10.0-20348 MSYS_NT-10.0 CYGWIN_NT-10.0 Windows_NT; do
    STUB_OS="$os" run orb_command install
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"ferry is built for Linux and macOS only"* ]]
  done
  [ ! -s "$CURL_LOG" ]
  run grep -Eq "target: .*(windows|msvc)" "$REPO_DIR/.github/workflows/release.yml"
  [ "$status" -eq 1 ]
}

@test "install refuses an archive whose checksum does not match" {
  releases="$BATS_TEST_TMPDIR/releases"
  publish_release "$releases" v9.9.9 corrupt
  start_release_server "$releases"
  start_job build
  PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
  run orb_command install version=v9.9.9 releases_url="$RELEASES_URL" install_dir="$JOB_DIR/bin"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"checksum mismatch"* ]]
  [ ! -e "$JOB_DIR/bin/ferry" ]
}

@test "install names the URL when the version has no release" {
  releases="$BATS_TEST_TMPDIR/releases"
  mkdir -p "$releases"
  start_release_server "$releases"
  start_job build
  PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
  run orb_command install version=0.0.0 releases_url="$RELEASES_URL"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"failed to download $RELEASES_URL/download/v0.0.0/"* ]]
}
