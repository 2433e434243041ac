'use strict';
// The fake of GitHub's results service (tests/gha/fake_results.py) for the action's tests:
// jobs and their runtime tokens, as the runner hands them to a JavaScript action. The fake
// runs when .ci/servers.sh start-gha has written .ci/cache/store-gha.env; without it the
// tests that need it are skipped with a note, unless FERRY_TEST_REQUIRE_SERVERS=1 (as .ci/run
// sets), when they fail.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { REPO_DIR } = require('./harness');

const ENV_FILE = path.join(process.env.FERRY_SERVERS_DIR || path.join(REPO_DIR, '.ci', 'cache'), 'store-gha.env');

/** The fake's admin API (`.../_fake`), or null when it is not running. */
function fakeAdmin() {
  if (!fs.existsSync(ENV_FILE)) {
    if (process.env.FERRY_TEST_REQUIRE_SERVERS === '1') {
      throw new Error(`${ENV_FILE} is missing; run .ci/servers.sh start-gha`);
    }
    return null;
  }
  const line = fs
    .readFileSync(ENV_FILE, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('export FERRY_GHA_FAKE_URL='));
  return line ? line.split('=').slice(1).join('=').replace(/^'|'$/g, '') : null;
}

const ADMIN = fakeAdmin();

/** `false` when the fake runs, else why tests that need it are skipped (node:test's `skip`). */
const skipWithoutFake = ADMIN ? false : `the gha fake is not running (${ENV_FILE} is missing)`;

/** A new job of the fake (`spec.run_id` joins that run): its runtime token, run and env. */
async function fakeJob(spec = {}) {
  const res = await fetch(`${ADMIN}/jobs`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(spec),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

/** Only what the runner gives a JavaScript action to reach GitHub's services. */
function runnerVariables(fake) {
  return {
    ACTIONS_RESULTS_URL: fake.env.ACTIONS_RESULTS_URL,
    ACTIONS_RUNTIME_TOKEN: fake.env.ACTIONS_RUNTIME_TOKEN,
  };
}

/** One workflow run of the fake with a job for each of `names`: its id and each job's variables. */
async function fakeRun(names) {
  const jobs = {};
  let runId;
  for (const name of names) {
    const fake = await fakeJob(runId ? { run_id: runId, job: name } : { job: name });
    runId = fake.run_id;
    jobs[name] = runnerVariables(fake);
  }
  return { runId: String(runId), envFor: (name) => jobs[name] };
}

module.exports = { fakeJob, fakeRun, runnerVariables, skipWithoutFake };
