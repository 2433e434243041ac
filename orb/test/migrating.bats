#!/usr/bin/env bats
# The CircleCI configs of docs/migrating.md (its `<!-- circleci:NAME -->`
# sections), exactly as written: each validates against the CircleCI schema,
# and its workflow runs job by job through circleci.py with the packed orb and
# the real ferry, npm replaced by a stub that checks the cache and the
# workspace did their part.

load helpers

setup_file() {
  export PACKED_ORB="$BATS_FILE_TMPDIR/orb.yml"
  pack_orb "$PACKED_ORB"
  export CONFIGS="$BATS_FILE_TMPDIR/configs"
  mkdir -p "$CONFIGS"
  "$PYTHON" - "$REPO_DIR/docs/migrating.md" "$CONFIGS" <<'PY'
import pathlib, re, sys
page, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
text = page.read_text(encoding="utf-8")
for name, body in re.findall(r"<!-- circleci:([\w-]+) -->(.*?)<!-- /circleci:\1 -->", text, re.S):
    block = re.search(r"```ya?ml\n(.*?)```", body, re.S)
    if not block:
        sys.exit(f"circleci:{name} in {page} has no yaml block")
    (out / f"{name}.yml").write_text(block.group(1), encoding="utf-8")
PY
}

setup() {
  circleci_env
  export PATH="$ORB_TEST_DIR/fixtures/bin:$PATH"
  export NPM_STUB_LOG="$BATS_TEST_TMPDIR/npm.log"
}

@test "docs/migrating.md has its CircleCI config, and it validates against the CircleCI schema" {
  [ "$(ls "$CONFIGS")" = circleci.yml ]
  run check-jsonschema --builtin-schema vendor.circle-ci "$CONFIGS/circleci.yml"
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "the migrating config runs: build saves and persists, test restores, attaches and stores artifacts" {
  run "$PYTHON" "$ORB_TEST_DIR/circleci.py" workflow "$CONFIGS/circleci.yml" ci \
    --orb "ferry-ci/ferry=$PACKED_ORB" --checkout "$ORB_TEST_DIR/fixtures/project" --root "$BATS_TEST_TMPDIR/run1"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(cat "$NPM_STUB_LOG")" = "$(printf 'npm ci\nnpm run build\nnpm test')" ]
  cmp "$ORB_TEST_DIR/fixtures/project/src/app.js" "$BATS_TEST_TMPDIR/run1/test/dist/app.js"
  [ -f "$BATS_TEST_TMPDIR/run1/test/node_modules/left-pad/index.js" ]

  run ferry artifacts download --run "$CIRCLE_WORKFLOW_ID" --job test --to "$BATS_TEST_TMPDIR/reports"
  echo "$output"
  [ "$status" -eq 0 ]
  grep -q 'failures="0"' "$BATS_TEST_TMPDIR/reports/test-results/junit.xml"

  # The next pipeline restores the cache the first one saved, and saves nothing new.
  export CIRCLE_WORKFLOW_ID="${CIRCLE_WORKFLOW_ID%?}b"
  run "$PYTHON" "$ORB_TEST_DIR/circleci.py" workflow "$CONFIGS/circleci.yml" ci \
    --orb "ferry-ci/ferry=$PACKED_ORB" --checkout "$ORB_TEST_DIR/fixtures/project" --root "$BATS_TEST_TMPDIR/run2"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"exists; not saved"* ]]
  run ferry --json cache ls
  [ "$(grep -o '"v1-npm-deps-' <<<"$output" | wc -l)" -eq 1 ]
}
