#!/usr/bin/env bats
# The README's CircleCI quick start, exactly as written: it validates against
# the CircleCI schema, and its workflow runs job by job through circleci.py
# with the packed orb and the real ferry, npm replaced by a stub that checks
# the cache and the workspace did their part.

load helpers

setup_file() {
  export PACKED_ORB="$BATS_FILE_TMPDIR/orb.yml"
  pack_orb "$PACKED_ORB"
  export CONFIG="$BATS_FILE_TMPDIR/config.yml"
  quickstart_yaml circleci docs/ci/circleci.md "$CONFIG" >"$BATS_FILE_TMPDIR/source"
}

setup() {
  circleci_env
  export PATH="$ORB_TEST_DIR/fixtures/bin:$PATH"
  export NPM_STUB_LOG="$BATS_TEST_TMPDIR/npm.log"
}

run_workflow() { # ROOT
  "$PYTHON" "$ORB_TEST_DIR/circleci.py" workflow "$CONFIG" ci \
    --orb "ferry-ci/ferry=$PACKED_ORB" --checkout "$ORB_TEST_DIR/fixtures/project" --root "$1"
}

@test "the CircleCI quick start validates against the CircleCI schema" {
  echo "quick start from $(cat "$BATS_FILE_TMPDIR/source")"
  run check-jsonschema --builtin-schema vendor.circle-ci "$CONFIG"
  echo "$output"
  [ "$status" -eq 0 ]
  grep -q 'ferry: ferry-ci/ferry@' "$CONFIG"
}

@test "the CircleCI quick start runs: build saves and persists, test restores, attaches and uploads" {
  run run_workflow "$BATS_TEST_TMPDIR/run1"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(cat "$NPM_STUB_LOG")" = "$(printf 'npm ci\nnpm run build\nnpm test')" ]
  cmp "$ORB_TEST_DIR/fixtures/project/src/app.js" "$BATS_TEST_TMPDIR/run1/test/dist/app.js"
  [ -f "$BATS_TEST_TMPDIR/run1/test/node_modules/left-pad/index.js" ]

  run ferry artifacts download --run "$CIRCLE_WORKFLOW_ID" --job test --to "$BATS_TEST_TMPDIR/reports"
  echo "$output"
  [ "$status" -eq 0 ]
  grep -q 'failures="0"' "$BATS_TEST_TMPDIR/reports/test-results/junit.xml"

  # The next pipeline: a new workflow id, the same store; the cache is there.
  export CIRCLE_WORKFLOW_ID="${CIRCLE_WORKFLOW_ID%?}b"
  run run_workflow "$BATS_TEST_TMPDIR/run2"
  echo "$output"
  [ "$status" -eq 0 ]
  run ferry --json cache ls
  echo "$output"
  [ "$(grep -o '"npm-' <<<"$output" | wc -l)" -eq 1 ]
}
